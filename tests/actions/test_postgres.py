"""PostgreSQL actions and health check against the real server, in a fresh database."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import psycopg
import psycopg.errors
import pytest

from remediator.actions.base import Action, ActionContext, ActionResult
from remediator.actions.postgres import (
    ACTIONS,
    PostgresCancel,
    PostgresCancelAction,
    PostgresResetPool,
    PostgresResetPoolAction,
    PostgresTerminate,
    PostgresTerminateAction,
)
from remediator.checks.postgres import CHECKS, PostgresSelectCheck
from remediator.clients import Clients
from remediator.config import steps
from remediator.config.targets import PostgresTarget, ProcessTarget, Target
from tests.realservices import free_port

pytestmark = pytest.mark.postgres

T = TypeVar("T")
Conn = psycopg.AsyncConnection[Any]


def run(scenario: Callable[[Clients], Awaitable[T]]) -> T:
    async def main() -> T:
        clients = Clients()
        try:
            return await scenario(clients)
        finally:
            await clients.aclose()

    return asyncio.run(main())


def act(
    clients: Clients, action: Action, target: Target, step: Any, *, dry_run: bool = False
) -> Awaitable[ActionResult]:
    return action.run(ActionContext(target=target, step=step, clients=clients, dry_run=dry_run))


def db(dsn: str) -> PostgresTarget:
    return PostgresTarget(type="postgres", name="db", dsn=dsn)


def terminate(**filters: Any) -> PostgresTerminate:
    return PostgresTerminate(action="postgres.terminate_backends", **filters)


def cancel(**filters: Any) -> PostgresCancel:
    return PostgresCancel(action="postgres.cancel_queries", **filters)


async def state_of(observer: Conn, pid: int) -> str | None:
    """The pid's state in pg_stat_activity, None if it is gone."""
    cur = await observer.execute("SELECT state FROM pg_stat_activity WHERE pid = %s", (pid,))
    row = await cur.fetchone()
    return None if row is None else str(row[0])


async def wait_for_state(observer: Conn, pid: int, state: str | None) -> None:
    for _ in range(200):
        if await state_of(observer, pid) == state:
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"backend {pid} never reached state {state!r}")


def test_exports() -> None:
    # every postgres.* step of the registry, and nothing else, comes from this module
    assert sorted(a.name for a in ACTIONS) == [
        n for n in steps.action_names() if n.startswith("postgres.")
    ]
    assert all(a.target_types == frozenset({"postgres"}) for a in ACTIONS)
    assert [c.target_type for c in CHECKS] == ["postgres"]


def test_terminate_idle_in_transaction_backend_only(pg_database: str) -> None:
    step = terminate(state="idle in transaction", application_name="batch", min_duration=0.2)

    async def scenario(clients: Clients) -> None:
        connect = psycopg.AsyncConnection.connect
        async with (
            await connect(pg_database, autocommit=True) as observer,
            await connect(pg_database, application_name="batch") as victim,
            await connect(pg_database, autocommit=True, application_name="web") as idle,
            await connect(pg_database, autocommit=True, application_name="batch") as busy,
        ):
            await victim.execute("SELECT 1")  # BEGIN; SELECT 1 -> idle in transaction
            await idle.execute("SELECT 1")
            running = asyncio.create_task(busy.execute("SELECT pg_sleep(1.5)"))
            await wait_for_state(observer, busy.info.backend_pid, "active")
            assert await state_of(observer, victim.info.backend_pid) == "idle in transaction"
            await asyncio.sleep(0.3)

            dry = await act(clients, PostgresTerminateAction(), db(pg_database), step, dry_run=True)
            assert dry.ok and dry.detail.startswith("dry-run: would terminate backends (state=")
            assert not clients.postgres_cached(pg_database)  # dry-run did not even connect
            assert await state_of(observer, victim.info.backend_pid) == "idle in transaction"

            too_young = terminate(state="idle in transaction", min_duration=3600)
            none = await act(clients, PostgresTerminateAction(), db(pg_database), too_young)
            assert none.ok and none.data == {"pids": []}

            result = await act(clients, PostgresTerminateAction(), db(pg_database), step)
            assert result.ok, result.detail
            assert result.data == {"pids": [victim.info.backend_pid]}
            await wait_for_state(observer, victim.info.backend_pid, None)
            with pytest.raises(psycopg.OperationalError):
                await victim.execute("SELECT 1")

            await idle.execute("SELECT 1")  # the idle non-matching backend survived
            await running  # the active one finished its query
            await busy.execute("SELECT 1")

    run(scenario)


def test_cancel_queries_cancels_the_query_but_keeps_the_session(pg_database: str) -> None:
    step = cancel(state="active", application_name="sleeper", min_duration=0.1)

    async def scenario(clients: Clients) -> None:
        connect = psycopg.AsyncConnection.connect
        async with (
            await connect(pg_database, autocommit=True) as observer,
            await connect(pg_database, autocommit=True, application_name="sleeper") as sleeper,
        ):
            pid = sleeper.info.backend_pid
            sleeping = asyncio.create_task(sleeper.execute("SELECT pg_sleep(30)"))
            try:
                await wait_for_state(observer, pid, "active")
                await asyncio.sleep(0.2)
                result = await act(clients, PostgresCancelAction(), db(pg_database), step)
                assert result.ok, result.detail
                assert result.data == {"pids": [pid]}
                with pytest.raises(psycopg.errors.QueryCanceled):
                    await asyncio.wait_for(sleeping, timeout=10)
            finally:
                if not sleeping.done():
                    sleeping.cancel()
            cur = await sleeper.execute("SELECT pg_backend_pid()")
            assert await cur.fetchone() == (pid,)  # same session, still usable

    run(scenario)


