"""The store contract for approvals of single steps, run against every backend (see
test_store_contract.py): a running remediation pauses before a step with one open approval of
that step, in one commit with its events; a step is asked once; another step of the same
remediation gets its own approval; an approval resumes it under the decider's lease."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from remediator.store import Store
from remediator.store.approvals import APPROVED, AWAITING_APPROVAL, DENIED
from remediator.store.records import BLOCKED, RUNNING
from remediator.store.schema import SQLITE_MIGRATIONS
from remediator.store.sqlite import migrate
from tests.store_helpers import chain_ok, event, run, store_url

__all__ = ["store_url"]  # the fixture


def test_a_remediation_pauses_once_per_step_and_each_step_has_its_own_approval(
    store_url: str,
) -> None:
    async def body(store: Store) -> None:
        rid = await store.start_remediation(playbook="p", fingerprint="f", episode_id=1, target="web", now=100.0, owner="a", lease=30.0)  # fmt: skip
        assert rid is not None
        first = await store.pause_for_approval(
            rid, step=1, now=110.0, ttl=600.0, attempts=1, events=[event(1)],
            details={"action": "docker.restart"},
        )  # fmt: skip
        assert first is not None
        [rem] = await store.remediations(target="web")
        assert (rem.state, rem.attempts) == (AWAITING_APPROVAL, 1)
        [found] = await store.approvals(state="open")
        assert (found.id, found.remediation_id, found.step) == (first, rid, 1)
        assert (found.requested_at, found.expires_at, found.playbook) == (110.0, 710.0, "p")
        assert found.details["action"] == "docker.restart"
        # not running any more: nothing changes, and its events are not recorded
        assert await store.pause_for_approval(rid, step=2, now=111.0, ttl=1.0, attempts=1, events=[event(2)]) is None  # fmt: skip
        approved = await store.settle_approval(
            first, state=APPROVED, by="alice", channel="api", reason="", now=120.0,
            owner="b", lease=30.0, events=[event(3)],
        )  # fmt: skip
        assert approved is not None and approved.step == 1
        assert len(await store.remediations(target="web", state=RUNNING)) == 1
        # the approved step is never asked again; a later step gets its own approval
        assert await store.pause_for_approval(rid, step=1, now=121.0, ttl=1.0, attempts=1, events=[event(4)]) is None  # fmt: skip
        second = await store.pause_for_approval(rid, step=2, now=122.0, ttl=60.0, attempts=1, events=[event(5)])  # fmt: skip
        assert second is not None and second != first
        assert await store.settle_approval(second, state=DENIED, by="bob", channel="api", reason="no", now=130.0, events=[event(6)])  # fmt: skip
        [rem] = await store.remediations(target="web")
        assert (rem.state, rem.reason) == (BLOCKED, "approval_denied")
        assert [(a.step, a.state) for a in await store.approvals()] == [(2, DENIED), (1, APPROVED)]
        requested = [e for e in await chain_ok(store) if e.message in ("event 1", "event 5")]
        assert [e.details["approval"] for e in requested] == [first, second]
        assert "event 2" not in [e.message for e in await chain_ok(store)]

    run(store_url, body)


def test_the_playbooks_own_approval_has_no_step_and_stays_one_per_remediation(
    store_url: str,
) -> None:
    async def body(store: Store) -> None:
        kw = {"playbook": "p", "fingerprint": "f", "episode_id": 1, "target": "web", "ttl": 60.0, "config_version": 1}  # fmt: skip
        aid = await store.request_approval(now=100.0, events=[event(1)], **kw)  # type: ignore[arg-type]
        assert aid is not None
        assert await store.request_approval(now=101.0, events=[event(2)], **kw) is None  # type: ignore[arg-type]
        [found] = await store.approvals()
        assert found.step is None and found.id == aid

    run(store_url, body)


def test_an_sqlite_store_keeps_its_approvals_and_their_ids_across_the_migration(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for number, script in enumerate(SQLITE_MIGRATIONS[:-1], start=1):
        conn.executescript(script)
        conn.execute("INSERT INTO schema_version (version) VALUES (?)", (number,))
    conn.execute(
        "INSERT INTO approvals (remediation_id, playbook, target, fingerprint, episode_id, state, "
        "requested_at, expires_at) VALUES (7, 'p', 'web', 'f', 1, 'open', 1.0, 2.0), "
        "(8, 'p', 'web', 'f', 2, 'denied', 1.0, 2.0)"
    )
    conn.execute("DELETE FROM approvals WHERE remediation_id = 8")  # its id must not come back
    migrate(conn)
    rows = conn.execute("SELECT id, remediation_id, step FROM approvals").fetchall()
    assert rows == [(1, 7, None)]
    conn.execute(
        "INSERT INTO approvals (remediation_id, playbook, target, fingerprint, episode_id, state, "
        "requested_at, expires_at, step) VALUES (7, 'p', 'web', 'f', 1, 'open', 1.0, 2.0, 3)"
    )
    assert conn.execute("SELECT max(id) FROM approvals").fetchone() == (3,)
    conn.close()
