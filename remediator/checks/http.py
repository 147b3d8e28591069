"""HTTP health check: GET base_url + health_path, healthy iff the status is expected."""

from __future__ import annotations

import asyncio
import time
from typing import ClassVar
from urllib.parse import urlsplit

from remediator.checks.base import CheckResult, HealthCheck
from remediator.clients import Clients
from remediator.config.targets import HttpTarget, Target
from remediator.tech.http import http_error, join_url

__all__ = ["CHECKS", "HttpGetCheck"]


class HttpGetCheck:
    """GET with the target's headers, no redirects followed, body not read."""

    target_type: ClassVar[str] = "http"

    async def check(self, target: Target, clients: Clients, *, timeout: float) -> CheckResult:
        start = time.monotonic()
        if not isinstance(target, HttpTarget):
            return CheckResult(False, "wrong target type", time.monotonic() - start)
        path = urlsplit(target.health_path).path or "/"
        try:
            status = await asyncio.wait_for(self._get(target, clients, timeout), timeout=timeout)
        except TimeoutError:
            detail = f"GET {path} timed out after {timeout}s"
            return CheckResult(False, detail, time.monotonic() - start)
        except Exception as exc:  # a check never raises
            detail = f"GET {path} failed: {http_error(exc, (target.base_url, target.backup_url), target.headers)}"
            return CheckResult(False, detail, time.monotonic() - start)
        healthy = status in target.expected_status
        return CheckResult(healthy, f"GET {path} -> {status}", time.monotonic() - start)

    @staticmethod
    async def _get(target: HttpTarget, clients: Clients, timeout: float) -> int:
        url = join_url(target.base_url, target.health_path)
        headers = dict(target.headers)
        async with clients.http().stream("GET", url, headers=headers, timeout=timeout) as resp:
            return resp.status_code


CHECKS: tuple[HealthCheck, ...] = (HttpGetCheck(),)
