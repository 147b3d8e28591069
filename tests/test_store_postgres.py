"""PostgreSQL-specific checks of the store, on the real server: migrations (from an empty
database, from each earlier version), failures (lost connection, failed commit, restart,
unreachable server), raw queries, the URL, and `remediator audit verify`. Several writers at
once: test_store_postgres_replicas.py."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from remediator.audit.events import GENESIS_HASH, Event
from remediator.audit.recording import Recording
from remediator.engine.guards import Transition
from remediator.engine.verifier import verify_store
from remediator.errors import StoreUnavailable
from remediator.store import create_store
from remediator.store.postgres import PostgresStore
from remediator.store.postgres_driver import append
from remediator.store.postgres_schema import PG_MIGRATIONS, migrate
from remediator.store.postgres_tx import Tx
from remediator.store.records import EVENT_COLUMNS, event_row, link
from tests.conftest import fixture_payload
from tests.realservices import free_port
from tests.store_helpers import event, pg_migrated, pg_open, pg_query

pytestmark = pytest.mark.postgres
ROOT = Path(__file__).resolve().parents[1]


def _notification() -> dict[str, Any]:
    """One notification of five alerts: firing and resolved, five fingerprints."""
    raw = fixture_payload("grouped.json")
    raw["alerts"] += fixture_payload("mixed_firing_resolved.json")["alerts"]
    return raw


def _transition_events(transition: Transition) -> list[Event]:
    return [Event(type=f"circuit:{transition.changed_to}", time=1.0, target="web")]


# -- migrations ------------------------------------------------------------------------------


def test_two_replicas_migrate_an_empty_database_together(pg_database: str) -> None:
    async def main() -> None:
        stores = [PostgresStore(pg_database) for _ in range(3)]
        await asyncio.gather(*[store.open() for store in stores])
        for store in stores:
            assert await store.schema_version() == len(PG_MIGRATIONS)
            await store.close()

    asyncio.run(main())
    versions = pg_query(pg_database, "SELECT version FROM schema_version ORDER BY version")
    assert [v for (v,) in versions] == list(range(1, len(PG_MIGRATIONS) + 1))


async def _seed_version(url: str, version: int) -> list[Event]:
    """A database at ``version`` with data written the way that version's code would."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        assert await migrate(conn, PG_MIGRATIONS[:version]) == version
        await conn.execute(
            "INSERT INTO episodes (id, fingerprint, alertname, starts_at, opened_at) "
            "VALUES (1, 'fp', 'A', 1.0, 2.0)"
        )
        await conn.execute(
            "INSERT INTO inbox (fingerprint, episode_id, status, alertname, labels, annotations, "
            "starts_at, generator_url, receiver, group_key, received_at, priority) "
            "VALUES ('fp', 1, 'firing', 'A', '{}', '{}', 1.0, '', 'r', 'g', 2.0, 2)"
        )
        events = link([event(n) for n in range(3)], Recording(), 0, GENESIS_HASH)
        async with conn.cursor() as cur:
            await cur.executemany(
                f"INSERT INTO events ({EVENT_COLUMNS}) VALUES ({', '.join(['%s'] * 19)})",
                [event_row(e, Recording()) for e in events],
            )
        if version >= 2:
            await conn.execute(
                "INSERT INTO remediations (playbook, fingerprint, episode_id, target, state, "
                "started_at) VALUES ('p', 'fp', 1, 'web', 'running', 3.0)"
            )
        if version >= 3:
            await conn.execute(
                "INSERT INTO audit_head (id, last_id, last_hash) VALUES (1, %s, %s)",
                (3, events[-1].hash),
            )
    return events


@pytest.mark.parametrize("version", range(1, len(PG_MIGRATIONS)))
def test_migrates_from_a_previous_version_keeping_data(pg_database: str, version: int) -> None:
    async def main() -> None:
        seeded = await _seed_version(pg_database, version)
        store = await pg_open(pg_database)
        try:
            assert await store.schema_version() == len(PG_MIGRATIONS)
            assert await store.events_after(0, 10) == seeded
            assert (await store.audit_anchor()).head_id == 3
            [item] = await store.claim(worker="w", now=10.0, lease=30.0, limit=5)
            assert (item.fingerprint, item.episode_id) == ("fp", 1)
            appended = await store.append([event(9)])
            assert appended[0].id == 4 and appended[0].prev_hash == seeded[-1].hash
            assert (await verify_store(store)).ok
            if version >= 2:
                [rem] = await store.remediations()
                assert rem.state == "running"
                # Left without a lease by the older version: taken as interrupted.
                found = await store.interrupt_running(
                    now=20.0, events_for=lambda r: [], expired_only=True
                )
                assert [r.id for r in found] == [rem.id]
        finally:
            await store.close()

    asyncio.run(main())


def test_refuses_a_schema_newer_than_it_knows(pg_database: str) -> None:
    asyncio.run(pg_migrated(pg_database))
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute("INSERT INTO schema_version (version) VALUES (99)")
    with pytest.raises(StoreUnavailable, match="newer"):
        asyncio.run(PostgresStore(pg_database).open())


# -- failures --------------------------------------------------------------------------------


