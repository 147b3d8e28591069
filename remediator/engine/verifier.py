"""The audit chain: verification and retention.

Every event carries ``prev_hash`` and ``hash = SHA-256(canonical record incl. prev_hash)``; the
store keeps the chain's head (last id and hash) in the same transaction as each append. A walk
from the start (or from the retention checkpoint) finds:

- a modified record: its hash no longer matches its content;
- a deleted record: the ids jump, or the next record's ``prev_hash`` does not match;
- reordered records: ``prev_hash`` links break;
- a truncated tail: the last record is not the recorded head.

:func:`verify_store` walks any backend through its audit-chain role (``audit_anchor``,
``events_after``); :func:`verify` reads a SQLite store's file directly, read-only, through the
store's :class:`~remediator.store.ChainFile`. This module only checks hashes: every read and
write is the store's (remediator/store/chain.py).

Retention deletes events older than ``audit.retention`` and moves the checkpoint (the last pruned
id and hash), recording an ``audit:checkpoint`` event, so verification still works afterwards.
Every backend does it in one transaction (``Store.prune``); :func:`prune` does it on a SQLite
file directly (``ChainFile.prune``), :func:`prune_url` on any store by its URL.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from remediator.audit.events import Event, record_hash
from remediator.audit.recording import SEALED, Recording
from remediator.store import ChainFile
from remediator.store.base import CHECKPOINT, Store
from remediator.store.records import AuditAnchor

__all__ = [
    "CHECKPOINT",
    "Verdict",
    "prune",
    "prune_url",
    "verify",
    "verify_store",
    "verify_url",
]
PAGE = 5000


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    checked: int
    first_bad_id: int | None = None
    problem: str = ""
    head_id: int = 0

    def line(self) -> str:
        if self.ok:
            return f"audit chain intact: {self.checked} records verified (head {self.head_id})"
        return f"audit chain BROKEN at record {self.first_bad_id}: {self.problem} ({self.checked} verified before it)"


class _Walk:
    """The walk along the chain from the checkpoint: feed events in id order, then end it."""

    def __init__(self, anchor: AuditAnchor) -> None:
        self.expected_id = anchor.checkpoint_id
        self.prev = anchor.checkpoint_hash
        self.checked = 0

    def step(self, event: Event) -> Verdict | None:
        """None while the chain holds; the verdict at the first broken record."""
        self.expected_id += 1
        expected_id, checked = self.expected_id, self.checked
        if event.id != expected_id:
            return Verdict(
                False, checked, expected_id, f"record {expected_id} is missing (next is {event.id})"
            )
        if event.message.startswith(SEALED) or event.details.get("sealed"):
            return Verdict(
                False,
                checked,
                event.id,
                "record is encrypted and the key is not available (audit.encryption_key_env)",
            )
        if event.prev_hash != self.prev:
            return Verdict(
                False,
                checked,
                event.id,
                "prev_hash does not match the previous record (deleted or reordered)",
            )
        if record_hash(event) != event.hash:
            return Verdict(
                False, checked, event.id, "hash does not match the record's content (modified)"
            )
        self.prev = event.hash
        self.checked += 1
        return None

    def end(self, anchor: AuditAnchor) -> Verdict:
        """The verdict once every record through the head was fed."""
        head_id, head_hash = anchor.head_id, anchor.head_hash
        if head_id is not None and (self.expected_id != head_id or self.prev != head_hash):
            return Verdict(False, self.checked, self.expected_id + 1,
                           f"the chain ends at record {self.expected_id} but its head is record {head_id} (truncated tail)")  # fmt: skip
        return Verdict(True, self.checked, head_id=self.expected_id)


def _page(
    walk: _Walk, page: list[Event], anchor: AuditAnchor, *, head: int | None
) -> Verdict | None:
    """Feed one page of the chain to ``walk``; the verdict if it is decided (broken, or the
    page went past ``head``: the records appended after the walk began are left out)."""
    for event in page:
        if head is not None and event.id is not None and event.id > head:
            return walk.end(anchor)
        broken = walk.step(event)
        if broken is not None:
            return broken
    return None


async def verify_store(store: Store, recording: Recording | None = None) -> Verdict:
    """Verify the chain in any store backend, page by page, through the head read first (events
    appended meanwhile are left for the next run). With ``recording``, the store is configured
    with it, so sealed records are opened with its key."""
    if recording is not None:
        store.configure(recording)
    anchor = await store.audit_anchor()
    walk = _Walk(anchor)
    last = anchor.checkpoint_id
    while True:
        page = await store.events_after(last, PAGE)
        verdict = _page(walk, page, anchor, head=anchor.head_id)
        if verdict is not None:
            return verdict
        if len(page) < PAGE:
            return walk.end(anchor)
        last = int(page[-1].id or 0)


async def verify_url(url: str, recording: Recording) -> Verdict:
    """Open the store at ``url`` (any backend), verify its chain, close it."""
    from remediator.store import create_store

    store = create_store(url)
    await store.open()
    try:
        return await verify_store(store, recording)
    finally:
        await store.close()


def verify(path: Path, recording: Recording) -> Verdict:
    """Verify the chain in the SQLite store at ``path`` (read-only), through its last record."""
    if not path.exists():
        return Verdict(False, 0, None, f"no store at {path}")
    chain = ChainFile(path)
    try:
        anchor = chain.anchor()
        walk = _Walk(anchor)
        last = anchor.checkpoint_id
        while True:
            page = chain.records(last, PAGE, recording)
            verdict = _page(walk, page, anchor, head=None)
            if verdict is not None:
                return verdict
            if len(page) < PAGE:
                return walk.end(anchor)
            last = int(page[-1].id or 0)
    finally:
        chain.close()


def prune(path: Path, recording: Recording, *, before: float, now: float) -> int:
    """Delete events older than ``before`` in the SQLite store at ``path``, keeping the chain
    verifiable; the number deleted. A running store does the same through
    :meth:`Store.prune <remediator.store.base.AuditChain.prune>`."""
    chain = ChainFile(path, write=True)
    try:
        return chain.prune(before=before, now=now, recording=recording)
    finally:
        chain.close()


async def prune_url(url: str, recording: Recording, *, before: float, now: float) -> int:
    """Open the store at ``url`` (any backend), prune it (:meth:`Store.prune`), close it."""
    from remediator.store import create_store

    store = create_store(url)
    await store.open()
    try:
        store.configure(recording)
        return await store.prune(before=before, now=now, recording=recording)
    finally:
        await store.close()
