"""The PostgreSQL store: several remediator replicas share one database.

``store.url: postgresql://user:password@host:5432/remediator`` (``postgres://`` too; any libpq
URI parameter works, plus ``pool_size``, the most connections one replica opens, default 10).

Same semantics as the SQLite store (remediator/store/sqlite.py), made safe for concurrent
writers in several processes:

- every write is one transaction (remediator/store/postgres_tx.py), or one savepoint of a
  transaction shared with the writes queued with it (remediator/store/postgres_batch.py: all
  but the urgent lane's); a failed commit or a lost connection raises
  :class:`~remediator.errors.StoreUnavailable` with nothing changed;
- intake serialises per fingerprint with ``pg_advisory_xact_lock``, so two replicas receiving
  the same notification at once queue each alert state once (and the inbox is unique on
  (fingerprint, episode_id, status) all the same);
- claims (inbox, outbox) use ``FOR UPDATE SKIP LOCKED`` plus a lease: a replica never takes an
  item another one holds, and takes over one whose lease expired;
- breakers, remediation starts, leases and target data are read-modify-write under row locks;
- the audit chain stays one chain: appends queue on the row lock of ``audit_head`` (a batch
  takes it once, at its end); retention
  (``prune``) holds that lock while it deletes and moves the checkpoint.

``raw`` takes PostgreSQL's paramstyle (``%s``) and runs in a read-only transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg

from remediator.audit.events import Event
from remediator.audit.recording import Recording
from remediator.errors import StoreUnavailable
from remediator.store import chain
from remediator.store.ops import POSTGRES
from remediator.store.postgres_batch import stop
from remediator.store.postgres_conn import Pool, brief
from remediator.store.postgres_driver import PgDriver, drive
from remediator.store.postgres_schema import INTAKE_LOCKS, migrate
from remediator.store.postgres_tx import Tx
from remediator.store.roles import Roles

DEFAULT_POOL_SIZE = 10
# The intake lock of one fingerprint, for the transaction (remediator/store/inbox.py).
INTAKE_LOCK = f"SELECT pg_advisory_xact_lock({INTAKE_LOCKS}, hashtext(?))"  # spelled by the driver


def split_url(url: str) -> tuple[str, int]:
    """The libpq URI without remediator's own parameter, and the pool size."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError(f"not a postgresql URL: {url!r}")
    query = parse_qsl(parts.query, keep_blank_values=True)
    sizes = [value for key, value in query if key == "pool_size"]
    if not sizes:
        return url, DEFAULT_POOL_SIZE
    size = int(sizes[-1])
    if size < 1:
        raise ValueError("pool_size must be at least 1")
    kept = urlencode([(k, v) for k, v in query if k != "pool_size"], quote_via=quote)
    return urlunsplit(parts._replace(query=kept)), size


class PostgresStore(Roles, PgDriver):
    intake_lock = INTAKE_LOCK

    def __init__(self, url: str) -> None:
        super().__init__()
        self.conninfo, self.pool_size = split_url(url)

    def configure(self, recording: Recording) -> None:
        """Use this recording policy for every event appended from now on (and for reads)."""
        self.recording = recording

    @property
    def shared(self) -> bool:
        """Several remediator processes use one PostgreSQL database."""
        return True

    def subscribe(self, callback: Callable[[list[Event]], None]) -> None:
        """Call ``callback`` (on the event loop) with the events of each commit, in commit
        order, right after the commit."""
        self._publisher.callback = callback

    async def open(self) -> None:
        pool = Pool(self.conninfo, size=self.pool_size)
        try:
            async with pool.connection() as conn:
                await migrate(conn)
        except psycopg.Error as exc:
            await pool.close()
            raise StoreUnavailable(f"cannot open the store: {brief(exc)}") from None
        except BaseException:
            await pool.close()
            raise
        self._pool = pool

    async def close(self) -> None:
        await stop(self._batcher)
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    # -- operations --------------------------------------------------------------------------

    async def ping(self) -> None:
        async def job(tx: Tx) -> None:
            row = await tx.one("SHOW transaction_read_only")
            if row is None or row[0] != "off":
                raise StoreUnavailable("the store is read-only (a standby?)")

        await self._write(job)

    async def schema_version(self) -> int:
        row = await self._row("SELECT max(version) FROM schema_version")
        return int(row[0] or 0) if row else 0

    async def raw(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """A query in PostgreSQL's paramstyle (``%s``), inside a read-only transaction."""
        try:
            async with self.pool.connection() as conn, conn.transaction():
                await conn.execute("SET TRANSACTION READ ONLY")
                cur = await conn.execute(sql, params)
                return await cur.fetchall() if cur.description else []
        except psycopg.Error as exc:
            raise StoreUnavailable(f"the store could not be read: {brief(exc)}") from None

    async def prune(self, *, before: float, now: float, recording: Recording) -> int:
        """Retention in one transaction holding the audit head's row lock (no replica appends
        meanwhile): delete through the last event older than ``before`` (never the head), move
        the checkpoint there, append ``audit:checkpoint`` through the normal append path."""

        async def job(tx: Tx) -> int:
            tx.recording = recording
            return await drive(chain.prune(POSTGRES, before=before, now=now), tx)

        return await self._write(job)
