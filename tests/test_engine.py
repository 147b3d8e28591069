"""The engine's decisions and guards, with fake actions, a real store and an injected clock."""

from __future__ import annotations

import asyncio
import itertools
import random
from pathlib import Path

import pytest

from remediator.actions.base import ActionContext
from remediator.audit.events import Event
from remediator.store.records import BLOCKED, FAILED, INTERRUPTED, SUCCEEDED
from tests.engine_harness import EngineHarness, Recorder, alert, restart_playbook, run

WEB = {"name": "web", "type": "docker_container"}


def containers(n: int) -> list[dict[str, str]]:
    return [{"name": f"web-{i}", "type": "docker_container"} for i in range(n)]


def test_a_firing_alert_runs_its_playbook_once(tmp_path: Path) -> None:
    async def body(h: EngineHarness) -> None:
        await h.send(alert("a1", container="web"))
        await h.drain()
        assert h.recorder.calls == [("docker.restart", "web", False)]
        types = [e.type for e in await h.events()]
        assert types[-4:] == [
            "health:high_memory",
            "recovery:started",
            "recovery:action",
            "recovery:succeeded",
        ]
        action = (await h.events("recovery:action"))[0]
        assert (action.target, action.playbook, action.outcome) == ("web", "restart", "success")
        assert action.category == "memory"
        [rem] = await h.rt.store.remediations()
        assert rem.state == SUCCEEDED

    run(tmp_path, {"targets": [WEB], "playbooks": [restart_playbook()]}, body)


def test_the_same_notification_three_times_gives_one_action(tmp_path: Path) -> None:
    async def body(h: EngineHarness) -> None:
        await asyncio.gather(*[h.send(alert("a1", container="web")) for _ in range(3)])
        await h.drain()
        # Alertmanager re-sends it later (repeat_interval), startsAt moved earlier: still one.
        await h.send(alert("a1", container="web", starts=1_799_999_000.0))
        await h.drain()
        assert h.recorder.count() == 1

    run(tmp_path, {"targets": [WEB], "playbooks": [restart_playbook()]}, body)


def test_resolved_alerts_never_act_and_record_recovery_time(tmp_path: Path) -> None:
    async def body(h: EngineHarness) -> None:
        await h.send(alert("a1", container="web", status="resolved", ends=1_800_000_090.0))
        await h.send(
            alert("a2", container="web"),
            alert("a2", container="web", status="resolved", ends=1_800_000_042.5),
        )
        await h.drain()
        assert h.recorder.count() == 0
        recovered = {e.fingerprint: e.duration for e in await h.events("service:recovered")}
        assert recovered == {"a1": 90.0, "a2": 42.5}
        assert "resolved" in await h.reasons()

    run(tmp_path, {"targets": [WEB], "playbooks": [restart_playbook()]}, body)


@pytest.mark.parametrize(
    "label",
    [
        "nope",
        "web; rm -rf /",
        "../web",
        "web\n",
        "$(reboot)",
        "web`id`",
        "web\x00",
        "WEB",
        " web",
        "web\u202e",
    ],
)
def test_unregistered_or_hostile_targets_are_refused_and_recorded(
    tmp_path: Path, label: str
) -> None:
    async def body(h: EngineHarness) -> None:
        await h.send(alert("a1", container=label))
        await h.drain()
        assert h.recorder.count() == 0
        [skip] = await h.events("recovery:skipped")
        assert skip.outcome == "target_not_registered"
        assert "\n" not in skip.message and "\x00" not in skip.message
        [escalated] = await h.events("recovery:escalated")
        assert escalated.outcome == "target_not_registered"

    run(tmp_path, {"targets": [WEB], "playbooks": [restart_playbook()]}, body)


def test_unknown_pattern_escalates_instead_of_guessing(tmp_path: Path) -> None:
    async def body(h: EngineHarness) -> None:
        await h.send(alert("a1", alertname="SomethingOdd", container="web", summary="odd"))
        await h.drain()
        assert h.recorder.count() == 0
        assert await h.reasons() == ["unknown_pattern"]
        [escalated] = await h.events("recovery:escalated")
        assert escalated.category == "unknown"

    run(tmp_path, {"targets": [WEB], "playbooks": [restart_playbook()]}, body)


