"""PostgreSQL health check: ``SELECT 1`` on the cached connection, bounded by the timeout."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import ClassVar

from psycopg import sql

from remediator.checks.base import CheckResult, HealthCheck
from remediator.clients import Clients
from remediator.config.targets import PostgresTarget, Target
from remediator.tech.postgres import postgres_error, query_cached

__all__ = ["CHECKS", "PostgresSelectCheck"]

_SELECT_1 = sql.SQL("SELECT 1")


async def _select_one(clients: Clients, dsn: str, timeout: float) -> bool:
    return await query_cached(clients, dsn, timeout, _SELECT_1) == [(1,)]


class PostgresSelectCheck:
    """Healthy iff ``SELECT 1`` returns 1 within ``timeout``."""

    target_type: ClassVar[str] = "postgres"

    async def check(self, target: Target, clients: Clients, *, timeout: float) -> CheckResult:
        start = time.monotonic()
        if not isinstance(target, PostgresTarget):
            return CheckResult(False, "wrong target type", time.monotonic() - start)
        try:
            ok = await asyncio.wait_for(_select_one(clients, target.dsn, timeout), timeout=timeout)
        except TimeoutError:
            with contextlib.suppress(Exception):  # its state is unknown now
                await asyncio.wait_for(clients.reset_postgres(target.dsn), timeout=5)
            detail = f"SELECT 1 timed out after {timeout}s"
            return CheckResult(False, detail, time.monotonic() - start)
        except Exception as exc:  # a check never raises
            detail = f"SELECT 1 failed: {postgres_error(exc, target.dsn)}"
            return CheckResult(False, detail, time.monotonic() - start)
        if not ok:
            return CheckResult(False, "SELECT 1 returned something else", time.monotonic() - start)
        return CheckResult(True, "SELECT 1 ok", time.monotonic() - start)


CHECKS: tuple[HealthCheck, ...] = (PostgresSelectCheck(),)
