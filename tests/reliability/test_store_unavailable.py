"""The store cannot be written: intake answers 503 (never 200) while it is broken, and after
recovery a real Alertmanager's retries deliver everything.

The SQLite database and its WAL are made immutable with ``chattr +i`` (as root, ``chmod`` would
not stop writes; ``+i`` also stops writes through descriptors that are already open). Where the
test directory's filesystem has no such flag (tmpfs), the store is put on a small ext4 image
loop-mounted under a directory this test created, and unmounted at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from remediator.store.sqlite import SqliteStore
from tests.alertmanager import Alertmanager
from tests.reliability.conftest import Figures, Serve
from tests.reliability.support import ALERTS, FastServed, alert, payload
from tests.waiting import wait_for

REQUESTS = "remediator_webhook_requests_total"


def _chattr(flag: str, *paths: Path) -> bool:
    done = subprocess.run(
        ["chattr", flag, *map(str, paths)], capture_output=True, text=True, check=False
    )
    return done.returncode == 0


def _immutable_works(directory: Path) -> bool:
    probe = directory / "chattr-probe"
    probe.write_text("x")
    try:
        if not _chattr("+i", probe):
            return False
        try:
            with probe.open("a") as handle:
                handle.write("y")
        except PermissionError:
            return True
        return False
    finally:
        _chattr("-i", probe)
        probe.unlink()


@contextlib.contextmanager
def store_dir(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A directory whose files can be made immutable, and how it was obtained."""
    plain = tmp_path / "store"
    plain.mkdir()
    if _immutable_works(plain):
        yield plain, "chattr +i on the test filesystem"
        return
    image, mount = tmp_path / "store.img", tmp_path / "mnt"
    mount.mkdir()
    with image.open("wb") as handle:
        handle.truncate(64 * 1024 * 1024)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mount)], check=True)
    try:
        assert _immutable_works(mount), "no immutable flag even on a loop-mounted ext4"
        yield mount, "chattr +i on a loop-mounted ext4 image"
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def am_alert(name: str, started: datetime) -> dict[str, Any]:
    return {
        "labels": {"alertname": name, "severity": "warning", "instance": "db-1"},
        "annotations": {"summary": f"{name} firing"},
        "startsAt": started.isoformat(),
        "generatorURL": "http://127.0.0.1:9090/graph",
    }


def stored_names(served: FastServed) -> set[str]:
    return {e["alertname"] for e in served.events("alert:received")}


def test_unwritable_store_answers_503_and_alertmanager_retries_deliver_everything(
    serve: Serve, alertmanager_bin: str, tmp_path: Path, figures: Figures
) -> None:
    with store_dir(tmp_path) as (directory, how):
        db = directory / "remediator.db"
        served = serve({"health": {"enabled": False}, "store": {"url": f"sqlite:///{db}"}})
        am = Alertmanager(
            alertmanager_bin, tmp_path / "am", served.url + ALERTS, served.tokens["alertmanager"]
        )
        frozen: list[Path] = []
        try:
            now = datetime.now(UTC)
            before = [f"BeforeOutage{i}" for i in range(3)]
            am.post([am_alert(name, now) for name in before])
            wait_for(
                lambda: set(before) <= stored_names(served), timeout=30, what="the first alerts"
            )

            frozen = [db, db.with_name(db.name + "-wal")]
            assert all(p.exists() for p in frozen)
            assert _chattr("+i", *frozen)
            broke = time.monotonic()
            ok_at_break = served.metric(REQUESTS, 'code="200"')
            refused_at_break = served.metric(REQUESTS, 'code="503"')
            direct = [served.post(payload([alert(f"{i:016x}", f"Direct{i}")])) for i in range(20)]
            assert direct == [503] * 20
            during = [f"DuringOutage{i}" for i in range(10)]
            am.post([am_alert(name, now) for name in during])
            # Alertmanager keeps retrying each group's notification; let it try a few times.
            wait_for(
                lambda: served.metric(REQUESTS, 'code="503"') >= refused_at_break + 20 + 20,
                timeout=60,
                what="Alertmanager's retries to be refused",
            )
            time.sleep(max(0.0, 5.0 - (time.monotonic() - broke)))
            ok_while_broken = served.metric(REQUESTS, 'code="200"') - ok_at_break
            refused = served.metric(REQUESTS, 'code="503"') - refused_at_break
            outage = time.monotonic() - broke
            assert ok_while_broken == 0
            assert not set(during) & stored_names(served)

            assert _chattr("-i", *frozen)
            frozen = []
            healed = time.monotonic()
            wait_for(
                lambda: set(during) <= stored_names(served), timeout=90, what="the retried alerts"
            )
            delivered_after = time.monotonic() - healed
            names = stored_names(served)
            assert not {f"Direct{i}" for i in range(20)} & names  # refused, never half-stored
            assert served.post(payload([alert("ffff000000000001", "AfterOutage")])) == 200
        finally:
            if frozen:
                _chattr("-i", *frozen)
            am.stop()
            served.stop()
    figures(
        method=how,
        outage_seconds=round(outage, 1),
        answers_503_while_broken=int(refused),
        answers_200_while_broken=int(ok_while_broken),
        alertmanager_alerts_sent_during_outage=len(during),
        alertmanager_alerts_stored_after=len(set(during) & names),
        seconds_to_deliver_after_recovery=round(delivered_after, 1),
    )


def test_a_caller_that_stops_waiting_does_not_take_the_store_down(tmp_path: Path) -> None:
    """Regression: a task cancelled while its write was running (a lease keeper cancelled at
    the end of a remediation, a step timeout, shutdown) cancelled the write's future; the
    writer thread then died on ``set_result`` and every later write — every webhook — failed
    with 503 until a restart."""

    async def main() -> None:
        store = SqliteStore(f"sqlite:///{tmp_path}/w.db")
        await store.open()
        try:

            def slow(conn: sqlite3.Connection) -> int:
                time.sleep(0.3)
                return 1

            waiter = asyncio.create_task(store._write(slow))
            await asyncio.sleep(0.1)
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiter
            await asyncio.sleep(0.4)  # the job finishes; its caller is gone
            await store.ping()
            assert await store.pending_count() == 0
        finally:
            await store.close()

    asyncio.run(main())
