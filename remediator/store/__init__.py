"""Store backends, chosen by the URL scheme of ``store.url``."""

from __future__ import annotations

from collections.abc import Callable

from remediator.store.base import Store
from remediator.store.postgres import PostgresStore
from remediator.store.records import EventQuery, InboxItem, IngestResult
from remediator.store.sqlite import ChainFile, SqliteStore

BACKENDS: dict[str, Callable[[str], Store]] = {
    "sqlite": SqliteStore,
    "postgresql": PostgresStore,
    "postgres": PostgresStore,
}


def create_store(url: str) -> Store:
    """The backend for ``url`` (not yet opened)."""
    scheme = url.split(":", 1)[0]
    try:
        factory = BACKENDS[scheme]
    except KeyError:
        raise ValueError(f"no store backend for {scheme!r} (known: {sorted(BACKENDS)})") from None
    return factory(url)


__all__ = [
    "BACKENDS",
    "ChainFile",
    "EventQuery",
    "InboxItem",
    "IngestResult",
    "Store",
    "create_store",
]
