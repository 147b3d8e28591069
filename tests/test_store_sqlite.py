"""SQLite-specific checks of the store (the behaviour shared with every backend is in
test_store_contract.py): WAL and full fsync."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from remediator.store import create_store


def test_wal_and_full_sync(tmp_path: Path) -> None:
    async def main() -> tuple[str, int]:
        store = create_store(f"sqlite:///{tmp_path}/s.db")
        await store.open()
        mode = (await store.raw("PRAGMA journal_mode"))[0][0]
        await store.close()
        conn = sqlite3.connect(tmp_path / "s.db")
        conn.close()
        return mode, 0

    mode, _ = asyncio.run(main())
    assert mode == "wal"
    # synchronous is per connection: check the writer's setting through the module.
    from remediator.store.sqlite_writer import connect as _connect

    conn = _connect(tmp_path / "s.db")
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    conn.close()
