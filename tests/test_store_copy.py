"""``remediator store copy``: a SQLite store moved to PostgreSQL (a fresh database on the real
server) and back, row for row, its audit chain verifying, new writes getting new ids."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from remediator import cli
from remediator.store import Store
from remediator.store.copy import open_side
from tests.engine_harness import alert
from tests.store_helpers import chain_ok, chained, event, opened

pytestmark = pytest.mark.postgres


async def _fill(store: Store) -> None:
    """A store that has lived: alerts, episodes, a remediation, a flag, a breaker, events."""
    await store.ingest(
        [alert("a", starts=100.0), alert("b", starts=101.0)],
        received_at=110.0,
        receiver="r",
        group_key="g",
    )
    await store.ingest(
        [alert("a", starts=100.0, status="resolved", ends=150.0)],
        received_at=151.0,
        receiver="r",
        group_key="g",
    )
    episodes = await store.raw("SELECT id FROM episodes ORDER BY id")
    await store.start_remediation(
        playbook="restart",
        fingerprint="b",
        episode_id=int(episodes[-1][0]),
        target="web",
        now=120.0,
        events=[event(1, target="web")],
    )
    await store.set_flag("paused", "1", actor="test", now=130.0, events=[event(2)])
    await store.append([event(n) for n in range(3, 8)])
    await chained(store)  # the alerts' arrivals, as the worker's claim chains them


def _tables(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (but the migrations' own), sorted, floats compared exactly."""
    side = open_side(url)
    try:
        out = {}
        for table in side.tables():
            columns = sorted(side.columns(table))
            out[table] = sorted(
                (tuple(row) for batch in side.rows(table, columns) for row in batch), key=repr
            )
        return out
    finally:
        side.close()


def _copy(source: str, dest: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(["store", "copy", "--from", source, "--to", dest])
    out, err = capsys.readouterr()
    return code, out, err


async def _write_after_copy(url: str) -> None:
    """The copy keeps working: its chain verifies, and new rows get ids past the copied ones."""
    async with opened(url) as store:
        before = await chain_ok(store)
        await store.ingest([alert("c", starts=200.0)], received_at=201.0, receiver="r", group_key="g")  # fmt: skip
        await chained(store)
        await store.append([event(99)])
        after = await chain_ok(store)
        assert len(after) == len(before) + 2  # the alert's record and the event
        episodes = [int(r[0]) for r in await store.raw("SELECT id FROM episodes ORDER BY id")]
        assert len(set(episodes)) == len(episodes) == 3


def test_a_sqlite_store_copied_to_postgresql_and_back_keeps_every_row_and_its_chain(
    tmp_path: Path, pg_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = f"sqlite:///{tmp_path}/source.db"

    async def fill() -> None:
        async with opened(source) as store:
            await _fill(store)

    asyncio.run(fill())
    original = _tables(source)
    assert len(original["events"]) >= 9 and original["episodes"] and original["remediations"]

    code, out, err = _copy(source, pg_database, capsys)
    assert code == 0, err
    assert f"copied {sum(map(len, original.values()))} rows" in out
    assert f"audit chain intact: {len(original['events'])} records verified" in out
    assert _tables(pg_database) == original

    back = f"sqlite:///{tmp_path}/back.db"
    code, out, err = _copy(pg_database, back, capsys)
    assert code == 0, err
    assert _tables(back) == original

    asyncio.run(_write_after_copy(pg_database))
    asyncio.run(_write_after_copy(back))


def test_a_copy_into_a_store_that_has_rows_is_refused_and_writes_nothing(
    tmp_path: Path, pg_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = f"sqlite:///{tmp_path}/source.db"
    dest = f"sqlite:///{tmp_path}/dest.db"

    async def fill(url: str, count: int) -> None:
        async with opened(url) as store:
            await store.append([event(n) for n in range(count)])

    asyncio.run(fill(source, 3))
    asyncio.run(fill(pg_database, 1))
    code, _, err = _copy(source, pg_database, capsys)
    assert code == 2
    assert "not empty (table events has rows)" in err
    assert len(_tables(pg_database)["events"]) == 1

    asyncio.run(fill(dest, 0))  # migrated, empty
    with sqlite3.connect(tmp_path / "dest.db") as conn:
        conn.execute("CREATE TABLE stray (x INTEGER)")
    code, _, err = _copy(source, dest, capsys)
    assert code == 2
    assert "different tables" in err and "stray" in err
    assert _tables(dest)["events"] == []
