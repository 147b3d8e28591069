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

The hash chain alone is unkeyed: whoever can write to the database can recompute the hashes after
a change and move the head. A :class:`Trust` adds what such a writer cannot forge
(remediator/audit/signing.py): the public key that every ``audit:signed_checkpoint`` record's
signature must verify with (and each must match the chain's hash at its ``seq``), and checkpoints
exported outside the store (``SEQ:DIGEST``), each of which must still be in the chain with that
hash. With the key, the unkeyed retention checkpoint the walk starts from must be attested by
retention's ``audit:checkpoint`` record at or below a signed or exported checkpoint. In a store
that encrypts, a record stored in the clear after a sealed one is refused: it was written
without the key.

Retention deletes events older than ``audit.retention`` and moves the checkpoint (the last pruned
id and hash), recording an ``audit:checkpoint`` event, so verification still works afterwards.
Every backend does it in one transaction (``Store.prune``); :func:`prune` does it on a SQLite
file directly (``ChainFile.prune``), :func:`prune_url` on any store by its URL.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from remediator.audit.events import AUDIT_SIGNED_CHECKPOINT, Event, record_hash
from remediator.audit.recording import SEALED, Recording
from remediator.audit.signing import Checkpoint
from remediator.store import ChainFile
from remediator.store.base import CHECKPOINT, Store
from remediator.store.records import AuditAnchor

__all__ = [
    "CHECKPOINT",
    "Trust",
    "Verdict",
    "prune",
    "prune_url",
    "verify",
    "verify_store",
    "verify_url",
]
PAGE = 5000
# How far back a signed checkpoint may refer (its record is appended right after the head it
# signs, so in practice a few records).
REACH = 10_000
UNKEYED = (
    "the chain is unkeyed (no --public-key, no audit.signing_key_file): it shows accidental "
    "damage and edits that left the hashes as they were, but anyone with write access to the "
    "database can rewrite records and recompute every hash and the head undetected"
)


@dataclass(frozen=True, slots=True)
class Trust:
    """What the chain is checked against beyond its own hashes: the public key of the signed
    checkpoints, and checkpoints exported outside the store as (seq, hex digest prefix)."""

    public: Ed25519PublicKey | None = None
    exported: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    checked: int
    first_bad_id: int | None = None
    problem: str = ""
    head_id: int = 0
    notes: tuple[str, ...] = ()

    def line(self) -> str:
        if self.ok:
            first = f"audit chain intact: {self.checked} records verified (head {self.head_id})"
        else:
            first = f"audit chain BROKEN at record {self.first_bad_id}: {self.problem} ({self.checked} verified before it)"
        return "\n".join((first, *self.notes))


class _Walk:
    """The walk along the chain from the checkpoint: feed events in id order, then end it."""

    def __init__(
        self, anchor: AuditAnchor, trust: Trust | None = None, plaintext: int | None = None
    ) -> None:
        self.expected_id = anchor.checkpoint_id
        self.prev = anchor.checkpoint_hash
        self.checked = 0
        self.pruned = (anchor.checkpoint_id, anchor.checkpoint_hash)
        self.trust = trust or Trust()
        self.exported = dict(self.trust.exported)
        if anchor.checkpoint_hash.startswith(self.exported.get(anchor.checkpoint_id, "-")):
            del self.exported[anchor.checkpoint_id]  # the last pruned record: its hash is kept
        self.plaintext = plaintext
        self.recent: deque[str] = deque(maxlen=REACH)  # the hashes of the last records walked
        self.signed: list[Checkpoint] = []  # the verified signed checkpoints, in order
        self.pruned_exported: list[tuple[int, str]] = []  # given, but retention deleted them
        self.attested: int | None = None  # the record of retention's checkpoint, once walked

    def step(self, event: Event) -> Verdict | None:
        """None while the chain holds; the verdict at the first broken record."""
        self.expected_id += 1
        expected_id, checked = self.expected_id, self.checked
        if event.id != expected_id:
            return Verdict(
                False, checked, expected_id, f"record {expected_id} is missing (next is {event.id})"
            )
        if event.id == self.plaintext:
            return Verdict(False, checked, event.id,
                           "record is stored in the clear in a store that encrypts (written without the key)")  # fmt: skip
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
        if (
            event.type == CHECKPOINT
            and (event.details.get("through_id"), event.details.get("hash")) == self.pruned
        ):
            self.attested = event.id  # retention's own record of the checkpoint walked from
        if event.type == AUDIT_SIGNED_CHECKPOINT:
            problem = self._signed(event)
            if problem:
                return Verdict(False, checked, event.id, problem)
        digest = self.exported.pop(expected_id, None)
        if digest is not None and not event.hash.startswith(digest):
            return Verdict(False, checked, event.id,
                           f"hash does not match the exported checkpoint {expected_id}:{digest} (rewritten)")  # fmt: skip
        self.prev = event.hash
        self.recent.append(event.hash)
        self.checked += 1
        return None

    def _signed(self, event: Event) -> str:
        """What is wrong with a signed checkpoint record ("" if nothing): its signature (with
        a public key), and its hash against the record it covers."""
        try:
            signed = Checkpoint.from_details(event.details)
        except (KeyError, TypeError, ValueError):
            return "signed checkpoint record without a checkpoint (seq, hash, signed_at)"
        public = self.trust.public
        if public is not None and not signed.verified(public):
            return f"signed checkpoint of record {signed.seq}: the signature does not verify with the public key (forged, or another key)"
        distance = self.expected_id - 1 - signed.seq  # 0: the record just before this one
        if signed.seq <= self.pruned[0]:
            if signed.seq == self.pruned[0] and signed.hash != self.pruned[1]:
                return f"signed checkpoint of record {signed.seq} does not match the retention checkpoint"
        elif distance < 0 or distance >= len(self.recent):
            return f"signed checkpoint of record {signed.seq} is out of reach of its own record"
        elif self.recent[-1 - distance] != signed.hash:
            return f"signed checkpoint of record {signed.seq} does not match the chain (records up to it were changed)"
        if public is not None:
            self.signed.append(signed)
        return ""

    def end(self, anchor: AuditAnchor) -> Verdict:
        """The verdict once every record through the head was fed."""
        head_id, head_hash = anchor.head_id, anchor.head_hash
        if head_id is not None and (self.expected_id != head_id or self.prev != head_hash):
            return Verdict(False, self.checked, self.expected_id + 1,
                           f"the chain ends at record {self.expected_id} but its head is record {head_id} (truncated tail)")  # fmt: skip
        missing = sorted(self.exported.items())
        self.pruned_exported = [(seq, d) for seq, d in missing if seq <= self.pruned[0]]
        if missing and missing[-1][0] > self.pruned[0]:
            seq, digest = next((seq, d) for seq, d in missing if seq > self.pruned[0])
            return Verdict(False, self.checked, seq,
                           f"exported checkpoint {seq}:{digest} is past the end of the chain (head {self.expected_id}): records deleted or the head rewritten")  # fmt: skip
        if missing and len(missing) == len({seq for seq, _ in self.trust.exported}):
            seq, digest = missing[-1]
            return Verdict(False, self.checked, seq,
                           f"exported checkpoint {seq}:{digest} is below the retention checkpoint (record {self.pruned[0]}): give a newer one")  # fmt: skip
        if self.trust.public is not None and not self.signed and not self.trust.exported:
            return Verdict(False, self.checked, self.expected_id,
                           "no signed checkpoint in the chain up to its head: it cannot be told from a rewritten one")  # fmt: skip
        unattested = self._unattested()
        if unattested:
            return Verdict(False, self.checked, self.attested or self.pruned[0], unattested)
        return Verdict(True, self.checked, head_id=self.expected_id, notes=self._notes())

    def _unattested(self) -> str:
        """With a key: what is wrong with the retention checkpoint the walk began at ("" if
        nothing). Its row is unkeyed, so it counts only if retention's ``audit:checkpoint``
        record of it lies at or below a signed or exported checkpoint; otherwise records may
        have been deleted from the start behind retention's back."""
        through = self.pruned[0]
        if self.trust.public is None or through == 0:
            return ""
        if self.attested is None:
            return f"the retention checkpoint (record {through}) has no audit:checkpoint record: records before it were deleted behind retention's back"
        found = {seq for seq, _ in self.trust.exported} - set(self.exported)
        found -= {seq for seq, _ in self.pruned_exported}
        covered = max([cp.seq for cp in self.signed] + sorted(found) + [0])
        if self.attested > covered:
            return (f"the retention checkpoint (record {through}) is not covered by a signed checkpoint "
                    "yet: records before it may have been deleted behind retention's back (if "
                    "retention ran within audit.checkpoint_interval, verify again after the next checkpoint)")  # fmt: skip
        return ""

    def _notes(self) -> tuple[str, ...]:
        notes: list[str] = []
        if self.trust.exported:
            gone = {seq for seq, _ in self.pruned_exported}
            found = [f"{seq}:{d}" for seq, d in self.trust.exported if seq not in gone]
            notes.append(f"exported checkpoints found in the chain: {', '.join(found)}")
            if gone:
                notes.append(f"exported checkpoints below the retention checkpoint (record "
                             f"{self.pruned[0]}), not checked: {len(gone)}")  # fmt: skip
        if self.trust.public is None:
            return (*notes, UNKEYED)
        if self.signed:
            last = self.signed[-1]
            notes.append(
                f"signed checkpoints: {len(self.signed)} valid, the last covers record "
                f"{last.seq}; {self.expected_id - last.seq} records after it are covered by "
                "no signature yet"
            )
        return tuple(notes)


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


async def verify_store(
    store: Store,
    recording: Recording | None = None,
    trust: Trust | None = None,
    *,
    since: tuple[int, str] | None = None,
) -> Verdict:
    """Verify the chain in any store backend, page by page, through the head read first (events
    appended meanwhile are left for the next run). With ``recording``, the store is configured
    with it, so sealed records are opened with its key (and none may be stored in the clear
    after a sealed one); with ``trust``, against signed and exported checkpoints. With
    ``since`` (a verified record's id and hash, at or past the retention checkpoint), only the
    records after it are walked (remediator/engine/auditor.py)."""
    if recording is not None:
        store.configure(recording)
    anchor = await store.audit_anchor()
    if since is not None and since[0] >= anchor.checkpoint_id:
        anchor = anchor._replace(checkpoint_id=since[0], checkpoint_hash=since[1])
    plaintext = None
    if recording is not None and recording.cipher is not None:
        plaintext = await store.audit_plaintext(anchor.checkpoint_id)
    walk = _Walk(anchor, trust, plaintext)
    last = anchor.checkpoint_id
    while True:
        page = await store.events_after(last, PAGE)
        verdict = _page(walk, page, anchor, head=anchor.head_id)
        if verdict is not None:
            return verdict
        if len(page) < PAGE:
            return walk.end(anchor)
        last = int(page[-1].id or 0)


async def verify_url(url: str, recording: Recording, trust: Trust | None = None) -> Verdict:
    """Open the store at ``url`` (any backend), verify its chain, close it."""
    from remediator.store import create_store

    store = create_store(url)
    await store.open()
    try:
        return await verify_store(store, recording, trust)
    finally:
        await store.close()


def verify(path: Path, recording: Recording, trust: Trust | None = None) -> Verdict:
    """Verify the chain in the SQLite store at ``path`` (read-only), through its last record."""
    if not path.exists():
        return Verdict(False, 0, None, f"no store at {path}")
    chain = ChainFile(path)
    try:
        anchor = chain.anchor()
        plaintext = chain.plaintext(anchor.checkpoint_id) if recording.cipher is not None else None
        walk = _Walk(anchor, trust, plaintext)
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