def test_a_lost_connection_changes_nothing_and_the_next_write_reconnects(
    pg_database: str,
) -> None:
    async def main() -> None:
        store = await pg_open(pg_database)
        try:

            async def dies(tx: Tx) -> None:
                await tx.execute(
                    "INSERT INTO flags (name, value, actor, updated_at) VALUES ('x', '1', 't', 0)"
                )
                await append(tx, [event(1)])
                await tx.execute("SELECT pg_terminate_backend(pg_backend_pid())")

            with pytest.raises(StoreUnavailable):
                await store._write(dies)
            assert await store.flag("x") is None
            assert await store.events_after(0, 10) == []
            await store.set_flag("x", "2", actor="t", now=1.0, events=[event(2)])
            assert await store.flag("x") == "2"
            assert [e.id for e in await store.events_after(0, 10)] == [1]
        finally:
            await store.close()

    asyncio.run(main())


def test_connections_the_server_closed_cost_no_failed_request(pg_database: str) -> None:
    name = pg_database.rsplit("/", 1)[1]

    def kill_all() -> None:
        killed = pg_query(
            pg_database,
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND application_name = 'remediator'",
            (name,),
        )
        assert killed[0][0] >= 2

    async def main() -> None:
        store = await pg_open(pg_database)
        try:

            async def slow_read(tx: Tx) -> None:
                await tx.execute("SELECT pg_sleep(0.2)")

            await asyncio.gather(*[store._write(slow_read) for _ in range(4)])  # 4 pooled
            kill_all()  # as a server restart would
            await store.set_flag("y", "1", actor="t", now=1.0, events=[event(1)])
            await asyncio.gather(*[store._write(slow_read) for _ in range(4)])
            kill_all()
            assert await store.flag("y") == "1"
            assert [e.id for e in await store.events_after(0, 10)] == [1]
        finally:
            await store.close()

    asyncio.run(main())


def test_a_failed_commit_raises_store_unavailable_and_changes_nothing(pg_database: str) -> None:
    async def main() -> None:
        store = await pg_open(pg_database)
        try:
            await store.set_flag("a", "1", actor="t", now=1.0, events=[event(1)])
            with psycopg.connect(pg_database, autocommit=True) as conn:  # checked at COMMIT
                conn.execute(
                    "ALTER TABLE flags ADD CONSTRAINT one_value UNIQUE (value) "
                    "DEFERRABLE INITIALLY DEFERRED"
                )
            with pytest.raises(StoreUnavailable, match="could not commit"):
                await store.set_flag("b", "1", actor="t", now=2.0, events=[event(2)])
            assert await store.flag("b") is None
            assert [e.id for e in await store.events_after(0, 10)] == [1]
            assert (await store.audit_anchor()).head_id == 1
            assert (await verify_store(store)).ok
        finally:
            await store.close()

    asyncio.run(main())


def test_an_unreachable_server_is_store_unavailable() -> None:
    store = PostgresStore(f"postgresql://nobody:x@127.0.0.1:{free_port()}/none?connect_timeout=2")
    with pytest.raises(StoreUnavailable, match="cannot connect"):
        asyncio.run(store.open())


def test_raw_is_read_only_and_takes_postgres_paramstyle(pg_database: str) -> None:
    async def main() -> None:
        store = await pg_open(pg_database)
        try:
            assert await store.raw("SELECT %s::int + 1", (41,)) == [(42,)]
            # A stalled replica's transaction is aborted by the server (its locks released).
            assert await store.raw("SHOW idle_in_transaction_session_timeout") == [("30s",)]
            with pytest.raises(StoreUnavailable):
                await store.raw("INSERT INTO flags VALUES ('x', '1', 't', 0)")
            assert await store.flag("x") is None
        finally:
            await store.close()

    asyncio.run(main())


def test_url_scheme_and_pool_size() -> None:
    assert isinstance(create_store("postgres://u:p@127.0.0.1/db"), PostgresStore)
    store = PostgresStore("postgresql://u:p@127.0.0.1/db?pool_size=3&sslmode=disable")
    assert (store.pool_size, store.conninfo) == (3, "postgresql://u:p@127.0.0.1/db?sslmode=disable")
    assert store.shared
    given = "postgresql://u:p@127.0.0.1/db?options=-c%20search_path%3Dx&sslmode=disable"
    assert PostgresStore(given).conninfo == given
    split = PostgresStore(given + "&pool_size=2")
    assert (split.conninfo, split.pool_size) == (given, 2)
    with pytest.raises(ValueError, match="pool_size"):
        PostgresStore("postgresql://127.0.0.1/db?pool_size=0")


# -- the audit command -----------------------------------------------------------------------


def test_audit_verify_command_on_postgres(pg_database: str, tmp_path: Path) -> None:
    async def populate() -> None:
        store = await pg_open(pg_database)
        try:
            await store.append([event(n) for n in range(10)])
        finally:
            await store.close()

    asyncio.run(populate())
    config = tmp_path / "remediator.yml"
    config.write_text(f"store: {{url: '{pg_database}'}}\n")
    command = [sys.executable, "-m", "remediator", "audit", "verify", "--config", str(config)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "10 records verified" in done.stdout
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute("DELETE FROM events WHERE id = 5")
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute("UPDATE events SET message = 'x' WHERE id = 6")
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert "BROKEN at record 5" in done.stderr and "missing" in done.stderr
