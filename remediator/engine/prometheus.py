"""PromQL instant queries for ``verify.prometheus`` steps, through prometheus-api-client.

:class:`PrometheusQuerier` owns one ``requests`` session and a small thread pool of its own
(``prometheus.max_concurrent_queries`` threads), so queries to a slow or hung Prometheus can
never take the threads that store and Docker work run on. Every query is bounded twice:
``prometheus.timeout`` is the HTTP timeout ``requests`` applies to connecting and to each read
(prometheus-api-client passes it through), and the awaiting side gives up shortly after it
even if a server trickles bytes forever. Retries are off: the step's own interval retries.

TLS is verified by default (the system CAs, or ``ca_file``); ``insecure_skip_verify`` turns
that off and ``check-config`` warns about it. Authentication is a bearer token or basic auth,
read from an environment variable or a file when the querier is built; ``headers`` are sent
with every query (for example ``X-Scope-OrgID`` for a multi-tenant Mimir, Cortex or Thanos).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import requests
from prometheus_api_client import PrometheusConnect
from urllib3.util.retry import Retry

from remediator.config.model import PrometheusConfig
from remediator.config.secretfile import permission_problem
from remediator.errors import ConfigError

# Extra time the awaiting side allows over the HTTP timeout before it gives up on a query.
GRACE = 1.0


def values_of(result: list[Any]) -> tuple[float, ...]:
    """The ``data.result`` of ``/api/v1/query`` as one value per series: a vector or matrix is
    a list of series, a scalar or string one ``[time, "value"]`` pair (one value, not two)."""
    if result and not isinstance(result[0], dict):
        return (_number(result[1]),)
    values: list[float] = []
    for series in result:
        if "value" in series:
            values.append(_number(series["value"][1]))
        else:  # a range vector: its latest sample
            samples = series.get("values") or [[0, "NaN"]]
            values.append(_number(samples[-1][1]))
    return tuple(values)


def _number(text: Any) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def credentials(settings: PrometheusConfig, env: Mapping[str, str]) -> dict[str, Any]:
    """The headers and ``auth`` tuple for PrometheusConnect; ``ConfigError`` if a configured
    secret is missing."""
    headers = dict(settings.headers)
    auth: tuple[str, str] | None = None
    if settings.bearer_token_env or settings.bearer_token_file:
        token = _secret(
            "prometheus.bearer_token",
            name=settings.bearer_token_env,
            path=settings.bearer_token_file,
            env=env,
        )
        headers["Authorization"] = f"Bearer {token}"
    if settings.basic_auth is not None:
        basic = settings.basic_auth
        password = _secret(
            "prometheus.basic_auth.password",
            name=basic.password_env,
            path=basic.password_file,
            env=env,
        )
        auth = (basic.username, password)
    return {"headers": headers or None, "auth": auth}


def _secret(what: str, *, name: str | None, path: str | None, env: Mapping[str, str]) -> str:
    if name is not None:
        value = env.get(name, "")
        if not value:
            raise ConfigError([f"{what}: environment variable {name} is not set"])
        return value
    assert path is not None
    unsafe = permission_problem(Path(path))
    if unsafe is not None:
        raise ConfigError([f"{what}: {unsafe}"])
    try:
        value = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError([f"{what}: cannot read {path}: {exc.strerror}"]) from None
    if not value:
        raise ConfigError([f"{what}: {path} is empty"])
    return value


class QueryTimeout(TimeoutError):
    """Prometheus did not answer a query within ``prometheus.timeout``."""


class PrometheusQuerier:
    """Instant queries against one Prometheus, each bounded, on a thread pool of its own."""

    def __init__(self, settings: PrometheusConfig, *, env: Mapping[str, str] | None = None) -> None:
        assert settings.url, "prometheus.url is required"
        self.timeout = settings.timeout
        session = requests.Session()
        if settings.insecure_skip_verify:
            session.verify = False
        elif settings.ca_file:
            session.verify = settings.ca_file
        self._client = PrometheusConnect(
            url=settings.url.rstrip("/"),
            session=session,
            retry=Retry(total=0, read=False, redirect=0),
            timeout=settings.timeout,
            **credentials(settings, os.environ if env is None else env),
        )
        self._pool = concurrent.futures.ThreadPoolExecutor(
            settings.max_concurrent_queries, thread_name_prefix="prometheus-query"
        )

    async def __call__(self, promql: str) -> tuple[float, ...]:
        """The answer to ``promql``; :class:`QueryTimeout` after ``timeout`` (+ grace)."""
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._pool, self._query, promql)
        try:
            return await asyncio.wait_for(future, timeout=self.timeout + GRACE)
        except (TimeoutError, requests.Timeout):
            raise QueryTimeout(f"no answer within {self.timeout:g}s") from None

    def _query(self, promql: str) -> tuple[float, ...]:
        params = {"timeout": f"{max(self.timeout, 0.001):.3f}"}  # seconds; Prometheus's bound
        return values_of(self._client.custom_query(query=promql, params=params))

    def close(self) -> None:
        """Stop taking queries; a query still waiting on a hung server is abandoned."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()