def test_a_known_pattern_without_playbook_is_skipped_not_escalated(tmp_path: Path) -> None:
    async def body(h: EngineHarness) -> None:
        await h.send(alert("a1", alertname="HostDiskUsageHigh", summary="disk 95% used"))
        await h.drain()
        assert await h.reasons() == ["no_playbook"]
        assert await h.events("recovery:escalated") == []
        [skip] = await h.events("recovery:skipped")
        assert skip.category == "disk"

    run(tmp_path, {"targets": [WEB], "playbooks": [restart_playbook()]}, body)


def test_cooldown_blocks_until_it_has_passed(tmp_path: Path) -> None:
    async def body(h: EngineHarness) -> None:
        await h.send(alert("a1", container="web"))
        await h.drain()
        await h.send(alert("a2", container="web"))
        await h.drain()
        assert h.recorder.count() == 1
        assert await h.reasons() == ["cooldown"]
        h.clock.advance(301)
        await h.send(alert("a3", container="web"))
        await h.drain()
        assert h.recorder.count() == 2

    sections = {"targets": [WEB], "playbooks": [restart_playbook(cooldown="5m")]}
    run(tmp_path, sections, body)


def test_a_crash_loop_is_restarted_at_most_max_per_window_then_escalated(tmp_path: Path) -> None:
    async def body(h: EngineHarness) -> None:
        for episode in range(6):
            start = h.clock.now()
            await h.send(alert("loop", container="web", starts=start))
            await h.drain()
            h.clock.advance(30)
            await h.send(
                alert("loop", container="web", status="resolved", starts=start, ends=h.clock.now())
            )
            await h.drain()
            h.clock.advance(30)
            assert episode < 6
        assert h.recorder.count() == 3
        escalations = [e.outcome for e in await h.events("recovery:escalated")]
        assert escalations == ["max_per_window"] * 3
        # After the window, remediation resumes.
        h.clock.advance(3600)
        await h.send(alert("loop", container="web", starts=h.clock.now()))
        await h.drain()
        assert h.recorder.count() == 4

    sections = {
        "targets": [WEB],
        "playbooks": [restart_playbook(max_per_window={"count": 3, "window": "1h"})],
    }
    run(tmp_path, sections, body)


def test_blast_radius_acts_on_none_and_escalates(tmp_path: Path) -> None:
    async def body(h: EngineHarness) -> None:
        await h.send(*[alert(f"f{i}", container=f"web-{i}") for i in range(3)])
        await h.drain()
        assert h.recorder.count() == 0
        assert await h.reasons() == ["blast_radius"] * 3
        # One alert on its own is within the radius once the storm has resolved.
        await h.send(
            *[
                alert(f"f{i}", container=f"web-{i}", status="resolved", ends=h.clock.now() + 1)
                for i in range(3)
            ]
        )
        await h.drain()
        h.clock.advance(10)
        await h.send(alert("g1", container="web-4", starts=h.clock.now()))
        await h.drain()
        assert h.recorder.calls == [("docker.restart", "web-4", False)]

    run(tmp_path, {"targets": containers(5), "playbooks": [restart_playbook()]}, body)


def test_kill_switch_stops_new_actions_and_resume_allows_them(tmp_path: Path) -> None:
    async def body(h: EngineHarness) -> None:
        store = h.rt.store
        await store.set_flag("paused", "1", actor="test", now=h.clock.now(), events=[])
        await h.send(alert("a1", container="web"))
        await h.drain()
        assert h.recorder.count() == 0 and await h.reasons() == ["paused"]
        await store.set_flag("paused", "0", actor="test", now=h.clock.now(), events=[])
        await h.send(alert("a2", container="web"))
        await h.drain()
        assert h.recorder.count() == 1

    run(tmp_path, {"targets": [WEB], "playbooks": [restart_playbook()]}, body)


