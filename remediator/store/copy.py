"""Copying a whole store to another backend: ``remediator store copy --from URL --to URL``.

Both stores are opened once through their backend first, so each is migrated to this
remediator's schema; the copy then refuses unless both are at the same version, have the same
tables and columns, and every table of the destination is empty. Rows are copied verbatim (ids,
hashes, sealed records, leases), table by table in the order the source created them (so a
referenced row exists before the row that refers to it), in ONE transaction on the
destination: it has all of the store or none of it. Identity sequences on PostgreSQL are moved
past the copied ids. Since every event keeps its id, ``prev_hash`` and ``hash``, and the chain's
head and checkpoint rows are copied with them, the destination's audit chain verifies exactly
as the source's did.

The source must not be written while it is copied: stop remediator first. Tables are read
from the database itself, so a table a later migration adds is copied without a change here.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import psycopg

from remediator.errors import StoreUnavailable
from remediator.store.postgres import split_url
from remediator.store.sqlite import sqlite_path
from remediator.store.sqlite_writer import connect

BATCH = 1000
SKIPPED = frozenset({"schema_version"})  # each backend records its own migrations


class CopyRefused(Exception):
    """The copy cannot run (different schemas, a destination that is not empty)."""


class Side(Protocol):
    """One backend's view of its own tables, for copying."""

    def tables(self) -> list[str]:
        """The store's tables, in the order they were created."""
        ...

    def columns(self, table: str) -> list[str]: ...

    def count(self, table: str) -> int: ...

    def rows(self, table: str, columns: list[str]) -> Iterator[list[tuple[Any, ...]]]:
        """The rows of ``table``, ``BATCH`` at a time."""
        ...

    def insert(self, table: str, columns: list[str], rows: list[tuple[Any, ...]]) -> None: ...

    def after_copy(self, table: str) -> None:
        """Move what hands out new ids past the copied ones."""
        ...

    def transaction(self) -> contextlib.AbstractContextManager[None]: ...

    def close(self) -> None: ...


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class SqliteSide:
    def __init__(self, url: str) -> None:
        self.conn = connect(sqlite_path(url))

    def tables(self) -> list[str]:
        rows = self.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY rowid"
        ).fetchall()
        return [str(name) for (name,) in rows if name not in SKIPPED]

    def columns(self, table: str) -> list[str]:
        rows = self.conn.execute(f"PRAGMA table_info({_quoted(table)})").fetchall()
        return [str(row[1]) for row in rows]

    def count(self, table: str) -> int:
        (n,) = self.conn.execute(f"SELECT count(*) FROM {_quoted(table)}").fetchone()  # noqa: S608
        return int(n)

    def rows(self, table: str, columns: list[str]) -> Iterator[list[tuple[Any, ...]]]:
        names = ", ".join(_quoted(c) for c in columns)
        cur = self.conn.execute(f"SELECT {names} FROM {_quoted(table)} ORDER BY rowid")  # noqa: S608
        while batch := cur.fetchmany(BATCH):
            yield [tuple(row) for row in batch]

    def insert(self, table: str, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
        names = ", ".join(_quoted(c) for c in columns)
        marks = ", ".join("?" for _ in columns)
        self.conn.executemany(f"INSERT INTO {_quoted(table)} ({names}) VALUES ({marks})", rows)  # noqa: S608

    def after_copy(self, table: str) -> None:
        """SQLite's AUTOINCREMENT already moved past every id inserted explicitly."""

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()


class PostgresSide:
    def __init__(self, url: str) -> None:
        conninfo, _ = split_url(url)
        self.conn = psycopg.connect(conninfo, autocommit=True, application_name="remediator")

    def tables(self) -> list[str]:
        rows = self.conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind = 'r' AND n.nspname = current_schema() ORDER BY c.oid"
        ).fetchall()
        return [str(name) for (name,) in rows if name not in SKIPPED]

    def columns(self, table: str) -> list[str]:
        rows = self.conn.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = %s ORDER BY ordinal_position",
            (table,),
        ).fetchall()
        return [str(name) for (name,) in rows]

    def count(self, table: str) -> int:
        row = self.conn.execute(f"SELECT count(*) FROM {_quoted(table)}").fetchone()  # noqa: S608
        return int(row[0]) if row else 0

    def rows(self, table: str, columns: list[str]) -> Iterator[list[tuple[Any, ...]]]:
        names = ", ".join(_quoted(c) for c in columns)
        order = ", ".join(str(i + 1) for i in range(len(columns)))
        with self.conn.transaction(), self.conn.cursor(name=f"copy_{table}") as cur:
            cur.execute(f"SELECT {names} FROM {_quoted(table)} ORDER BY {order}")  # noqa: S608
            while batch := cur.fetchmany(BATCH):
                yield [tuple(row) for row in batch]

    def insert(self, table: str, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
        names = ", ".join(_quoted(c) for c in columns)
        marks = ", ".join("%s" for _ in columns)
        with self.conn.cursor() as cur:
            cur.executemany(f"INSERT INTO {_quoted(table)} ({names}) VALUES ({marks})", rows)  # noqa: S608

    def after_copy(self, table: str) -> None:
        identities = self.conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = "
            "current_schema() AND table_name = %s AND is_identity = 'YES'",
            (table,),
        ).fetchall()
        for (column,) in identities:
            self.conn.execute(
                f"SELECT setval(pg_get_serial_sequence(%s, %s), max({_quoted(column)})) "  # noqa: S608
                f"FROM {_quoted(table)} HAVING max({_quoted(column)}) IS NOT NULL",
                (table, column),
            )

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        with self.conn.transaction():
            yield

    def close(self) -> None:
        self.conn.close()


