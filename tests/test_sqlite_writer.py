"""The SQLite writer: group commit on the event loop, the COMMIT on the writer's thread."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from remediator.errors import StoreUnavailable
from remediator.store.sqlite_writer import Writer, connect


def _writer(path: Path) -> tuple[Writer, list[str]]:
    conn = connect(path)
    conn.execute("CREATE TABLE t (x INTEGER NOT NULL UNIQUE)")
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    return Writer(conn), statements


def _rows(path: Path) -> list[int]:
    conn = sqlite3.connect(path)
    try:
        return [row[0] for row in conn.execute("SELECT x FROM t ORDER BY x")]
    finally:
        conn.close()


def _insert(x: int) -> Callable[[sqlite3.Connection], sqlite3.Cursor]:
    return lambda conn: conn.execute("INSERT INTO t (x) VALUES (?)", (x,))


def test_concurrent_jobs_share_commits_and_are_on_disk_when_answered(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    writer, statements = _writer(path)

    async def main() -> None:
        results = await asyncio.gather(*(writer.run(_insert(i)) for i in range(300)))
        assert results == [None] * 300  # cursors never leave the writer
        assert _rows(path) == list(range(300))  # another connection sees every row
        await writer.stop()

    asyncio.run(main())
    commits = statements.count("COMMIT")
    assert 1 <= commits < 30, commits


def test_a_failing_job_rolls_back_alone(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    writer, _ = _writer(path)

    def half_then_fail(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t (x) VALUES (100)")
        raise ValueError("boom")

    async def main() -> None:
        outcomes = await asyncio.gather(
            writer.run(_insert(1)),
            writer.run(half_then_fail),
            writer.run(_insert(1)),  # UNIQUE: a SQLite error
            writer.run(_insert(2)),
            return_exceptions=True,
        )
        assert outcomes[0] is None and outcomes[3] is None
        assert isinstance(outcomes[1], ValueError)
        assert isinstance(outcomes[2], StoreUnavailable)
        assert _rows(path) == [1, 2]
        await writer.stop()

    asyncio.run(main())


def test_a_batch_stops_taking_jobs_after_its_time_budget(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    writer, statements = _writer(path)

    def slow(x: int) -> Callable[[sqlite3.Connection], None]:
        def job(conn: sqlite3.Connection) -> None:
            time.sleep(0.006)  # a job that holds the loop for 6 ms
            conn.execute("INSERT INTO t (x) VALUES (?)", (x,))

        return job

    async def main() -> None:
        await asyncio.gather(*(writer.run(slow(i)) for i in range(20)))
        await writer.stop()

    asyncio.run(main())
    assert _rows(path) == list(range(20))
    assert statements.count("COMMIT") >= 4  # 20 x 6 ms in batches of at most ~20 ms


def test_heavy_jobs_run_on_the_writer_thread(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    writer, _ = _writer(path)
    seen: list[str] = []

    def heavy(conn: sqlite3.Connection) -> int:
        seen.append(threading.current_thread().name)
        conn.execute("INSERT INTO t (x) VALUES (7)")
        return 7

    async def main() -> None:
        assert await writer.run(heavy, heavy=True) == 7
        await writer.run(_insert(8))
        await writer.stop()

    asyncio.run(main())
    assert seen and seen[0].startswith("store-writer")
    assert _rows(path) == [7, 8]


def test_two_event_loops_in_two_threads_write_through_one_writer(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    writer, _ = _writer(path)
    errors: list[BaseException] = []

    def loop_thread(offset: int) -> None:
        async def many() -> None:
            await asyncio.gather(*(writer.run(_insert(offset + i)) for i in range(200)))

        try:
            asyncio.run(many())
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=loop_thread, args=(n * 1000,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert _rows(path) == [*range(200), *range(1000, 1200)]
    asyncio.run(writer.stop())


def test_a_stopped_writer_refuses_jobs(tmp_path: Path) -> None:
    writer, _ = _writer(tmp_path / "w.db")

    async def main() -> None:
        await writer.stop()
        with pytest.raises(StoreUnavailable):
            await writer.run(_insert(1))

    asyncio.run(main())


def test_a_batch_abandoned_while_waiting_for_the_connection_does_not_keep_it(
    tmp_path: Path,
) -> None:
    """An event loop that ends (its tasks cancelled) while its batch waits for the connection
    held by a heavy job must not leave the connection taken once that job is done."""
    path = tmp_path / "w.db"
    writer, _ = _writer(path)
    release = threading.Event()
    holding = threading.Event()

    def heavy(conn: sqlite3.Connection) -> None:
        holding.set()
        release.wait(10)
        conn.execute("INSERT INTO t (x) VALUES (1)")

    heavy_done: list[BaseException | None] = []

    def heavy_loop() -> None:
        async def main() -> None:
            await writer.run(heavy, heavy=True)

        try:
            asyncio.run(main())
            heavy_done.append(None)
        except BaseException as exc:  # pragma: no cover - reported below
            heavy_done.append(exc)

    holder = threading.Thread(target=heavy_loop)
    holder.start()
    assert holding.wait(10)

    async def abandoned() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(writer.run(_insert(2)), timeout=0.1)

    asyncio.run(abandoned())  # ends its loop: the waiting batch is cancelled
    release.set()
    holder.join(timeout=10)
    assert heavy_done == [None]

    async def later() -> None:
        await asyncio.wait_for(writer.run(_insert(3)), timeout=5)
        await writer.stop()

    asyncio.run(later())
    assert _rows(path) == [1, 3]
