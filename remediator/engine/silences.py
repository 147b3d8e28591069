"""Silences: Alertmanager is told to stay quiet about what remediator is already handling.

A playbook with ``silence: {enabled: true}`` wants a silence on the alert it handles while its
remediation runs or awaits approval (and its episode is open), and, once a step quarantined the
target, while the target stays quarantined. Each round of the :class:`Silencer` compares what
is wanted (:func:`wanted`, a pure function of the store's snapshot) with the silences it made
(the ``silences`` table), creates the missing ones and expires the ones whose reason ended, then
expires every other live silence in Alertmanager that says ``createdBy: remediator`` and
carries remediator's marker in its comment: stale ones that a crash or a restart left behind.

Rounds run in the background, never inline: on the remediation's events (a recorded event
wakes the loop; rounds at most every half second) and every ``silences.interval``. An
Alertmanager that cannot be reached fails the round, which is tried again after a backoff (1 s
doubling, at most the interval), so it never stalls a remediation or the webhook. With several
replicas, a round runs only on the one holding the ``silences`` lease.

The matchers are literal equalities with the alert's label values (never regexes); a silence is
not made when the values are too large to match literally, or when they would match any
alert. The comment names the reason, the incident and a link, and carries the
marker ``[remediator:<key>]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote

import httpx2

from remediator.alerts import Episode
from remediator.audit import events as ev
from remediator.audit.events import Event
from remediator.clock import Clock
from remediator.config.model import Config
from remediator.config.playbooks import PlaybookSpec
from remediator.config.silences import SilencesConfig, SilenceSpec
from remediator.engine.worker import worker_name
from remediator.errors import StoreUnavailable
from remediator.metrics import Metrics
from remediator.store import Store
from remediator.store.approvals import AWAITING_APPROVAL
from remediator.store.records import RUNNING, Remediation, TargetState
from remediator.store.silences import StoredSilence
from remediator.tech.alertmanager import CREATED_BY, AlertmanagerError, SilenceClient

log = logging.getLogger("remediator.silences")

LEASE = "silences"
MAX_MATCHERS = 64
MAX_NAME = 128
MAX_VALUE = 4096  # characters of one label value; a larger one is not silenced
RETRY_FIRST = 1.0
MIN_GAP = 0.5  # seconds between two rounds, however many events wake the loop
HANDLED = (RUNNING, AWAITING_APPROVAL)
MARKER = re.compile(r"\[remediator:((?:remediation|quarantine):[A-Za-z0-9_.:-]{1,200})\]")
_NOT_ID = re.compile(r"[^A-Za-z0-9]")
# Events after which a round is due at once (the others wait for the interval).
WAKING = frozenset(
    {
        ev.RECOVERY_STARTED,
        ev.APPROVAL_REQUESTED,
        ev.APPROVAL_APPROVED,
        ev.APPROVAL_DENIED,
        ev.APPROVAL_EXPIRED,
        ev.APPROVAL_CANCELLED,
        ev.RECOVERY_SUCCEEDED,
        ev.RECOVERY_FAILED,
        ev.RECOVERY_SKIPPED,
        ev.RECOVERY_DRY_RUN,
        ev.RECOVERY_QUARANTINED,
        ev.RECOVERY_QUARANTINE_LIFTED,
        ev.ALERT_RESOLVED,
    }
)


@dataclass(frozen=True, slots=True)
class Wanted:
    """One silence that should exist, and why."""

    key: str
    reason: str  # remediation or quarantine
    labels: dict[str, str]
    playbook: str
    target: str
    fingerprint: str
    episode_id: int
    cap: float


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What :func:`wanted` reads: the store's state at the start of a round."""

    remediations: Sequence[Remediation]  # running or awaiting approval
    episodes: Sequence[Episode]  # open
    quarantined: Sequence[TargetState]
    history: Mapping[str, Sequence[Remediation]]  # per quarantined target, oldest first
    labels: Mapping[str, Mapping[str, str]]  # fingerprint -> the alert's labels


def silence_labels(spec: SilenceSpec, labels: Mapping[str, str]) -> dict[str, str] | None:
    """The labels a silence matches (a missing one: ``""``, its absence), or None when they
    cannot be matched literally within the limits or would match any alert."""
    names = spec.matchers or sorted(labels)
    chosen = {name: labels.get(name, "") for name in names}
    if not chosen or len(chosen) > MAX_MATCHERS or not any(chosen.values()):
        return None
    if any(len(n) > MAX_NAME or len(v) > MAX_VALUE for n, v in chosen.items()):
        return None
    return chosen


