"""What the engine writes per alert: two writer jobs for a decided alert (the claim, carrying
the detection event and the target mark; the finish, completing the inbox item), the audit order
unchanged, and the detection recorded exactly once on every path.

Before, a decided alert cost five writer jobs (append of the health event, mark_targets,
start_remediation, finish_remediation, the worker's complete). Run on PostgreSQL too
(tests/test_suites_postgres.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from remediator.audit.events import Event
from remediator.errors import StoreUnavailable
from remediator.store import Store
from remediator.store.records import DRY_RUN, RUNNING, SUCCEEDED
from tests.engine_harness import EngineHarness, Recorder, alert, restart_playbook, run

WEB = {"name": "web", "type": "docker_container"}
WRITES = (
    "ingest",
    "claim",
    "complete",
    "extend_leases",
    "append",
    "mark_targets",
    "start_remediation",
    "renew_remediation",
    "record_intent",
    "finish_remediation",
    "update_breaker",
    "set_flag",
)


class WriteLog:
    """Records the store's write calls by name, and counts its writer jobs (``_write``, and on
    PostgreSQL the jobs of its batches, ``_batched``)."""

    def __init__(self, store: Store) -> None:
        self.calls: list[str] = []
        self.jobs = 0
        for name in WRITES:
            setattr(store, name, self._named(name, getattr(store, name)))
        write = store._write  # type: ignore[attr-defined]

        async def counted(job: Any) -> Any:
            self.jobs += 1
            return await write(job)

        store._write = counted  # type: ignore[attr-defined]
        batched = getattr(store, "_batched", None)  # PostgreSQL: a job of a batch
        if batched is not None:

            async def counted_batched(make: Any) -> Any:
                self.jobs += 1
                return await batched(make)

            store._batched = counted_batched  # type: ignore[attr-defined]

    def _named(
        self, name: str, method: Callable[..., Awaitable[Any]]
    ) -> Callable[..., Awaitable[Any]]:
        async def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return await method(*args, **kwargs)

        return call

    def per_alert(self) -> list[str]:
        """The calls without the worker's per-batch ones (claim, the batch's target marks)."""
        calls = list(self.calls)
        while calls and calls[0] in ("claim", "mark_targets"):
            calls.pop(0)
        while calls and calls[-1] == "claim":
            calls.pop()
        return calls


def pending_gauge(h: EngineHarness) -> float:
    value = h.rt.metrics.registry.get_sample_value("remediator_inbox_pending")
    return value or 0.0


async def types_of(h: EngineHarness, fingerprint: str) -> list[str]:
    return [e.type for e in await h.events() if e.fingerprint == fingerprint]


async def inbox(h: EngineHarness) -> list[tuple[Any, ...]]:
    return sorted(await h.rt.store.raw("SELECT state, outcome FROM inbox"))


def test_a_decided_dry_run_alert_costs_two_writer_jobs(tmp_path: Path) -> None:
    async def body(h: EngineHarness) -> None:
        await h.send(alert("a1", container="web"))
        log = WriteLog(h.rt.store)
        gauge = pending_gauge(h)
        await h.drain()
        assert log.calls == [
            "claim",
            "mark_targets",  # the batch's (Engine.prepare)
            "start_remediation",  # + the health event, + the episode's target
            "finish_remediation",  # + the inbox item's completion
            "claim",
        ]
        assert log.jobs == len(log.calls)  # no other writer job
        assert log.per_alert() == ["start_remediation", "finish_remediation"]
        assert await types_of(h, "a1") == [
            "alert:received",
            "health:high_memory",
            "recovery:started",
            "recovery:action",
            "recovery:dry_run",
        ]
        assert await inbox(h) == [("done", "decided")]
        assert pending_gauge(h) == gauge - 1
        [rem] = await h.rt.store.remediations()
        assert rem.state == DRY_RUN

    run(tmp_path, {"targets": [WEB], "playbooks": [restart_playbook(dry_run=True)]}, body)


def test_a_storm_batch_costs_two_writer_jobs_per_alert(tmp_path: Path) -> None:
    targets = [{"name": f"web-{i}", "type": "docker_container"} for i in range(20)]

    async def body(h: EngineHarness) -> None:
        await h.send(*[alert(f"s{i}", container=f"web-{i}") for i in range(20)])
        log = WriteLog(h.rt.store)
        await h.drain()
        assert log.jobs == len(log.calls) == 3 + 2 * 20
        assert sorted(log.per_alert()) == ["finish_remediation"] * 20 + ["start_remediation"] * 20
        assert await inbox(h) == [("done", "decided")] * 20
        for i in range(20):
            assert (await types_of(h, f"s{i}"))[1:3] == ["health:high_memory", "recovery:started"]

    sections = {
        "targets": targets,
        "playbooks": [restart_playbook(dry_run=True)],
        "safety": {"blast_radius": 1.0},
    }
    run(tmp_path, sections, body)


def test_a_real_run_adds_only_the_breaker_steps(tmp_path: Path) -> None:
    async def body(h: EngineHarness) -> None:
        await h.send(alert("a1", container="web"))
        log = WriteLog(h.rt.store)
        await h.drain()
        # On a shared store the restart records its intent before the call (remediator/engine/intents.py).
        intent = ["record_intent"] if h.rt.store.shared else []
        steps = [
            "start_remediation",
            "update_breaker",
            *intent,
            "update_breaker",
            "finish_remediation",
        ]
        assert log.per_alert() == steps
        assert log.jobs == len(log.calls)
        assert await types_of(h, "a1") == [
            "alert:received",
            "health:high_memory",
            "recovery:started",
            "recovery:action",
            "recovery:succeeded",
        ]
        assert await inbox(h) == [("done", "decided")]

    run(tmp_path, {"targets": [WEB], "playbooks": [restart_playbook()]}, body)


def test_a_blocked_alert_records_its_detection_once_before_the_block(tmp_path: Path) -> None:
    async def body(h: EngineHarness) -> None:
        await h.rt.store.set_flag("paused", "1", actor="t", now=h.clock.now(), events=[])
        await h.send(alert("a1", container="web"))
        log = WriteLog(h.rt.store)
        await h.drain()
        assert log.per_alert() == ["start_remediation", "complete"]
        assert await types_of(h, "a1") == [
            "alert:received",
            "health:high_memory",
            "recovery:skipped",
        ]
        assert await h.reasons() == ["paused"]
        assert await inbox(h) == [("done", "decided")]

    run(tmp_path, {"targets": [WEB], "playbooks": [restart_playbook()]}, body)


def test_an_already_remediated_episode_records_its_detection_once(tmp_path: Path) -> None:
    async def body(h: EngineHarness) -> None:
        await h.send(alert("a1", container="web"))
        item = await h.rt.store.latest_alert("a1")
        assert item is not None
        rid = await h.rt.store.start_remediation(playbook="restart", fingerprint="a1", episode_id=item.episode_id, target="web", now=h.clock.now())  # fmt: skip
        assert rid is not None
        await h.rt.store.finish_remediation(rid, state=SUCCEEDED, now=h.clock.now(), attempts=1)
        await h.drain()
        assert h.recorder.count() == 0
        assert await types_of(h, "a1") == [
            "alert:received",
            "health:high_memory",
            "recovery:skipped",
        ]
        assert await h.reasons() == ["already_remediated"]
        assert await inbox(h) == [("done", "decided")]

    run(tmp_path, {"targets": [WEB], "playbooks": [restart_playbook()]}, body)


def test_a_resolved_episode_records_its_detection_once_with_the_skip(tmp_path: Path) -> None:
    async def body(h: EngineHarness) -> None:
        await h.send(alert("a1", container="web"))
        await h.send(alert("a1", container="web", status="resolved", ends=h.clock.now() + 5))
        await h.drain()
        assert h.recorder.count() == 0
        types = await types_of(h, "a1")
        assert types[:2] == ["alert:received", "alert:resolved"]
        assert sorted(types[2:]) == ["health:high_memory", "recovery:skipped", "service:recovered"]
        engine = [t for t in types if t in ("health:high_memory", "recovery:skipped")]
        assert engine == ["health:high_memory", "recovery:skipped"]
        assert await h.reasons() == ["resolved"]
        assert await inbox(h) == [("done", "decided"), ("done", "resolved")]

    run(tmp_path, {"targets": [WEB], "playbooks": [restart_playbook()]}, body)


def test_a_take_over_records_the_detection_once(tmp_path: Path) -> None:
    """A running remediation of the item whose owner stops renewing: the engine waits for its
    lease to expire, takes it over and runs it; the detection comes first, once."""

    async def body(h: EngineHarness) -> None:
        await h.send(alert("a1", container="web"))
        item = await h.rt.store.latest_alert("a1")
        assert item is not None
        dead = await h.rt.store.start_remediation(playbook="restart", fingerprint="a1", episode_id=item.episode_id, target="web", now=h.clock.now(), owner="dead", lease=30.0)  # fmt: skip
        await h.drain()
        assert h.recorder.count() == 1
        assert await types_of(h, "a1") == [
            "alert:received",
            "health:high_memory",
            "recovery:started",
            "recovery:action",
            "recovery:succeeded",
        ]
        [rem] = await h.rt.store.remediations()
        assert (rem.id, rem.state) == (dead, SUCCEEDED)
        assert await inbox(h) == [("done", "decided")]

    run(tmp_path, {"targets": [WEB], "playbooks": [restart_playbook()]}, body)


def test_an_item_whose_final_write_fails_is_retried_after_its_lease(tmp_path: Path) -> None:
    """The completion rides on the final write: when that write fails, the item is neither
    completed nor counted done; once its lease expires it is claimed again, the running
    remediation (its lease expired too) is taken over, and the item completes once."""

    async def body(h: EngineHarness) -> None:
        store = h.rt.store
        finish = store.finish_remediation
        failures = [StoreUnavailable("the store could not commit: injected")]

        async def failing(*args: Any, **kwargs: Any) -> None:
            if failures:
                raise failures.pop()
            await finish(*args, **kwargs)

        store.finish_remediation = failing  # type: ignore[method-assign]
        gauge = pending_gauge(h)
        await h.send(alert("a1", container="web"))
        assert await h.rt.worker.run_once() == 1
        assert await store.pending_count() == 1
        assert pending_gauge(h) == gauge  # not done
        assert [r.state for r in await store.remediations()] == [RUNNING]
        assert await h.rt.worker.run_once() == 0  # leased
        await h.drain()  # past the lease: claimed again, taken over
        assert h.recorder.count() == 2
        [rem] = await store.remediations()
        assert rem.state == SUCCEEDED
        assert await inbox(h) == [("done", "decided")]
        assert pending_gauge(h) == gauge - 1
        events: list[Event] = await h.events("recovery:succeeded")
        assert len(events) == 1

    run(tmp_path, {"targets": [WEB], "playbooks": [restart_playbook()]}, body)


def test_a_busy_target_does_not_hold_back_the_detection(tmp_path: Path) -> None:
    """Alerts on one target run one at a time. The second one's detection is recorded while
    the first one's remediation still runs (not once the target is free), and only once."""
    recorder = Recorder()

    async def body(h: EngineHarness) -> None:
        seen_during_first: list[bool] = []

        async def wait_for_second(ctx: Any) -> None:
            if h.recorder.count() != 1:
                return
            for _ in range(200):
                if "b" in {e.fingerprint for e in await h.events("health:high_memory")}:
                    seen_during_first.append(True)
                    return
                await asyncio.sleep(0.01)
            seen_during_first.append(False)

        h.recorder.on_call.append(wait_for_second)
        await h.send(alert("a", container="web"), alert("b", container="web"))
        await h.drain()
        assert seen_during_first == [True]
        assert h.recorder.count() == 2
        for fingerprint in ("a", "b"):
            types = await types_of(h, fingerprint)
            assert types == [
                "alert:received",
                "health:high_memory",
                "recovery:started",
                "recovery:action",
                "recovery:succeeded",
            ]
        assert await inbox(h) == [("done", "decided")] * 2

    sections = {"targets": [WEB], "playbooks": [restart_playbook()]}
    run(tmp_path, sections, body, recorder)
