"""Retention on every backend: ``Store.prune`` behind the ``retention`` lease, the chain still
verifies from the checkpoint, tampering with what is left is still caught, and
``remediator audit prune`` works on a PostgreSQL store too."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from remediator.audit.recording import Recording
from remediator.clock import FakeClock
from remediator.config import model as config_mod
from remediator.config.auth import Authenticator
from remediator.engine.retention import LEASE, Retention
from remediator.engine.verifier import verify_store
from remediator.http.app import build_runtime
from remediator.plugins import Plugins
from remediator.store import EventQuery, Store
from remediator.store.sqlite import sqlite_path
from tests.store_helpers import event, opened, run, store_url

__all__ = ["store_url"]  # the fixture
ROOT = Path(__file__).resolve().parents[1]


def retention(store: Store, owner: str, now: float, keep: float = 10.0) -> Retention:
    return Retention(
        store=store, retention=keep, recording=Recording(), clock=FakeClock(now), owner=owner
    )


def tamper(url: str, *statements: str) -> None:
    """Change the stored chain behind the store's back (the update trigger dropped first)."""
    if url.startswith("sqlite:"):
        conn = sqlite3.connect(sqlite_path(url))
        conn.execute("DROP TRIGGER IF EXISTS events_no_update")
        for statement in statements:
            conn.execute(statement)
        conn.commit()
        conn.close()
        return
    with psycopg.connect(url, autocommit=True) as pg:
        pg.execute("DROP TRIGGER IF EXISTS events_no_update ON events")
        for statement in statements:
            pg.execute(statement)


async def ids(store: Store) -> list[int]:
    return sorted(e.id or 0 for e in await store.events(EventQuery(limit=10_000)))


def test_prune_moves_the_checkpoint_and_the_chain_still_verifies(store_url: str) -> None:
    async def body(store: Store) -> None:
        await store.append([event(n) for n in range(20)])  # times 1000 .. 1019
        first, second = retention(store, "a", 1025.0), retention(store, "b", 1025.0)
        assert await first.run_once() == 15  # ids 1..15: older than 1015
        assert await ids(store) == [*range(16, 21), 21]
        anchor = await store.audit_anchor()
        assert (anchor.checkpoint_id, anchor.head_id) == (15, 21)
        [checkpoint] = await store.events(EventQuery(type="audit:checkpoint"))
        assert checkpoint.id == 21 and checkpoint.actor == "retention"
        assert checkpoint.details["through_id"] == 15
        assert checkpoint.details["hash"] == anchor.checkpoint_hash
        verdict = await verify_store(store)
        assert verdict.ok and verdict.checked == 6, verdict.line()
        # Another replica does nothing while the lease is held; the holder finds nothing new.
        assert await second.run_once() == 0
        assert await first.run_once() == 0
        assert await ids(store) == [*range(16, 22)]
        # Later everything but the head goes; the checkpoints chain on.
        later = retention(store, "a", 1200.0)
        assert await later.run_once() == 5  # ids 16..20; the head (the checkpoint) stays
        assert await ids(store) == [21, 22]
        assert (await store.audit_anchor()).checkpoint_id == 20
        verdict = await verify_store(store)
        assert verdict.ok and verdict.checked == 2, verdict.line()
        holders = await store.raw("SELECT owner FROM leases WHERE name = 'retention'")
        assert holders == [("a",)]

    run(store_url, body)


def test_appends_during_a_prune_keep_one_chain(store_url: str) -> None:
    async def body(store: Store) -> None:
        await store.append([event(n) for n in range(200)])

        async def writer(k: int) -> None:
            for n in range(10):
                await store.append([event(1000 + 10 * k + n)])

        results = await asyncio.gather(
            store.prune(before=1100.0, now=5000.0, recording=Recording()),
            *(writer(k) for k in range(4)),
        )
        assert results[0] == 100
        verdict = await verify_store(store)
        assert verdict.ok and verdict.checked == 200 - 100 + 1 + 40, verdict.line()

    run(store_url, body)


@pytest.mark.parametrize(
    ("statement", "problem"),
    [
        ("UPDATE events SET message = 'nothing happened' WHERE id = 18", "modified"),
        ("DELETE FROM events WHERE id = 16", "missing"),
        ("UPDATE audit_checkpoint SET hash = 'forged' WHERE id = 1", "deleted or reordered"),
        ("DELETE FROM events WHERE id >= 20", "truncated tail"),
    ],
)
def test_tampering_after_pruning_is_still_caught(
    store_url: str, statement: str, problem: str
) -> None:
    async def prune(store: Store) -> None:
        await store.append([event(n) for n in range(20)])
        assert await retention(store, "a", 1025.0).run_once() == 15
        assert (await verify_store(store)).ok

    async def check(store: Store) -> None:
        verdict = await verify_store(store)
        assert not verdict.ok and problem in verdict.problem, verdict.line()

    run(store_url, prune)
    tamper(store_url, statement)
    run(store_url, check)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "remediator", "audit", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
        env=dict(os.environ),
    )


def test_audit_prune_command_on_every_backend(store_url: str, tmp_path: Path) -> None:
    config = tmp_path / "remediator.yml"
    config.write_text(f"store: {{url: '{store_url}'}}\n")

    async def populate(store: Store) -> None:
        await store.append([event(n) for n in range(30)])  # from 1970: all old

    run(store_url, populate)
    done = _cli("prune", "--config", str(config), "--older-than", "1d")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "pruned 29 events older than 1d"  # all but the head
    verified = _cli("verify", "--config", str(config))
    assert verified.returncode == 0, verified.stderr
    assert "audit chain intact: 2 records verified (head 31)" in verified.stdout
    tamper(store_url, "DELETE FROM events WHERE id = 30")
    broken = _cli("verify", "--config", str(config))
    assert broken.returncode == 1 and "BROKEN at record 30" in broken.stderr


def test_audit_prune_command_without_a_store(tmp_path: Path) -> None:
    config = tmp_path / "remediator.yml"
    config.write_text(f"store: {{url: 'sqlite:///{tmp_path}/none.db'}}\n")
    done = _cli("prune", "--config", str(config))
    assert done.returncode == 2 and "no store at" in done.stderr
    assert not (tmp_path / "none.db").exists()


def test_the_runtime_prunes_on_every_backend(store_url: str) -> None:
    """build_runtime wires retention to the store whatever the backend."""

    async def main() -> None:
        async with opened(store_url) as store:
            await store.append([event(n) for n in range(5)])
        cfg = config_mod.parse(
            {
                "store": {"url": store_url},
                "health": {"enabled": False},
                "audit": {"retention": "1d"},
            },
            env={},
        )
        rt = await build_runtime(cfg, authenticator=Authenticator([]), plugins=Plugins())
        try:
            assert rt.retention is not None
            assert await rt.retention.run_once() == 4  # from 1970; all but the head
            assert (await verify_store(rt.store)).ok
            lease = await rt.store.raw(f"SELECT owner FROM leases WHERE name = '{LEASE}'")
            assert lease == [(rt.retention.owner,)]
        finally:
            await asyncio.to_thread(rt.clients.close)
            await rt.clients.aclose()
            await rt.store.close()

    asyncio.run(main())
