"""Store operations written once for both backends, as sans-IO generators.

An operation is a generator function whose first parameter is the :class:`Dialect`: it
yields :class:`Query` (a statement and what to fetch) and :class:`Append` (events for the audit
chain, appended in the same transaction) and is sent back each one's result — a row (or
None), the rows, the number of rows touched, or the appended (linked) events — and returns its
value::

    def lift(d: Dialect, *, target: str) -> Op[TargetState | None]:
        row = yield one("SELECT ... WHERE target = ?" + d.for_update, target)
        ...
        yield Append(events)
        return before

Each backend drives it: SQLite synchronously inside a writer job or on a reader
(remediator/store/sqlite.py), PostgreSQL in a transaction
(remediator/store/postgres_driver.py). A store calls ``await self._write_op(lift, target=t)``
(or ``_read_op``): the driver makes the generator, with its dialect, for each attempt (a
PostgreSQL transaction rolled back by a deadlock runs again). :class:`Driven` is the base of the
role classes written once (remediator/store/quarantine.py, ...).

Statements are written once, with ``?`` placeholders: SQLite runs them as written and the
PostgreSQL driver spells them for psycopg (:meth:`Dialect.sql`, cached). A :class:`Dialect`
carries the rest of what differs between the two (row-locking clauses); both backends accept
``ON CONFLICT ... DO NOTHING / DO UPDATE`` and ``RETURNING`` (SQLite 3.35+), so those are
written one way.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Concatenate, Final, Literal, NamedTuple, ParamSpec, TypeAlias, TypeVar

from remediator.audit.events import Event


@dataclass(frozen=True)
class Dialect:
    name: str  # "sqlite" | "postgresql"
    placeholder: str  # "?" | "%s"
    for_update: str  # "" | " FOR UPDATE": lock the rows read (SQLite's single writer needs none)
    skip_locked: str  # "" | " FOR UPDATE SKIP LOCKED": claim rows no other writer holds

    def sql(self, text: str) -> str:
        """``text`` (written with ``?``) in this dialect's paramstyle."""
        return text if self.placeholder == "?" else _percent(text)


@lru_cache(maxsize=1024)
def _percent(text: str) -> str:
    """psycopg's paramstyle: ``%`` doubled (a literal), ``?`` → ``%s``."""
    return text.replace("%", "%%").replace("?", "%s")


SQLITE: Final = Dialect(name="sqlite", placeholder="?", for_update="", skip_locked="")
POSTGRES: Final = Dialect(
    name="postgresql",
    placeholder="%s",
    for_update=" FOR UPDATE",
    skip_locked=" FOR UPDATE SKIP LOCKED",
)

T = TypeVar("T")
P = ParamSpec("P")
Row: TypeAlias = tuple[Any, ...]
Fetch = Literal["one", "all", "count", "none", "many", "id"]


class Query(NamedTuple):
    """A statement; ``fetch`` says what the operation is sent back: ``one`` the first row (or
    None), ``all`` the rows, ``count`` the rows touched, ``none`` None, ``many`` None after
    running the statement once per parameter tuple in ``params`` (nothing if it is empty), ``id``
    the id of the row an INSERT made (SQLite's ``lastrowid``; PostgreSQL's driver adds
    ``RETURNING id``). A tuple: an operation makes several per call, cheaply."""

    sql: str
    params: tuple[Any, ...] = ()
    fetch: Fetch = "none"


@dataclass(frozen=True, slots=True)
class Append:
    """Append ``events`` to the audit chain in this transaction; sent back the linked events."""

    events: list[Event]


Op: TypeAlias = Generator[Query | Append, Any, T]
OpFn: TypeAlias = Callable[Concatenate[Dialect, P], Op[T]]


def one(sql: str, *params: Any) -> Query:
    return Query(sql, params, "one")


def all_(sql: str, *params: Any) -> Query:
    return Query(sql, params, "all")


def run(sql: str, *params: Any) -> Query:
    """Sent back the number of rows the statement touched."""
    return Query(sql, params, "count")


def insert(sql: str, *params: Any) -> Query:
    """An INSERT of one row (without RETURNING); sent back the new row's ``id``."""
    return Query(sql, params, "id")


def many(sql: str, rows: list[tuple[Any, ...]]) -> Query:
    return Query(sql, tuple(rows), "many")


class Driven:
    """What a backend's store provides to the operations: its dialect and two drivers."""

    dialect: Dialect

    async def _write_op(self, op: OpFn[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``op(dialect, ...)`` as one write transaction."""
        raise NotImplementedError

    async def _read_op(self, op: OpFn[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``op(dialect, ...)`` as a read (it must not append)."""
        raise NotImplementedError

    async def _peek_op(self, op: OpFn[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """A read by index: SQLite runs it on the calling thread (cheaper than a hand-off)."""
        return await self._read_op(op, *args, **kwargs)
