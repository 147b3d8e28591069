"""PromQL queries for ``verify.prometheus`` steps, through prometheus-api-client."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from prometheus_api_client import PrometheusConnect


def query_function(url: str, *, timeout: float) -> Callable[[str], Awaitable[int]]:
    """An async function returning how many series an instant query yields."""
    client = PrometheusConnect(url=url, disable_ssl=True)

    async def query(promql: str) -> int:
        def run() -> int:
            result = client.custom_query(query=promql, params={"timeout": f"{timeout:.0f}s"})
            return len(result)

        return await asyncio.wait_for(asyncio.to_thread(run), timeout=timeout + 1)

    return query
