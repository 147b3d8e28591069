"""The guards decide on one snapshot read: the same verdicts as one read per guard.

Three layers: ``Store.guard_snapshot`` returns exactly what the individual reads return (every
backend); ``Guards.check`` (one snapshot) gives the verdict of the per-guard reads over a grid of
states, plans and times (every backend); and the pure :func:`evaluate` agrees with the per-guard
algorithm over generated states (a property test).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from remediator.config import model as config_mod
from remediator.config.model import Config
from remediator.config.playbooks import WindowLimit
from remediator.config.targets import Target
from remediator.engine.decisions import Catalog, Plan
from remediator.engine.guards import (
    ALLOWED,
    BLAST_RADIUS,
    CIRCUIT_OPEN,
    COOLDOWN,
    MAX_PER_WINDOW,
    PAUSE_FLAG,
    PAUSED,
    QUARANTINED,
    CircuitBreakers,
    Guards,
    Verdict,
    blast_peers,
    evaluate,
)
from remediator.store import Store
from remediator.store.records import (
    BLOCKED,
    FAILED,
    SUCCEEDED,
    BreakerState,
    GuardSnapshot,
    TargetState,
)
from tests.engine_harness import alert
from tests.store_helpers import run, store_url

__all__ = ["store_url"]  # the fixture

T = 1_800_000_000.0
WEBS = [f"web-{i}" for i in range(5)]


def _config(store: str = "sqlite:///unused.db") -> Config:
    targets: list[dict[str, Any]] = [{"name": n, "type": "docker_container"} for n in WEBS]
    targets += [
        {"name": "cache", "type": "redis", "url": "redis://127.0.0.1:1/0"},
        {"name": "site", "type": "http", "base_url": "http://127.0.0.1:1"},
        {"name": "site-2", "type": "http", "base_url": "http://127.0.0.1:2"},
    ]
    book = {
        "name": "restart",
        "match": ['alertname="ContainerMemoryHigh"'],
        "target": "{{ labels.container }}",
        "steps": [{"action": "docker.restart"}],
    }
    return config_mod.parse(
        {
            "store": {"url": store},
            "targets": targets,
            "playbooks": [book],
            "safety": {"blast_radius": 0.4, "blast_radius_min_targets": 2},
            "circuit_breaker": {"failure_threshold": 2, "reset_timeout": "60s"},
        },
        env={},
    )


def _plans(config: Config) -> list[Plan]:
    [plan] = Catalog.from_config(config).plans
    limits = [None, WindowLimit(count=1, window=60.0), WindowLimit(count=2, window=200.0)]
    limits.append(WindowLimit(count=5, window=3600.0))
    return [
        replace(plan, cooldown=cooldown, max_per_window=limit)
        for cooldown in (0.0, 30.0, 120.0)
        for limit in limits
    ]


async def per_guard_reads(
    store: Store, config: Config, plan: Plan, target: Target, now: float
) -> Verdict:
    """The guards as they were before the snapshot: one store read per guard, in order."""
    if (await store.flag(PAUSE_FLAG)) == "1":
        return Verdict(PAUSED, "the global kill switch is on")
    state = await store.target_state(target.name)
    if state.quarantined:
        return Verdict(QUARANTINED, f"target quarantined: {state.quarantine_reason}")
    safety = config.safety
    peers = [t.name for t in config.targets if t.type == target.type]
    if len(peers) >= safety.blast_radius_min_targets:
        alerting = await store.alerting_targets(peers)
        if alerting / len(peers) > safety.blast_radius:
            return Verdict(
                BLAST_RADIUS,
                f"{alerting} of {len(peers)} {target.type} targets alerting "
                f"(limit {safety.blast_radius:.0%})",
            )
    last = await store.last_started(target=target.name, playbook=plan.name)
    if last is not None and now - last < plan.cooldown:
        return Verdict(COOLDOWN, f"ran {now - last:.0f}s ago; cooldown {plan.cooldown:.0f}s")
    limit = plan.max_per_window
    if limit is not None:
        count = await store.count_started(target=target.name, since=now - limit.window)
        if count >= limit.count:
            return Verdict(
                MAX_PER_WINDOW,
                f"{count} remediations in the last {limit.window:.0f}s (limit {limit.count})",
            )
    settings_ = config.circuit_breaker
    current = await store.breaker(target.name)
    due = current.next_half_open(settings_)
    if settings_.enabled and current.state == "open" and (due is None or now < due):
        return Verdict(CIRCUIT_OPEN, "circuit breaker open")
    return ALLOWED


async def _open_episode(store: Store, fingerprint: str, target: str | None) -> int:
    result = await store.ingest(
        [alert(fingerprint, container=target or "none")], received_at=T, receiver="r", group_key="g"
    )
    assert result.new == 1
    stored = await store.latest_alert(fingerprint)
    assert stored is not None
    episode = stored.episode_id
    if target is not None:
        await store.mark_targets([(episode, target)])
    return episode


async def _started(store: Store, target: str, playbook: str, at: float, state: str) -> None:
    fingerprint = f"{target}-{playbook}-{at}-{state}"
    if state == BLOCKED:
        await store.start_remediation(playbook=playbook, fingerprint=fingerprint, episode_id=1, target=target, now=at, state=BLOCKED)  # fmt: skip
        return
    rid = await store.start_remediation(playbook=playbook, fingerprint=fingerprint, episode_id=1, target=target, now=at)  # fmt: skip
    assert rid is not None
    if state != "running":
        await store.finish_remediation(rid, state=state, now=at + 1, attempts=1)


async def _seed(store: Store, config: Config) -> None:
    """web-0 quarantined; web-1's breaker open now, web-3's open long ago (due); web-2 and
    cache with remediations at several times and states; web-0 and web-2 alerting (2 of 5)."""
    await store.set_quarantine("web-0", reason="flapping", now=T - 5, events=[])
    for name, at in (("web-1", T - 10), ("web-3", T - 500)):
        for _ in range(config.circuit_breaker.failure_threshold):
            await CircuitBreakers(store).report(
                name, config.circuit_breaker, ok=False, now=at, events=lambda t: []
            )
    for target in ("web-2", "cache"):
        for at, state in ((T - 100, SUCCEEDED), (T - 50, FAILED), (T - 10, BLOCKED)):
            await _started(store, target, "restart", at, state)
        await _started(store, target, "other", T - 5, SUCCEEDED)
    await _started(store, "site", "restart", T - 20, "running")
    await _open_episode(store, "alerting-0", "web-0")
    await _open_episode(store, "alerting-2", "web-2")
    await _open_episode(store, "alerting-site", "site")


def test_the_snapshot_reads_what_each_read_returns(store_url: str) -> None:
    config = _config()

    async def body(store: Store) -> None:
        await _seed(store, config)
        episode = await _open_episode(store, "mine", None)
        await store.set_flag(PAUSE_FLAG, "1", actor="t", now=T, events=[])
        for name in [*WEBS, "cache", "site", "unknown"]:
            for peers in (None, [], WEBS, [*WEBS, *WEBS], ["site", "site-2", "nope"]):
                for since, episode_id in ((None, None), (T - 60, episode), (T - 1000, 999_999)):
                    snap = await store.guard_snapshot(
                        target=name,
                        playbook="restart",
                        flag=PAUSE_FLAG,
                        peers=peers,
                        since=since,
                        episode_id=episode_id,
                    )
                    assert snap == GuardSnapshot(
                        episode=None if episode_id is None else await store.episode(episode_id),
                        flag=await store.flag(PAUSE_FLAG),
                        target=await store.target_state(name),
                        alerting=None if peers is None else await store.alerting_targets(peers),
                        last_started=await store.last_started(target=name, playbook="restart"),
                        count_started=None
                        if since is None
                        else await store.count_started(target=name, since=since),
                        breaker=await store.breaker(name),
                    )
        snap = await store.guard_snapshot(target="web-0", playbook="restart", flag="unset", peers=WEBS, since=T - 60, episode_id=episode)  # fmt: skip
        assert snap.episode is not None and snap.episode.id == episode and snap.episode.open
        assert snap.flag is None and snap.target.quarantined and snap.alerting == 2
        assert (await store.guard_snapshot(target="web-1", playbook="p", flag="f", peers=None, since=None)).breaker.state == "open"  # fmt: skip

    run(store_url, body)


def test_guards_on_one_snapshot_decide_as_the_per_guard_reads(store_url: str) -> None:
    """Every target, plan (cooldown x window limit) and time, with the kill switch off, on,
    and with a third container alerting (over the blast radius)."""
    config = _config()
    targets = list(config.targets)
    plans = _plans(config)

    async def body(store: Store) -> None:
        guards = Guards(config=config, store=store)
        await _seed(store, config)
        seen: set[str | None] = set()

        async def compare() -> None:
            for target in targets:
                for plan in plans:
                    for now in (T, T + 45, T + 100, T + 4000):
                        old = await per_guard_reads(store, config, plan, target, now)
                        new = await guards.check(plan=plan, target=target, now=now)
                        assert new == old, (target.name, plan.cooldown, plan.max_per_window, now)
                        seen.add(new.reason)

        await compare()
        await store.set_flag(PAUSE_FLAG, "0", actor="t", now=T, events=[])
        await compare()
        await _open_episode(store, "alerting-4", "web-4")
        await compare()
        await store.set_flag(PAUSE_FLAG, "1", actor="t", now=T, events=[])
        await compare()
        reasons = {PAUSED, QUARANTINED, BLAST_RADIUS, COOLDOWN, MAX_PER_WINDOW, CIRCUIT_OPEN}
        assert seen == {None, *reasons}

    run(store_url, body)


class _Reads:
    """A store answering the per-guard reads from one snapshot (for the property test)."""

    def __init__(self, snapshot: GuardSnapshot) -> None:
        self.snapshot = snapshot

    async def flag(self, name: str) -> str | None:
        return self.snapshot.flag

    async def target_state(self, target: str) -> TargetState:
        return self.snapshot.target

    async def alerting_targets(self, names: list[str]) -> int:
        assert self.snapshot.alerting is not None
        return self.snapshot.alerting

    async def last_started(self, *, target: str, playbook: str) -> float | None:
        return self.snapshot.last_started

    async def count_started(self, *, target: str, since: float) -> int:
        assert self.snapshot.count_started is not None
        return self.snapshot.count_started

    async def breaker(self, target: str) -> BreakerState:
        return self.snapshot.breaker


_CONFIG = _config()
_PLAN = _plans(_CONFIG)[0]
_TARGETS = {t.name: t for t in _CONFIG.targets}


@settings(max_examples=300, deadline=None)
@given(
    name=st.sampled_from(sorted(_TARGETS)),
    flag=st.sampled_from([None, "0", "1"]),
    quarantined=st.booleans(),
    alerting=st.integers(0, 5),
    last=st.one_of(st.none(), st.floats(T - 400, T)),
    cooldown=st.sampled_from([0.0, 30.0, 300.0]),
    limit=st.one_of(st.none(), st.integers(1, 4)),
    count=st.integers(0, 6),
    breaker_state=st.sampled_from(["closed", "open", "half-open"]),
    opened_ago=st.one_of(st.none(), st.floats(0, 200)),
    enabled=st.booleans(),
)
def test_evaluate_is_the_per_guard_algorithm_on_a_snapshot(
    name: str,
    flag: str | None,
    quarantined: bool,
    alerting: int,
    last: float | None,
    cooldown: float,
    limit: int | None,
    count: int,
    breaker_state: Any,
    opened_ago: float | None,
    enabled: bool,
) -> None:
    target = _TARGETS[name]
    config = _CONFIG.model_copy(
        update={"circuit_breaker": _CONFIG.circuit_breaker.model_copy(update={"enabled": enabled})}
    )
    window = None if limit is None else WindowLimit(count=limit, window=600.0)
    plan = replace(_PLAN, cooldown=cooldown, max_per_window=window)
    peers = blast_peers(config, target)
    snapshot = GuardSnapshot(
        episode=None,
        flag=flag,
        target=TargetState(name, quarantined_at=T if quarantined else None, quarantine_reason="r"),
        alerting=None if peers is None else min(alerting, len(peers)),
        last_started=last,
        count_started=None if window is None else count,
        breaker=BreakerState(
            name, breaker_state, 2, None if opened_ago is None else T - opened_ago, 0
        ),
    )
    old = asyncio.run(per_guard_reads(_Reads(snapshot), config, plan, target, T))  # type: ignore[arg-type]
    assert evaluate(snapshot, config=config, plan=plan, target=target, now=T) == old