def test_dry_run_records_what_would_happen_and_leaves_the_breaker_alone(tmp_path: Path) -> None:
    recorder = Recorder()
    recorder.outcomes = [False] * 10

    async def body(h: EngineHarness) -> None:
        for i in range(7):
            await h.send(alert(f"a{i}", container="web"))
        await h.drain()
        assert all(dry for _, _, dry in h.recorder.calls) and h.recorder.count() == 7
        assert {r.state for r in await h.rt.store.remediations()} == {"dry_run"}
        assert (await h.rt.store.breaker("web")).state == "closed"

    sections = {"targets": [WEB], "playbooks": [restart_playbook(dry_run=True)]}
    run(tmp_path, sections, body, recorder)


def test_retries_follow_backoff_and_stop_on_success(tmp_path: Path) -> None:
    recorder = Recorder()
    recorder.outcomes = [False, False, True]

    async def body(h: EngineHarness) -> None:
        before = h.clock.now()
        await h.send(alert("a1", container="web"))
        await h.drain()
        assert h.recorder.count() == 3
        waited = h.clock.now() - before
        # Full jitter: uniform in [0, 10s] before the second attempt, in [0, 20s] before the
        # third, drawn from the harness's seeded generator and slept on the fake clock.
        draws = random.Random(7)
        first, second = draws.uniform(0.0, 10.0), draws.uniform(0.0, 20.0)
        assert waited == pytest.approx(first + second)
        times = [e.time for e in await h.events("recovery:action")]
        assert [b - a for a, b in itertools.pairwise(times)] == pytest.approx([first, second])
        [rem] = await h.rt.store.remediations()
        assert (rem.state, rem.attempts) == (SUCCEEDED, 3)

    retry = {"max_attempts": 5, "initial_delay": "10s", "multiplier": 2, "max_delay": "1m"}
    sections = {"targets": [WEB], "playbooks": [restart_playbook(retry=retry)]}
    run(tmp_path, sections, body, recorder)


def test_pending_retries_stop_when_the_alert_resolves(tmp_path: Path) -> None:
    recorder = Recorder()
    recorder.outcomes = [False] * 10

    async def body(h: EngineHarness) -> None:
        async def resolve_on_first_call(ctx: ActionContext) -> None:
            if h.recorder.count() == 1:
                await h.send(alert("a1", container="web", status="resolved", ends=h.clock.now()))

        h.recorder.on_call.append(resolve_on_first_call)
        await h.send(alert("a1", container="web"))
        await h.drain()
        assert h.recorder.count() == 1
        assert "resolved" in await h.reasons()

    retry = {"max_attempts": 5, "initial_delay": "1s"}
    sections = {"targets": [WEB], "playbooks": [restart_playbook(retry=retry)]}
    run(tmp_path, sections, body, recorder)


def test_breaker_opens_rejects_half_opens_closes_and_survives_restart(tmp_path: Path) -> None:
    recorder = Recorder()
    recorder.outcomes = [False] * 5 + [True]
    sections = {"targets": [WEB], "playbooks": [restart_playbook(max_per_window=None)]}

    async def body(h: EngineHarness) -> None:
        for i in range(5):
            await h.send(alert(f"f{i}", container="web"))
            await h.drain()
        breaker = await h.rt.store.breaker("web")
        assert (breaker.state, breaker.failures) == ("open", 5)
        assert [e.type for e in await h.events() if e.type.startswith("circuit:")] == [
            "circuit:open"
        ]
        await h.send(alert("f5", container="web"))
        await h.drain()
        assert h.recorder.count() == 5 and (await h.reasons())[-1] == "circuit_open"
        metrics = h.rt.metrics.registry.get_sample_value
        assert metrics("remediator_circuit_breaker_state", {"target": "web"}) == 2
        h.clock.advance(61)

    async def after_restart(h: EngineHarness) -> None:
        assert (await h.rt.store.breaker("web")).state == "open"
        h.clock.advance(61)
        await h.send(alert("f6", container="web", starts=h.clock.now()))
        await h.drain()
        assert (await h.rt.store.breaker("web")).state == "closed"
        kinds = [e.type for e in await h.events() if e.type.startswith("circuit:")]
        assert kinds == ["circuit:open", "circuit:half-open", "circuit:closed"]

    run(tmp_path, sections, body, recorder)
    recorder.outcomes = [True]
    run(tmp_path, sections, after_restart, recorder)


