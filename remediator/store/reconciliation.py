"""What reconciliation with Alertmanager reads (remediator/engine/reconcile.py) — both backends."""

from __future__ import annotations

from dataclasses import replace

from remediator.audit.recording import Recording
from remediator.store.ops import Dialect, Driven, Op, one
from remediator.store.records import INBOX_COLUMNS, InboxItem, item_from_row


def latest(d: Dialect, *, fingerprint: str, recording: Recording) -> Op[InboxItem | None]:
    row = yield one(
        (
            f"SELECT {INBOX_COLUMNS} FROM inbox "  # noqa: S608
            "WHERE fingerprint = ? ORDER BY id DESC LIMIT 1"
        ),
        fingerprint,
    )
    if row is None:
        return None
    # item_from_row counts the claim about to happen; this is a plain read.
    return replace(item_from_row(row, recording), attempts=row[12])


class ReconciliationOps(Driven):
    recording: Recording

    async def latest_alert(self, fingerprint: str) -> InboxItem | None:
        """The newest inbox row of a fingerprint (any state), or None if it was never stored."""
        return await self._read_op(latest, fingerprint=fingerprint, recording=self.recording)
