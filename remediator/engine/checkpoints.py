"""Signed checkpoints: the chain's head, signed with ``audit.signing_key_file``, recorded and
exported (remediator/audit/signing.py says what they prove).

Every few seconds the replica holding the ``checkpoint`` lease reads the head; once the chain
has grown by ``audit.checkpoint_every`` events since its last checkpoint, or has grown by a
record other than a checkpoint or a notification's delivery and ``audit.checkpoint_interval``
has passed, it signs the head and appends an
``audit:signed_checkpoint`` event (routed to the webhooks like any event). Every replica signs
one at start-up and one at shutdown. Each checkpoint is also exported outside the store: a JSON
log line (logger ``remediator.audit``: ``seq``, ``hash``, ``digest``, ``signature``...) and the
``remediator_audit_checkpoint_*`` metrics, so that a log store or Prometheus holds what
``remediator audit verify --checkpoint`` checks the chain against.
"""

from __future__ import annotations

import logging
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from remediator.audit.events import (
    AUDIT_SIGNED_CHECKPOINT,
    NOTIFICATION_DEAD,
    NOTIFICATION_SENT,
    Event,
)
from remediator.audit.signing import Checkpoint, KeyFileError, load_private, sign
from remediator.clock import Clock
from remediator.config.model import Config
from remediator.engine.periodic import Periodic
from remediator.engine.worker import worker_name
from remediator.errors import ConfigError
from remediator.metrics import Metrics
from remediator.store import base as roles

log = logging.getLogger("remediator.audit")
TICK = 5.0
LEASE = "checkpoint"
# Records that follow from a checkpoint or any other record: alone, they are no reason to sign.
ECHOES = frozenset({AUDIT_SIGNED_CHECKPOINT, NOTIFICATION_SENT, NOTIFICATION_DEAD})


class CheckpointStore(roles.Flags, roles.AuditChain, Protocol):
    """The store roles checkpoints need: the ``checkpoint`` lease and the chain."""


class Checkpointer:
    def __init__(
        self,
        *,
        store: CheckpointStore,
        key: Ed25519PrivateKey,
        every: int,
        interval: float,
        clock: Clock,
        metrics: Metrics,
        owner: str | None = None,
    ) -> None:
        self.store = store
        self.key = key
        self.every = every
        self.interval = interval
        self.clock = clock
        self.metrics = metrics
        self.owner = owner or worker_name()
        self.covered = 0  # the last record a checkpoint of ours covers (its own event)
        self.signed_at = 0.0
        self._periodic = Periodic("checkpoint", min(TICK, interval), self.run_once)

    async def run_once(self) -> Checkpoint | None:
        """One round: sign if this replica leads and the chain grew enough; the checkpoint."""
        now = self.clock.now()
        if not await self.store.lead(LEASE, owner=self.owner, now=now, ttl=3 * TICK):
            return None
        head = (await self.store.audit_anchor()).head_id or 0
        grown = head - self.covered
        if grown >= self.every:
            return await self.checkpoint("events")
        if grown > 0 and now - self.signed_at >= self.interval and await self._news():
            return await self.checkpoint("interval")
        return None

    async def _news(self) -> bool:
        """Whether a record after the last checkpoint is news: not a checkpoint, nor the
        delivery of a notification (a checkpoint's own webhook delivery would otherwise make
        an idle chain sign one every interval for ever)."""
        after = await self.store.events_after(self.covered, self.every)
        return any(e.type not in ECHOES for e in after)

    async def checkpoint(self, reason: str) -> Checkpoint | None:
        """Sign the head now, record and export it; None when the chain is empty."""
        anchor = await self.store.audit_anchor()
        if not anchor.head_id or anchor.head_hash is None:
            return None
        now = self.clock.now()
        signed = sign(self.key, seq=anchor.head_id, hash_=anchor.head_hash, now=now)
        details = {**signed.details(), "reason": reason}
        [recorded] = await self.store.append(
            [
                Event(
                    type=AUDIT_SIGNED_CHECKPOINT,
                    time=now,
                    actor="checkpoint",
                    message=f"signed checkpoint of record {signed.seq} ({signed.spec()})",
                    details=details,
                )
            ]
        )
        self.covered, self.signed_at = int(recorded.id or 0), now
        log.info("audit checkpoint signed", extra={**details, "spec": signed.spec()})
        self.metrics.audit_checkpoint_sequence.set(signed.seq)
        self.metrics.audit_checkpoint_timestamp.set(now)
        self.metrics.audit_checkpoint_info.info({"seq": str(signed.seq), "digest": signed.digest})
        return signed

    async def start(self) -> None:
        await self.checkpoint("startup")
        await self._periodic.start()

    async def stop(self) -> None:
        """Stop the rounds and sign the head one last time, if the chain grew since."""
        await self._periodic.stop()
        head = (await self.store.audit_anchor()).head_id or 0
        if head > self.covered:
            await self.checkpoint("shutdown")


def checkpointer(
    config: Config, *, store: CheckpointStore, clock: Clock, metrics: Metrics
) -> Checkpointer | None:
    """The checkpointer ``audit.signing_key_file`` asks for (None: unset); a key file that
    cannot be used is a :class:`ConfigError`."""
    audit = config.audit
    if not audit.signing_key_file:
        return None
    try:
        key = load_private(audit.signing_key_file)
    except KeyFileError as exc:
        raise ConfigError([str(exc)]) from None
    return Checkpointer(
        store=store,
        key=key,
        every=audit.checkpoint_every,
        interval=audit.checkpoint_interval,
        clock=clock,
        metrics=metrics,
    )
