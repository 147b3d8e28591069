"""PostgreSQL recovery actions: terminate_backends, cancel_queries, reset_pool.

Backends are selected from ``pg_stat_activity`` with the step's filters, always restricted to
the target DSN's current database and to client backends other than remediator's own. Each
backend is then signalled by a statement that re-applies the same filters to that one pid, so a
backend whose state changed in between is left alone. All SQL is constant and parameterized.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, ClassVar, Literal

import psycopg
from psycopg import sql

from remediator.actions.base import BuiltinAction, GuardedAction, StepModel
from remediator.clients import Clients
from remediator.config.durations import Duration
from remediator.config.targets import PostgresTarget
from remediator.tech.postgres import postgres_error, query_cached

PgState = Literal["active", "idle", "idle in transaction", "idle in transaction (aborted)"]


class _PgFilter(StepModel):
    state: PgState | None = None
    min_duration: Duration | None = None
    application_name: str | None = None
    usename: str | None = None


class PostgresTerminate(_PgFilter):
    action: Literal["postgres.terminate_backends"]


class PostgresCancel(_PgFilter):
    action: Literal["postgres.cancel_queries"]


class PostgresResetPool(StepModel):
    action: Literal["postgres.reset_pool"]


__all__ = [
    "ACTIONS",
    "PostgresCancelAction",
    "PostgresResetPoolAction",
    "PostgresTerminateAction",
    "query_cached",
]

Outcome = tuple[bool, str, dict[str, Any]]

# Filters shared by the selection and the per-pid signalling statement. %(name)s placeholders
# only; a NULL parameter disables its filter.
_FILTERS = sql.SQL("""
    datname = current_database()
    AND pid <> pg_backend_pid()
    AND backend_type = 'client backend'
    AND (%(state)s::text IS NULL OR state = %(state)s::text)
    AND (%(application_name)s::text IS NULL OR application_name = %(application_name)s::text)
    AND (%(usename)s::text IS NULL OR usename = %(usename)s::text)
    AND (
        %(min_duration)s::float8 IS NULL
        OR clock_timestamp() - CASE WHEN state = 'active' THEN query_start ELSE state_change END
            >= make_interval(secs => %(min_duration)s::float8)
    )
""")
_SELECT = sql.SQL("SELECT pid FROM pg_stat_activity WHERE {} ORDER BY pid").format(_FILTERS)
_SIGNAL = sql.SQL("SELECT {}(pid) FROM pg_stat_activity WHERE pid = %(pid)s AND {}")
_TERMINATE = _SIGNAL.format(sql.Identifier("pg_terminate_backend"), _FILTERS)
_CANCEL = _SIGNAL.format(sql.Identifier("pg_cancel_backend"), _FILTERS)


class _PostgresAction(GuardedAction):
    target_types: ClassVar[frozenset[str]] = frozenset({"postgres"})
    target_class = PostgresTarget
    errors = (psycopg.Error, OSError, ValueError)

    def error_detail(self, exc: BaseException, target: Any, step: Any) -> str:
        return postgres_error(exc, target.dsn)

    async def on_timeout(self, target: Any, clients: Clients) -> None:
        await _drop_quietly(clients, target.dsn)  # its state is unknown now


async def _drop_quietly(clients: Clients, dsn: str) -> None:
    with contextlib.suppress(Exception):  # best effort after a timeout
        await asyncio.wait_for(clients.reset_postgres(dsn), timeout=5)


def _params(step: PostgresTerminate | PostgresCancel) -> dict[str, Any]:
    return {
        "state": step.state,
        "application_name": step.application_name,
        "usename": step.usename,
        "min_duration": step.min_duration,
    }


def _filters(step: PostgresTerminate | PostgresCancel) -> str:
    parts = [f"{key}={value!r}" for key, value in _params(step).items() if value is not None]
    return ", ".join(parts)


class _SignalBackends(_PostgresAction):
    verb: ClassVar[str]
    done: ClassVar[str]
    statement: ClassVar[sql.Composed]

    def describe(self, target: PostgresTarget, step: PostgresTerminate | PostgresCancel) -> str:
        return f"{self.verb} backends ({_filters(step) or 'no filter'}) on {target.name}"

    async def perform(
        self,
        target: PostgresTarget,
        step: PostgresTerminate | PostgresCancel,
        clients: Clients,
    ) -> Outcome:
        params = _params(step)
        if all(value is None for value in params.values()):
            detail = "refusing to signal every backend: give a filter (min_duration: 0 = all)"
            return False, detail, {}
        rows = await query_cached(clients, target.dsn, step.timeout, _SELECT, params)
        pids: list[int] = []
        failed: list[int] = []
        for (pid,) in rows:
            try:
                signalled = await query_cached(
                    clients, target.dsn, step.timeout, self.statement, {**params, "pid": pid}
                )
            except psycopg.errors.InsufficientPrivilege:
                failed.append(pid)
                continue
            if signalled and signalled[0][0] is True:
                pids.append(pid)
        data: dict[str, Any] = {"pids": pids}
        detail = f"{self.done} {len(pids)} backend(s) ({_filters(step)}) on {target.name}"
        if failed:
            data["failed"] = failed
            detail += f"; permission denied for {len(failed)}"
        return not failed, detail, data


class PostgresTerminateAction(_SignalBackends):
    """pg_terminate_backend() for each matching client backend of the target's database."""

    name = "postgres.terminate_backends"
    step_type = PostgresTerminate
    verb = "terminate"
    done = "terminated"
    statement = _TERMINATE


class PostgresCancelAction(_SignalBackends):
    """pg_cancel_backend() (cancel the running query, keep the session) for each match."""

    name = "postgres.cancel_queries"
    step_type = PostgresCancel
    verb = "cancel the queries of"
    done = "cancelled the queries of"
    statement = _CANCEL


class PostgresResetPoolAction(_PostgresAction):
    """Close and drop remediator's own cached connection(s) for the target's DSN."""

    name = "postgres.reset_pool"
    step_type = PostgresResetPool

    def describe(self, target: PostgresTarget, step: PostgresResetPool) -> str:
        return f"close remediator's cached connections to {target.name}"

    async def perform(
        self, target: PostgresTarget, step: PostgresResetPool, clients: Clients
    ) -> Outcome:
        closed = await clients.reset_postgres(target.dsn)
        return True, f"closed {closed} cached connection(s) to {target.name}", {"closed": closed}


ACTIONS: tuple[BuiltinAction, ...] = (
    PostgresTerminateAction(),
    PostgresCancelAction(),
    PostgresResetPoolAction(),
)
