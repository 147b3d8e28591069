"""Helpers of the store tests: a store URL per backend, opened stores, chain checks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from remediator.audit.events import GENESIS_HASH, Event, record_hash
from remediator.audit.recording import Recording
from remediator.engine.verifier import verify_store
from remediator.store import EventQuery, Store, create_store
from remediator.store.postgres import PostgresStore


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store per test, once per backend: a SQLite file, a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/s.db"
    url: str = request.getfixturevalue("pg_database")
    return url


@contextlib.asynccontextmanager
async def opened(url: str, recording: Recording | None = None) -> AsyncIterator[Store]:
    store = create_store(url)
    await store.open()
    if recording is not None:
        store.configure(recording)
    try:
        yield store
    finally:
        await store.close()


def run(url: str, body: Callable[[Store], Awaitable[None]], recording: Recording | None = None) -> None:  # fmt: skip
    """Open the store at ``url``, run ``body`` on it, close it (one event loop)."""

    async def main() -> None:
        async with opened(url, recording) as store:
            await body(store)

    asyncio.run(main())


def event(n: int, **fields: Any) -> Event:
    return Event(type="test:event", time=1000.0 + n, message=f"event {n}", **fields)


async def chained(store: Store) -> None:
    """Chain the arrivals intake left pending (remediator/store/arrivals.py): a claim of
    nothing, as the worker's next claim would."""
    await store.claim(worker="chainer", now=0.0, lease=0.0, limit=0)


async def chain_ok(store: Store) -> list[Event]:
    """Every recorded event, oldest first, after checking they make one intact chain."""
    events = list(reversed(await store.events(EventQuery(limit=10_000))))
    prev = GENESIS_HASH
    for number, recorded in enumerate(events, start=1):
        assert recorded.id == number and recorded.prev_hash == prev
        assert record_hash(recorded) == recorded.hash
        prev = recorded.hash
    verdict = await verify_store(store)
    assert verdict.ok, verdict.line()
    assert verdict.checked == len(events)
    return events


async def pg_open(url: str) -> PostgresStore:
    store = PostgresStore(url)
    await store.open()
    return store


async def pg_migrated(url: str) -> None:
    """Create the schema (then close the store)."""
    store = await pg_open(url)
    await store.close()


def pg_query(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()
