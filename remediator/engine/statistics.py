"""Recovery statistics over a time window, computed from the recorded events.

- MTTR: ``service:recovered`` durations (the alert's ``startsAt`` to its resolution) of alerts a
  playbook handles: mean, p50, p90, by playbook, target and category.
- Success rate: ``recovery:succeeded`` / (succeeded + ``recovery:failed``), overall and by
  playbook: remediations, each once (as ``remediator_remediations_total``, which the Grafana
  panel and the recording rules read); by action from ``recovery:action`` outcomes, every step
  attempt (as ``remediator_action_attempts_total``). Dry runs and interrupted runs excluded.
- Availability: per registered target, the share of the window its health checks were up
  (``service:degraded`` → ``service:recovered`` intervals of the health monitor).
- Breaker trips (``circuit:open``), escalations by reason, actions by type.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Any

from remediator.audit.events import Event
from remediator.store import EventQuery
from remediator.store.base import AuditChain

LIMIT = 1_000_000


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..1)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def summary(values: list[float]) -> dict[str, float | int | None]:
    return {
        "count": len(values),
        "mean": sum(values) / len(values) if values else None,
        "p50": percentile(values, 0.5),
        "p90": percentile(values, 0.9),
    }


def _grouped(events: list[Event], key: str) -> dict[str, dict[str, float | int | None]]:
    groups: dict[str, list[float]] = defaultdict(list)
    for e in events:
        name = getattr(e, key)
        if name and e.duration is not None:
            groups[name].append(e.duration)
    return {name: summary(values) for name, values in sorted(groups.items())}


def _ratio(good: int, bad: int) -> float | None:
    return good / (good + bad) if good + bad else None


def availability(
    health: list[Event], targets: list[str], *, start: float, end: float
) -> dict[str, float]:
    """Share of [start, end] each target was up, from its health transitions (oldest first)."""
    span = max(end - start, 1e-9)
    out: dict[str, float] = {}
    for target in targets:
        changes = [e for e in health if e.target == target]
        down_since: float | None = None
        if changes and changes[0].type == "service:recovered":
            down_since = start  # it was down when the window began
        down = 0.0
        for e in changes:
            if e.type == "service:degraded" and down_since is None:
                down_since = e.time
            elif e.type == "service:recovered" and down_since is not None:
                down += e.time - down_since
                down_since = None
        if down_since is not None:
            down += end - down_since
        out[target] = max(0.0, 1.0 - down / span)
    return out


async def compute(
    store: AuditChain, *, now: float, window: float, targets: list[str] | None = None
) -> dict[str, Any]:
    since = now - window

    async def of(kind: str) -> list[Event]:
        found = await store.events(EventQuery(type=kind, since=since, until=now, limit=LIMIT))
        return list(reversed(found))

    recovered = [e for e in await of("service:recovered") if e.fingerprint and e.playbook]
    succeeded = await of("recovery:succeeded")
    failed = await of("recovery:failed")
    actions = [e for e in await of("recovery:action") if e.outcome != "dry_run"]
    health = sorted(
        [e for kind in ("service:degraded", "service:recovered") for e in await of(kind)
         if e.actor == "health"],
        key=lambda e: (e.time, e.id or 0),
    )  # fmt: skip
    trips = Counter(e.target for e in await of("circuit:open"))
    escalations = Counter(e.outcome for e in await of("recovery:escalated"))

    ok_by_book = Counter(e.playbook for e in succeeded)
    bad_by_book = Counter(e.playbook for e in failed if e.outcome != "interrupted")
    ok_by_action = Counter(e.action for e in actions if e.outcome == "success")
    bad_by_action = Counter(e.action for e in actions if e.outcome == "failure")
    books = sorted(set(ok_by_book) | set(bad_by_book))
    action_names = sorted(set(ok_by_action) | set(bad_by_action))
    durations = [e.duration for e in recovered if e.duration is not None]
    return {
        "window_seconds": window,
        "mttr": {
            **summary(durations),
            "by_playbook": _grouped(recovered, "playbook"),
            "by_target": _grouped(recovered, "target"),
            "by_category": _grouped(recovered, "category"),
        },
        "success_rate": {
            "overall": _ratio(sum(ok_by_book.values()), sum(bad_by_book.values())),
            "succeeded": sum(ok_by_book.values()),
            "failed": sum(bad_by_book.values()),
            "by_playbook": {b: _ratio(ok_by_book[b], bad_by_book[b]) for b in books},
            "by_action": {a: _ratio(ok_by_action[a], bad_by_action[a]) for a in action_names},
        },
        "availability": availability(health, targets or [], start=since, end=now),
        "breaker_trips": dict(sorted(trips.items())),
        "escalations": dict(sorted(escalations.items())),
        "actions_by_type": dict(sorted(Counter(e.action for e in actions).items())),
    }
