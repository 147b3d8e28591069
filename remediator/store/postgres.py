"""The PostgreSQL store: several remediator replicas share one database.

``store.url: postgresql://user:password@host:5432/remediator`` (``postgres://`` too; any libpq
URI parameter works, plus ``pool_size``, the most connections one replica opens, default 10).

Same semantics as the SQLite store (remediator/store/sqlite.py), made safe for concurrent
writers in several processes:

- every write is one transaction (remediator/store/postgres_tx.py); a failed commit or a lost
  connection raises :class:`~remediator.errors.StoreUnavailable` with nothing changed;
- intake serialises per fingerprint with ``pg_advisory_xact_lock``, so two replicas receiving
  the same notification at once queue each alert state once (and the inbox is unique on
  (fingerprint, episode_id, status) all the same);
- claims (inbox, outbox) use ``FOR UPDATE SKIP LOCKED`` plus a lease: a replica never takes an
  item another one holds, and takes over one whose lease expired;
- breakers, remediation starts, leases and target data are read-modify-write under row locks;
- the audit chain stays one chain: appends queue on the row lock of ``audit_head``; retention
  (``prune``) holds that lock while it deletes and moves the checkpoint.

``raw`` takes PostgreSQL's paramstyle (``%s``) and runs in a read-only transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg

from remediator.alerts import Alert
from remediator.episodes import Episode
from remediator.errors import StoreUnavailable
from remediator.events import GENESIS_HASH, Event
from remediator.recording import Recording
from remediator.store.base import (
    AuditAnchor,
    EventQuery,
    InboxItem,
    IngestResult,
    checkpoint_event,
)
from remediator.store.ingest_logic import (
    INBOX_INSERT_COLUMNS,
    decide,
    episode_alertname,
    inbox_values,
    intake_event,
    recorded_repeat,
    repeat_params,
    repeat_sql,
)
from remediator.store.postgres_conn import Pool, brief
from remediator.store.postgres_driver import PgDriver
from remediator.store.postgres_outbox import PostgresOutboxOps
from remediator.store.postgres_schema import INTAKE_LOCKS, migrate
from remediator.store.postgres_tx import Tx
from remediator.store.roles import Roles
from remediator.store.rows import EVENT_COLUMNS, event_from_row, events_sql, item_from_row

DEFAULT_POOL_SIZE = 10
_INBOX_MARKS = ", ".join(["%s"] * 13)
_CLAIM = (
    "WITH picked AS (SELECT id FROM inbox WHERE state = 'pending' "
    "AND (lease_until IS NULL OR lease_until < %s) ORDER BY priority, id LIMIT %s "
    "FOR UPDATE SKIP LOCKED) "
    "UPDATE inbox AS i SET claimed_by = %s, lease_until = %s, attempts = i.attempts + 1 "
    "FROM picked WHERE i.id = picked.id RETURNING i.id, i.fingerprint, i.episode_id, "
    "i.status, i.alertname, i.labels, i.annotations, i.starts_at, i.ends_at, "
    "i.generator_url, i.received_at, i.priority, i.attempts"
)  # the columns of rows.INBOX_COLUMNS


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


class PostgresStore(Roles, PostgresOutboxOps, PgDriver):
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

    async def ingest(
        self,
        alerts: list[Alert],
        *,
        received_at: float,
        receiver: str,
        group_key: str,
        duplicate_interval: float = 0.0,
    ) -> IngestResult:
        return await self._write(
            lambda tx: _ingest(tx, alerts, received_at, receiver, group_key, duplicate_interval)
        )

    async def claim(self, *, worker: str, now: float, lease: float, limit: int) -> list[InboxItem]:
        async def job(tx: Tx) -> list[InboxItem]:
            rows = await tx.all(_CLAIM, (now, limit, worker, now + lease))
            # RETURNING gives the counted attempts; item_from_row counts the claim itself.
            rows = sorted(rows, key=lambda r: (r[11], r[0]))
            return [item_from_row((*r[:12], r[12] - 1), tx.recording) for r in rows]

        return await self._write(job)

    async def complete(self, item_id: int, *, events: list[Event], outcome: str) -> list[Event]:
        async def job(tx: Tx) -> list[Event]:
            await tx.execute(
                "UPDATE inbox SET state = 'done', outcome = %s, done_at = %s, "
                "lease_until = NULL WHERE id = %s",
                (outcome, events[-1].time if events else None, item_id),
            )
            return await tx.append(events)

        return await self._write(job)

    async def extend_leases(self, item_ids: list[int], *, worker: str, until: float) -> None:
        if not item_ids:
            return
        await self._write(
            lambda tx: tx.execute(
                "UPDATE inbox SET lease_until = %s WHERE id = ANY(%s) AND claimed_by = %s "
                "AND state = 'pending'",
                (until, list(item_ids), worker),
            )
        )

    async def append(self, events: list[Event]) -> list[Event]:
        return await self._write(lambda tx: tx.append(events))

    async def events(self, query: EventQuery) -> list[Event]:
        sql, params = events_sql(query, "%s")
        rows = await self._rows(sql, params)
        return [event_from_row(row, self.recording) for row in rows]

    async def pending_count(self) -> int:
        row = await self._row("SELECT count(*) FROM inbox WHERE state = 'pending'")
        return int(row[0]) if row else 0

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

    # -- the audit chain ---------------------------------------------------------------------

    async def events_after(self, after_id: int, limit: int) -> list[Event]:
        rows = await self._rows(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE id > %s ORDER BY id LIMIT %s",  # noqa: S608
            (after_id, limit),
        )
        return [event_from_row(row, self.recording) for row in rows]

    async def audit_anchor(self) -> AuditAnchor:
        row = await self._row(
            "SELECT h.last_id, h.last_hash, c.through_id, c.hash FROM (SELECT 1) AS one "
            "LEFT JOIN audit_head AS h ON h.id = 1 LEFT JOIN audit_checkpoint AS c ON c.id = 1"
        )
        assert row is not None
        return AuditAnchor(row[0], row[1], row[2] or 0, row[3] or GENESIS_HASH)

    async def prune(self, *, before: float, now: float, recording: Recording) -> int:
        """Retention in one transaction holding the audit head's row lock (no replica appends
        meanwhile): delete through the last event older than ``before`` (never the head), move
        the checkpoint there, append ``audit:checkpoint`` through the normal append path."""

        async def job(tx: Tx) -> int:
            head = await tx.one("SELECT last_id FROM audit_head WHERE id = 1 FOR UPDATE")
            if head is None:
                return 0  # nothing was ever appended
            row = await tx.one(
                "SELECT max(id) FROM events WHERE time < %s AND id < %s", (before, head[0])
            )
            if row is None or row[0] is None:
                return 0
            through = int(row[0])
            found = await tx.one("SELECT hash FROM events WHERE id = %s", (through,))
            assert found is not None
            last = str(found[0])
            deleted = await tx.execute("DELETE FROM events WHERE id <= %s", (through,))
            await tx.execute(
                "INSERT INTO audit_checkpoint (id, through_id, hash, pruned_at) "
                "VALUES (1, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET "
                "through_id = excluded.through_id, hash = excluded.hash, "
                "pruned_at = excluded.pruned_at",
                (through, last, now),
            )
            tx.recording = recording
            await tx.append(
                [checkpoint_event(deleted=deleted, through=through, hash_=last, now=now)]
            )
            return deleted

        return await self._write(job)


REPEAT_SQL = repeat_sql("%s")


async def _ingest(
    tx: Tx,
    alerts: list[Alert],
    now: float,
    receiver: str,
    group_key: str,
    duplicate_interval: float = 0.0,
) -> IngestResult:
    """SQLite's ``_ingest`` (the shared rules of remediator/store/ingest_logic.py), holding
    each fingerprint's advisory lock for the transaction, taken in one order (no deadlock)."""
    for fingerprint in sorted({alert.fingerprint for alert in alerts}):
        await tx.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (INTAKE_LOCKS, fingerprint)
        )
    new = duplicates = 0
    events: list[Event] = []
    for alert in alerts:
        rows = await tx.all(
            "SELECT id, fingerprint, starts_at, resolved_at FROM episodes "
            "WHERE fingerprint = %s ORDER BY id DESC LIMIT 2",
            (alert.fingerprint,),
        )
        found = [Episode(*row) for row in rows]
        intake = decide(
            found[0] if found else None, alert, now, found[1] if len(found) > 1 else None
        )
        if intake.episode_id is None:
            created = await tx.one(
                "INSERT INTO episodes (fingerprint, alertname, starts_at, opened_at, "
                "resolved_at) VALUES (%s, %s, %s, %s, %s) RETURNING id",
                (
                    alert.fingerprint,
                    episode_alertname(alert, tx.recording),
                    alert.starts_ts,
                    now,
                    intake.new_resolved_at,
                ),
            )
            assert created is not None
            episode_id = int(created[0])
        else:
            episode_id = intake.episode_id
            if intake.close_at is not None:
                await tx.execute(
                    "UPDATE episodes SET resolved_at = %s WHERE id = %s",
                    (intake.close_at, episode_id),
                )
            elif intake.move_start is not None:
                await tx.execute(
                    "UPDATE episodes SET starts_at = %s WHERE id = %s",
                    (intake.move_start, episode_id),
                )
        inserted = 0
        if not intake.late_repeat:
            inserted = await tx.execute(
                f"INSERT INTO inbox ({INBOX_INSERT_COLUMNS}) VALUES ({_INBOX_MARKS}) "  # noqa: S608
                "ON CONFLICT (fingerprint, episode_id, status) DO NOTHING",
                inbox_values(
                    alert,
                    episode_id=episode_id,
                    now=now,
                    receiver=receiver,
                    group_key=group_key,
                    recording=tx.recording,
                ),
            )
        repeats = None
        if inserted:
            new += 1
        else:
            duplicates += 1
            row = await tx.one(
                REPEAT_SQL,
                repeat_params(alert, episode_id=episode_id, now=now, interval=duplicate_interval),
            )
            recorded, repeats = recorded_repeat(row)
            if not recorded:
                continue
        events.append(
            intake_event(
                alert,
                inserted=bool(inserted),
                episode_id=episode_id,
                now=now,
                receiver=receiver,
                repeats=repeats,
            )
        )
    appended = await tx.append(events)
    return IngestResult(received=len(alerts), new=new, duplicates=duplicates, events=appended)
