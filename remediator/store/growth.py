"""Growth: finished rows pruned in bounded batches, and the table sizes — both backends.

Retention (remediator/engine/retention.py) calls :meth:`GrowthOps.prune_rows` once per batch:
each batch is one short write transaction that reads at most ``limit`` of a table's oldest
finished rows by index (migration "retention of finished rows") and deletes them, so a prune
never holds the writer (SQLite's single writer, PostgreSQL's row locks) for long. What is kept
whatever its age:

- ``inbox``: items not yet done, and every item of an open episode (a repeat of its alert
  state is recognised by its item, remediator/store/inbox.py);
- ``remediations``: running ones, and every one of an open episode (a remediation runs once per
  playbook, fingerprint and episode); their step intents go with them;
- ``episodes``: open ones, and closed ones that still have inbox items or remediations;
- ``outbox``: pending notifications.

The guards' windows (cooldown, ``max_per_window``) are not this module's concern: the
configuration keeps ``retention.remediations`` at least as long as each of them. The audit
chain (``events``) has its own retention behind a checkpoint (remediator/store/chain.py).
"""

from __future__ import annotations

from typing import Final

from remediator.store.ops import Dialect, Driven, Op, all_, one, run

# The tables retention prunes, in the order a round prunes them (an episode goes once its
# inbox items and remediations have gone).
PRUNED: Final = ("remediations", "inbox", "episodes", "outbox")
# The tables whose rows are counted for ``remediator_store_rows``.
COUNTED: Final = ("events", "inbox", "outbox", "episodes", "remediations", "step_intents")

_OLDEST: Final[dict[str, str]] = {
    "remediations": (
        "SELECT r.id FROM remediations r WHERE r.finished_at IS NOT NULL AND r.finished_at < ? "
        "AND r.state <> 'running' AND NOT EXISTS (SELECT 1 FROM episodes e "
        "WHERE e.id = r.episode_id AND e.resolved_at IS NULL) ORDER BY r.finished_at LIMIT ?"
    ),
    "inbox": (
        "SELECT i.id FROM inbox i WHERE i.state = 'done' AND i.received_at < ? "
        "AND NOT EXISTS (SELECT 1 FROM episodes e WHERE e.id = i.episode_id "
        "AND e.resolved_at IS NULL) ORDER BY i.received_at LIMIT ?"
    ),
    "episodes": (
        "SELECT e.id FROM episodes e WHERE e.resolved_at IS NOT NULL AND e.resolved_at < ? "
        "AND NOT EXISTS (SELECT 1 FROM inbox i WHERE i.fingerprint = e.fingerprint "
        "AND i.episode_id = e.id) AND NOT EXISTS (SELECT 1 FROM remediations r "
        "WHERE r.episode_id = e.id) ORDER BY e.resolved_at LIMIT ?"
    ),
    "outbox": (
        "SELECT o.id FROM outbox o WHERE o.state <> 'pending' AND o.created_at < ? "
        "ORDER BY o.created_at LIMIT ?"
    ),
}


def prune(d: Dialect, *, table: str, before: float, limit: int) -> Op[int]:
    """Delete at most ``limit`` of ``table``'s finished rows older than ``before`` (see the
    module's docstring for what is kept); the number deleted."""
    rows = yield all_(_OLDEST[table], before, limit)
    ids = [int(row[0]) for row in rows]
    if not ids:
        return 0
    marks = ", ".join("?" * len(ids))
    if table == "remediations":
        yield run(f"DELETE FROM step_intents WHERE remediation_id IN ({marks})", *ids)  # noqa: S608
    deleted: int = yield run(f"DELETE FROM {table} WHERE id IN ({marks})", *ids)  # noqa: S608
    return deleted


def counts(d: Dialect) -> Op[dict[str, int]]:
    """Each counted table's rows, in one statement (one consistent view)."""
    row = yield one(
        "SELECT " + ", ".join(f"(SELECT count(*) FROM {t})" for t in COUNTED)  # noqa: S608
    )
    assert row is not None
    return {table: int(n) for table, n in zip(COUNTED, row, strict=True)}


def database_size(d: Dialect) -> Op[int]:
    """PostgreSQL: the bytes the database takes on disk."""
    row = yield one("SELECT pg_database_size(current_database())")
    return int(row[0]) if row else 0


class GrowthOps(Driven):
    async def prune_rows(self, table: str, *, before: float, limit: int) -> int:
        """One batch of retention on ``table`` (one of :data:`PRUNED`); the rows deleted."""
        if table not in _OLDEST:
            raise ValueError(f"no retention for table {table!r}")
        return await self._write_op(prune, table=table, before=before, limit=limit)

    async def table_rows(self) -> dict[str, int]:
        """The rows of each table of :data:`COUNTED`."""
        return await self._read_op(counts)

    async def size_bytes(self) -> int:
        """The bytes the store takes on disk (SQLite overrides it with its files' sizes)."""
        return await self._read_op(database_size)
