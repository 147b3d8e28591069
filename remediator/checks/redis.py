"""Redis health check: PING through the cached client, bounded by the timeout."""

from __future__ import annotations

import asyncio
import time
from typing import ClassVar

from remediator.checks.base import CheckResult, HealthCheck
from remediator.clients import Clients
from remediator.config.targets import RedisTarget, Target
from remediator.tech.redis import redis_error

__all__ = ["CHECKS", "RedisPingCheck"]


class RedisPingCheck:
    """Healthy iff PING answers PONG within ``timeout``."""

    target_type: ClassVar[str] = "redis"

    async def check(self, target: Target, clients: Clients, *, timeout: float) -> CheckResult:
        start = time.monotonic()
        if not isinstance(target, RedisTarget):
            return CheckResult(False, "wrong target type", time.monotonic() - start)
        try:
            pong = await asyncio.wait_for(clients.redis(target.url).ping(), timeout=timeout)
        except TimeoutError:
            return CheckResult(False, f"PING timed out after {timeout}s", time.monotonic() - start)
        except Exception as exc:  # a check never raises
            detail = f"PING failed: {redis_error(exc, target.url, target.replica_url)}"
            return CheckResult(False, detail, time.monotonic() - start)
        if pong is not True:
            return CheckResult(False, "PING got no PONG", time.monotonic() - start)
        return CheckResult(True, "PONG", time.monotonic() - start)


CHECKS: tuple[HealthCheck, ...] = (RedisPingCheck(),)