def test_a_failed_half_open_trial_reopens(tmp_path: Path) -> None:
    recorder = Recorder()
    recorder.outcomes = [False] * 3

    async def body(h: EngineHarness) -> None:
        for i in range(2):
            await h.send(alert(f"f{i}", container="web"))
            await h.drain()
        h.clock.advance(11)
        await h.send(alert("f2", container="web"))
        await h.drain()
        breaker = await h.rt.store.breaker("web")
        assert breaker.state == "open" and breaker.opened_at == h.clock.now()

    sections = {
        "targets": [WEB],
        "playbooks": [restart_playbook()],
        "circuit_breaker": {"failure_threshold": 2, "reset_timeout": "10s"},
    }
    run(tmp_path, sections, body, recorder)


def test_failed_remediation_is_recorded_and_escalated(tmp_path: Path) -> None:
    recorder = Recorder()
    recorder.outcomes = [False, False]

    async def body(h: EngineHarness) -> None:
        await h.send(alert("a1", container="web"))
        await h.drain()
        [rem] = await h.rt.store.remediations()
        assert (rem.state, rem.attempts) == (FAILED, 2)
        [failed] = await h.events("recovery:failed")
        assert "after 2 attempt(s)" in failed.message
        assert [e.outcome for e in await h.events("recovery:escalated")] == ["remediation_failed"]

    sections = {"targets": [WEB], "playbooks": [restart_playbook(retry={"max_attempts": 2})]}
    run(tmp_path, sections, body, recorder)


def test_quarantine_stops_further_automatic_actions(tmp_path: Path) -> None:
    async def body(h: EngineHarness) -> None:
        await h.send(alert("a1", container="web"))
        await h.drain()
        assert h.recorder.calls == [
            ("docker.restart", "web", False),
            ("docker.pause", "web", False),
        ]
        assert (await h.rt.store.target_state("web")).quarantined
        await h.send(alert("a2", container="web"))
        await h.drain()
        assert h.recorder.count() == 2 and (await h.reasons())[-1] == "quarantined"

    book = restart_playbook(steps=[{"action": "docker.restart"}, {"action": "quarantine"}])
    run(tmp_path, {"targets": [WEB], "playbooks": [book]}, body)


def test_a_run_cut_by_a_crash_is_recorded_as_interrupted_and_not_repeated(tmp_path: Path) -> None:
    sections = {"targets": [WEB], "playbooks": [restart_playbook()]}

    async def crash(h: EngineHarness) -> None:
        await h.send(alert("a1", container="web"))
        [item] = await h.rt.store.claim(worker="dead", now=h.clock.now(), lease=5, limit=1)
        await h.rt.store.start_remediation(
            playbook="restart",
            fingerprint="a1",
            episode_id=item.episode_id,
            target="web",
            now=h.clock.now(),
        )

    async def restarted(h: EngineHarness) -> None:
        [rem] = await h.rt.store.remediations()
        assert rem.state == INTERRUPTED
        failed: list[Event] = await h.events("recovery:failed")
        assert failed[0].outcome == "interrupted"
        h.clock.advance(10)  # the dead worker's lease expires
        await h.drain()
        assert h.recorder.count() == 0
        assert "already_remediated" in await h.reasons()

    run(tmp_path, sections, crash)
    run(tmp_path, sections, restarted)


def test_blocked_remediations_are_final_for_the_episode(tmp_path: Path) -> None:
    async def body(h: EngineHarness) -> None:
        await h.rt.store.set_flag("paused", "1", actor="t", now=h.clock.now(), events=[])
        await h.send(alert("a1", container="web"))
        await h.drain()
        [rem] = await h.rt.store.remediations()
        assert (rem.state, rem.reason) == (BLOCKED, "paused")

    run(tmp_path, {"targets": [WEB], "playbooks": [restart_playbook()]}, body)