def _spec(books: Mapping[str, PlaybookSpec], name: str) -> SilenceSpec | None:
    book = books.get(name)
    if book is None or book.silence is None or not book.silence.enabled:
        return None
    return book.silence


def wanted(
    snapshot: Snapshot, playbooks: Sequence[PlaybookSpec], *, dry_run: bool = False
) -> dict[str, Wanted]:
    """Every silence that should exist now, by key (none in a dry run: it touches nothing)."""
    if dry_run:
        return {}
    books = {book.name: book for book in playbooks if not book.dry_run}
    open_ids = {episode.id for episode in snapshot.episodes}
    out: dict[str, Wanted] = {}

    def add(key: str, reason: str, r: Remediation) -> None:
        spec = _spec(books, r.playbook)
        labels = snapshot.labels.get(r.fingerprint)
        chosen = None if spec is None or labels is None else silence_labels(spec, labels)
        if spec is None or chosen is None:
            return
        out[key] = Wanted(
            key=key, reason=reason, labels=chosen, playbook=r.playbook, target=r.target,
            fingerprint=r.fingerprint, episode_id=r.episode_id, cap=spec.duration_cap,
        )  # fmt: skip

    for r in snapshot.remediations:
        if r.state in HANDLED and r.episode_id in open_ids:
            add(f"remediation:{r.id}", "remediation", r)
    for state in snapshot.quarantined:
        since = state.quarantined_at or 0.0
        before = [
            r
            for r in snapshot.history.get(state.target, ())
            if r.started_at <= since and _spec(books, r.playbook) is not None
        ]
        if before:
            add(f"quarantine:{state.target}:{int(since)}", "quarantine", before[-1])
    return out


def comment(want: Wanted, link: str | None) -> str:
    """The silence's comment: the reason, the incident, a link, and the key's marker."""
    fingerprint = _NOT_ID.sub("", want.fingerprint)[:64]
    what = (
        f"remediation by playbook {want.playbook} on {want.target}"
        if want.reason == "remediation"
        else f"target {want.target} is quarantined"
    )
    text = f"remediator is handling this: {what} (incident {fingerprint}:{want.episode_id})"
    if link:
        text += f" {link.rstrip('/')}/api/v1/recovery/events?fingerprint={quote(fingerprint)}"
    return f"{text} [remediator:{want.key}]"