def test_never_touches_its_own_connection(pg_database: str) -> None:
    everyone = terminate(min_duration=0)

    async def scenario(clients: Clients) -> None:
        async with await psycopg.AsyncConnection.connect(pg_database) as other:
            ours = (await clients.postgres(pg_database)).info.backend_pid
            result = await act(clients, PostgresTerminateAction(), db(pg_database), everyone)
            assert result.ok, result.detail
            assert result.data == {"pids": [other.info.backend_pid]}
            assert (await clients.postgres(pg_database)).info.backend_pid == ours

    run(scenario)


def test_a_filter_is_required(pg_database: str) -> None:
    async def scenario(clients: Clients) -> None:
        for action, step in [
            (PostgresTerminateAction(), terminate()),
            (PostgresCancelAction(), cancel()),
        ]:
            result = await act(clients, action, db(pg_database), step)
            assert not result.ok and "refusing" in result.detail

    run(scenario)


def test_reset_pool_closes_remediators_cached_connection(pg_database: str) -> None:
    step = PostgresResetPool(action="postgres.reset_pool")

    async def scenario(clients: Clients) -> None:
        async with await psycopg.AsyncConnection.connect(pg_database, autocommit=True) as observer:
            old_pid = (await clients.postgres(pg_database)).info.backend_pid

            dry = await act(clients, PostgresResetPoolAction(), db(pg_database), step, dry_run=True)
            assert dry.ok and dry.detail.startswith("dry-run: would close")
            assert clients.postgres_cached(pg_database)

            result = await act(clients, PostgresResetPoolAction(), db(pg_database), step)
            assert result.ok and result.data == {"closed": 1}
            assert not clients.postgres_cached(pg_database)
            await wait_for_state(observer, old_pid, None)

            again = await act(clients, PostgresResetPoolAction(), db(pg_database), step)
            assert again.ok and again.data == {"closed": 0}  # idempotent

            check = await PostgresSelectCheck().check(db(pg_database), clients, timeout=5)
            assert check.healthy  # reconnects on next use
            assert (await clients.postgres(pg_database)).info.backend_pid != old_pid

    run(scenario)


def test_cached_connection_killed_elsewhere_is_replaced(pg_database: str) -> None:
    async def scenario(clients: Clients) -> None:
        async with await psycopg.AsyncConnection.connect(pg_database, autocommit=True) as observer:
            pid = (await clients.postgres(pg_database)).info.backend_pid
            await observer.execute("SELECT pg_terminate_backend(%s)", (pid,))
            await wait_for_state(observer, pid, None)
            result = await act(
                clients, PostgresTerminateAction(), db(pg_database), terminate(usename="nobody")
            )
            assert result.ok, result.detail

    run(scenario)


def _with(dsn: str, *, port: int | None = None, password: str | None = None) -> str:
    parts = urlsplit(dsn)
    user = parts.username or "remediator"
    netloc = f"{user}:{password or parts.password}@{parts.hostname}:{port or parts.port}"
    return parts._replace(netloc=netloc).geturl()


def test_down_server_and_bad_password_fail_without_leaking_it(postgres_dsn: str) -> None:
    down = _with(postgres_dsn, port=free_port(), password="s3cret-pw")
    wrong = _with(postgres_dsn, password="s3cret-pw")

    async def scenario(clients: Clients) -> None:
        for dsn in (down, wrong):
            for action, step in [
                (PostgresTerminateAction(), terminate(state="idle")),
                (PostgresCancelAction(), cancel(state="active")),
            ]:
                result = await act(clients, action, db(dsn), step)
                assert not result.ok
                assert "s3cret" not in result.detail and "Traceback" not in result.detail
                assert "\n" not in result.detail
                assert result.duration < 5
            check = await PostgresSelectCheck().check(db(dsn), clients, timeout=5)
            assert not check.healthy and "s3cret" not in check.detail

    run(scenario)


def test_wrong_target_type() -> None:
    target = ProcessTarget(type="process", name="p", pidfile="/nonexistent")

    async def scenario(clients: Clients) -> None:
        for action in ACTIONS:
            result = await act(clients, action, target, terminate(state="idle"))
            assert (result.ok, result.detail) == (False, "wrong target type")

    run(scenario)


def test_health_check_up(pg_database: str) -> None:
    async def scenario(clients: Clients) -> None:
        result = await PostgresSelectCheck().check(db(pg_database), clients, timeout=5)
        assert result.healthy and result.detail == "SELECT 1 ok"

    run(scenario)


def test_unresponsive_server_times_out() -> None:
    with socket.socket() as blackhole:  # accepts TCP connections, never answers
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(8)
        port = blackhole.getsockname()[1]
        dsn = f"postgresql://remediator:s3cret-pw@127.0.0.1:{port}/remediator"

        async def scenario(clients: Clients) -> None:
            step = terminate(state="idle", timeout=0.5)
            result = await act(clients, PostgresTerminateAction(), db(dsn), step)
            assert not result.ok and "timed out after 0.5s" in result.detail
            assert result.duration < 1.5
            check = await PostgresSelectCheck().check(db(dsn), clients, timeout=0.5)
            assert not check.healthy and "timed out" in check.detail

        run(scenario)
