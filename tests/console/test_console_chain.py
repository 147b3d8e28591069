"""The audit chain's status on Now: verified on a schedule, incrementally, broken by an edit."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from pathlib import Path

from remediator.audit.events import Event
from remediator.engine.auditor import Auditor
from remediator.runtime import Runtime
from tests.console.consoleapp import served, sign_in


def gauge(text: str, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    assert found is not None, name
    return float(found.group(1))


def started(rt: Runtime) -> Auditor:
    """The auditor once its start-up round is done (so that no round of the app's runs beside
    the test's)."""
    auditor = rt.auditor
    assert auditor is not None
    deadline = time.monotonic() + 10
    while auditor.status is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert auditor.status is not None and auditor.status.ok
    return auditor


def tamper(db: Path, statement: str, *args: object) -> None:
    """An edit behind the store's back, as someone with write access to the file would make."""
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TRIGGER IF EXISTS events_no_update")
        conn.execute(statement, args)


def events(n: int, start: int, now: float) -> list[Event]:
    """Recent ones: retention prunes events older than audit.retention."""
    return [Event(type="recovery:succeeded", time=now - 1000 + start + i, target="web",
                  playbook="restart-web", outcome="success", fingerprint=f"c{start + i}")
            for i in range(n)]  # fmt: skip


def test_now_says_the_chain_verifies_then_broken_after_a_row_is_edited(tmp_path: Path) -> None:
    with served(tmp_path) as (client, rt):
        auditor = started(rt)
        asyncio.run(rt.store.append(events(3, 1, rt.clock.now())))
        status = asyncio.run(auditor.run_once())
        assert status.ok and status.records >= 3
        sign_in(client, "viewer")
        page = client.get("/console/").text
        assert f"verifies</span>, {status.records} records, last checked" in page
        metrics = client.get("/metrics").text
        assert gauge(metrics, "remediator_audit_chain_ok") == 1
        assert (
            gauge(metrics, "remediator_audit_chain_last_check_timestamp_seconds")
            == status.checked_at
        )

        # appended after the check, then edited behind the store's back
        asyncio.run(rt.store.append(events(2, 10, rt.clock.now())))
        with sqlite3.connect(tmp_path / "console.db") as db:
            (last,) = db.execute("SELECT max(id) FROM events").fetchone()
        tamper(
            tmp_path / "console.db", "UPDATE events SET message = 'edited' WHERE id = ?", last - 1
        )
        broken = asyncio.run(auditor.run_once())
        assert not broken.ok and broken.broken_at == last - 1
        page = client.get("/console/").text
        assert f"BROKEN at record {last - 1}</span>: hash does not match" in page
        assert "remediator audit verify" in page
        assert gauge(client.get("/metrics").text, "remediator_audit_chain_ok") == 0
        # it stays broken on the next round
        assert asyncio.run(auditor.run_once()).broken_at == last - 1


def test_a_later_round_walks_only_the_records_appended_since_the_last_verified(
    tmp_path: Path,
) -> None:
    with served(tmp_path) as (_client, rt):
        auditor = started(rt)
        asyncio.run(rt.store.append(events(3, 1, rt.clock.now())))
        first = asyncio.run(auditor.run_once())
        tamper(tmp_path / "console.db", "UPDATE events SET message = 'edited' WHERE id = 1")
        # an edit below the last verified record is for `remediator audit verify` to find
        later = asyncio.run(auditor.run_once())
        assert later.ok and later.records == first.records
        asyncio.run(rt.store.append(events(1, 20, rt.clock.now())))
        assert asyncio.run(auditor.run_once()).records == first.records + 1
