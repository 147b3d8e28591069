"""The console's incident timeline on both backends: an incident's events by fingerprint, from an
index (the last migration adds ``events_fingerprint``)."""

from __future__ import annotations

import asyncio
import sqlite3

import psycopg

from remediator.audit.events import Event
from remediator.store import EventQuery
from tests.store_helpers import opened, store_url

__all__ = ["store_url"]  # the fixture


def _indexes(url: str) -> set[str]:
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'").fetchall()
    else:
        with psycopg.connect(url) as conn:
            rows = conn.execute("SELECT indexname FROM pg_indexes").fetchall()
    return {str(r[0]) for r in rows}


def test_an_incident_timeline_is_its_fingerprints_events_read_through_an_index(
    store_url: str,
) -> None:
    async def main() -> list[str]:
        async with opened(store_url) as store:
            await store.append(
                [Event(type=f"t{i}", time=float(i), fingerprint=f"f{i % 3}") for i in range(30)]
            )
            found = await store.events(EventQuery(fingerprint="f1", limit=1000))
            return [e.type for e in found]

    assert asyncio.run(main()) == [f"t{i}" for i in range(28, 0, -3)]
    assert "events_fingerprint" in _indexes(store_url)