def open_side(url: str) -> Side:
    """The copying view of the (already migrated) store at ``url``."""
    scheme = url.split(":", 1)[0]
    try:
        if scheme == "sqlite":
            return SqliteSide(url)
        if scheme in ("postgresql", "postgres"):
            return PostgresSide(url)
    except (sqlite3.Error, psycopg.Error) as exc:
        raise StoreUnavailable(f"cannot open the store: {exc}") from None
    raise ValueError(f"no store backend for {scheme!r}")


@dataclass
class Copied:
    """What a copy moved: rows per table, in copy order."""

    rows: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.rows.values())


def plan(source: Side, dest: Side) -> list[tuple[str, list[str]]]:
    """The tables to copy and their columns; :class:`CopyRefused` unless the two stores have
    the same tables and columns and the destination is empty."""
    tables = source.tables()
    if sorted(tables) != sorted(dest.tables()):
        only_source = sorted(set(tables) - set(dest.tables()))
        only_dest = sorted(set(dest.tables()) - set(tables))
        raise CopyRefused(
            f"the stores have different tables (only in the source: {only_source or 'none'}; "
            f"only in the destination: {only_dest or 'none'})"
        )
    out = []
    for table in tables:
        columns = source.columns(table)
        if sorted(columns) != sorted(dest.columns(table)):
            raise CopyRefused(f"table {table}: the stores have different columns")
        if dest.count(table):
            raise CopyRefused(
                f"the destination is not empty (table {table} has rows): copy into a new store"
            )
        out.append((table, columns))
    return out


def copy_rows(source: Side, dest: Side) -> Copied:
    """Copy every row of ``source`` into the empty ``dest`` in one transaction there."""
    tables = plan(source, dest)
    copied = Copied()
    with dest.transaction():
        for table, columns in tables:
            n = 0
            for batch in source.rows(table, columns):
                dest.insert(table, columns, batch)
                n += len(batch)
            dest.after_copy(table)
            copied.rows[table] = n
    return copied


async def copy_store(source_url: str, dest_url: str) -> Copied:
    """Migrate both stores to this remediator's schema, then copy ``source_url`` into the
    empty ``dest_url``. :class:`CopyRefused` if they cannot be copied."""
    import asyncio

    from remediator.store import create_store

    if source_url.startswith("sqlite:") and not sqlite_path(source_url).exists():
        raise CopyRefused(f"no store at {sqlite_path(source_url)}")
    versions = []
    for url in (source_url, dest_url):
        store = create_store(url)
        await store.open()
        try:
            versions.append(await store.schema_version())
        finally:
            await store.close()
    if versions[0] != versions[1]:
        raise CopyRefused(
            f"schema versions differ: source {versions[0]}, destination {versions[1]}"
        )

    def run() -> Copied:
        source = open_side(source_url)
        try:
            dest = open_side(dest_url)
            try:
                return copy_rows(source, dest)
            except (sqlite3.Error, psycopg.Error) as exc:
                raise StoreUnavailable(f"the copy failed, nothing was written: {exc}") from None
            finally:
                dest.close()
        finally:
            source.close()

    return await asyncio.to_thread(run)
