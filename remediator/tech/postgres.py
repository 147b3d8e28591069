"""PostgreSQL plumbing shared by the PostgreSQL actions and health checks: queries on the
cached connection and secret-free errors.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from remediator.clients import Clients


def postgres_error(exc: BaseException, dsn: str) -> str:
    """A short one-line description of ``exc`` with the DSN and its password removed."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    secrets: list[str] = [dsn]
    try:
        password = conninfo_to_dict(dsn).get("password")
    except psycopg.Error:
        password = None
    if password:
        secrets.append(str(password))
    for secret in secrets:
        text = text.replace(secret, "***")
    name = type(exc).__name__
    return f"{name}: {text[:200]}" if text else name


async def query_cached(
    clients: Clients,
    dsn: str,
    timeout: float,
    query: sql.SQL | sql.Composed,
    params: dict[str, Any] | None = None,
) -> list[tuple[Any, ...]]:
    """Run ``query`` on the cached connection; a stale cached connection is replaced once."""
    reused = clients.postgres_cached(dsn)
    for attempt in (1, 2):
        conn = await clients.postgres(dsn, connect_timeout=timeout)
        try:
            cursor = await conn.execute(query, params)
            return await cursor.fetchall()
        except psycopg.OperationalError:
            if not (conn.broken or conn.closed):
                raise
            await clients.reset_postgres(dsn)
            if not reused or attempt == 2:
                raise
    raise AssertionError("unreachable")