class Silencer:
    """The background loop that keeps Alertmanager's silences in step with the store."""

    def __init__(
        self,
        *,
        url: str,
        settings: SilencesConfig,
        store: Store,
        clock: Clock,
        metrics: Metrics,
        config: Callable[[], Config],
        client: httpx2.AsyncClient | None = None,
        owner: str | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.metrics = metrics
        self.config = config
        self.owner = owner or worker_name()
        self._owns_client = client is None
        self._http = client or httpx2.AsyncClient(follow_redirects=False, trust_env=False)
        self.api = SilenceClient(url, self._http)
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.failures = 0  # consecutive failed rounds

    def wake(self) -> None:
        self._wake.set()

    def on_event(self, event: Event) -> None:
        """The event bus's handler: a round is due after events that change what is wanted."""
        if event.type in WAKING:
            self._wake.set()

    async def start(self) -> None:
        self._stop.clear()
        self._task = asyncio.create_task(self._loop(), name="remediator-silences")

    async def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._owns_client:
            await self._http.aclose()

    def delay(self) -> float:
        """The wait before the next round: the interval, or a backoff after failures."""
        if not self.failures:
            return self.settings.interval
        return min(RETRY_FIRST * 2.0 ** (self.failures - 1), float(self.settings.interval))

    async def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                ok = await self.run_once()
            except Exception:
                log.exception("silences round failed")
                ok = False
            self.failures = 0 if ok else self.failures + 1
            with contextlib.suppress(TimeoutError):  # rounds at most every MIN_GAP (storms)
                await asyncio.wait_for(self._stop.wait(), timeout=MIN_GAP)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.delay())

    # -- one round ---------------------------------------------------------------------------

    async def run_once(self) -> bool:
        """One round; False when Alertmanager or the store failed (tried again later)."""
        try:
            now = self.clock.now()
            ttl = 3 * self.settings.interval
            if not await self.store.lead(LEASE, owner=self.owner, now=now, ttl=ttl):
                return True
            config = self.config()
            want = wanted(await self._snapshot(), config.playbooks, dry_run=config.safety.dry_run)
            stored = {s.key: s for s in await self.store.silences()}
            ok = True
            for key, silence in stored.items():
                if key not in want:
                    ok = await self._expire(silence.key, silence.silence_id, "ended") and ok
            for key, item in want.items():
                if key not in stored:
                    ok = await self._create(item) and ok
            kept = await self.store.silences()
            self.metrics.silences_active.set(len(kept))
            return await self._sweep({s.silence_id for s in kept}) and ok
        except StoreUnavailable as exc:
            log.warning("silences round failed", extra={"error": exc.message})
            return False

    async def _snapshot(self) -> Snapshot:
        remediations = [r for state in HANDLED for r in await self.store.remediations(state=state)]
        quarantined = await self.store.quarantined_targets()
        history = {q.target: await self.store.remediations(target=q.target) for q in quarantined}
        fingerprints = {r.fingerprint for r in remediations}
        fingerprints |= {r.fingerprint for rs in history.values() for r in rs}
        labels: dict[str, Mapping[str, str]] = {}
        for fingerprint in sorted(fingerprints):
            item = await self.store.latest_alert(fingerprint)
            if item is not None:
                labels[fingerprint] = item.labels
        return Snapshot(
            remediations=remediations,
            episodes=await self.store.open_episodes(),
            quarantined=quarantined,
            history=history,
            labels=labels,
        )

    async def _create(self, item: Wanted) -> bool:
        now = self.clock.now()
        ends = now + item.cap
        try:
            silence_id = await self.api.create(
                labels=item.labels,
                starts_at=now,
                ends_at=ends,
                comment=comment(item, self.settings.link),
            )
        except AlertmanagerError as exc:
            self.metrics.silence_requests.labels("create", "failure").inc()
            log.warning("silence not created", extra={"key": item.key, "error": str(exc)})
            return False
        self.metrics.silence_requests.labels("create", "success").inc()
        event = Event(
            type=ev.SILENCE_CREATED,
            time=now,
            target=item.target,
            playbook=item.playbook,
            fingerprint=item.fingerprint,
            outcome="created",
            message=f"silenced in Alertmanager while {item.reason}",
            details={
                "silence": silence_id,
                "key": item.key,
                "reason": item.reason,
                "episode": item.episode_id,
                "matchers": sorted(item.labels),
                "ends_at": ends,
            },
        )
        row = StoredSilence(item.key, silence_id, now, ends)
        if not await self.store.add_silence(row, events=[event]):
            await self._expire(item.key, silence_id, "stale", stored=False)
        return True

    async def _expire(self, key: str, silence_id: str, reason: str, *, stored: bool = True) -> bool:
        try:
            await self.api.expire(silence_id)
        except AlertmanagerError as exc:
            self.metrics.silence_requests.labels("expire", "failure").inc()
            log.warning("silence not expired", extra={"key": key, "error": str(exc)})
            return False
        self.metrics.silence_requests.labels("expire", "success").inc()
        event = Event(
            type=ev.SILENCE_EXPIRED,
            time=self.clock.now(),
            outcome="expired",
            message=f"silence expired ({reason})",
            details={"silence": silence_id, "key": key, "reason": reason},
        )
        if stored:
            await self.store.drop_silence(key, silence_id, events=[event])
        else:
            await self.store.append([event])
        return True

    async def _sweep(self, kept: set[str]) -> bool:
        """Expire every live silence remediator made (``createdBy`` and the comment's marker)
        that no stored row keeps."""
        try:
            listed = await self.api.listed()
        except AlertmanagerError as exc:
            self.metrics.silence_requests.labels("list", "failure").inc()
            log.warning("silences not listed", extra={"error": str(exc)})
            return False
        self.metrics.silence_requests.labels("list", "success").inc()
        ok = True
        for silence in listed:
            if silence.created_by != CREATED_BY or silence.state == "expired":
                continue
            if silence.id in kept:
                continue
            found = MARKER.search(silence.comment)
            if found is None:
                continue  # not one of remediator's: its comment has no marker
            ok = await self._expire(found.group(1), silence.id, "stale", stored=False) and ok
        return ok
