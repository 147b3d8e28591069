"""A remediation taken over from a dead replica never repeats a step that already took effect.

First the decision (remediator/engine/intents.py) on both store backends: a previous owner's step
intents read back as recorded, and a step whose effect the probe sees is ``already_done``; one
whose effect is not seen is waited for while the dead owner's call may still run, then taken.

Then the engine on a PostgreSQL store with the real ``docker.restart``, in one process: a
"previous owner" claimed the remediation, recorded its intent and restarted the container (its
call completing after it died); the run that takes over records ``already_done`` and restarts
nothing. The container's restarts are counted from the Docker engine's own event stream.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import docker
import pytest

from remediator.actions import builtin_actions
from remediator.actions.base import ActionContext, ActionResult
from remediator.audit import events as ev
from remediator.clock import FakeClock
from remediator.config import model as config_mod
from remediator.config.auth import Authenticator
from remediator.config.targets import DockerContainerTarget
from remediator.engine.intents import ALREADY_DONE, Intents, verdict
from remediator.http.app import build_runtime
from remediator.plugins import Plugins
from remediator.runtime import Runtime
from remediator.store import EventQuery, Store
from remediator.store.records import SUCCEEDED, StepIntent
from tests.engine_harness import alert, restart_playbook
from tests.realservices import ContainerFactory
from tests.store_helpers import run, store_url
from tests.test_engine_docker import StartCounter

__all__ = ["store_url"]  # the fixture
DEAD = "dead-replica:1"
TARGET = DockerContainerTarget(name="web", type="docker_container")


class FakeRestart:
    """A probed action on a fake container: its ``started_at`` changes when it restarts."""

    name: ClassVar[str] = "docker.restart"
    target_types: ClassVar[frozenset[str]] = frozenset({"docker_container"})

    def __init__(self, started_at: str, *, later: str | None = None, after: int = 0) -> None:
        self.started_at = started_at
        self.later, self.after = later, after  # started_at becomes ``later`` after n probes
        self.probes = 0

    async def run(self, ctx: ActionContext) -> ActionResult:
        raise AssertionError("settling never calls the action")

    async def probe(self, ctx: ActionContext) -> dict[str, Any]:
        self.probes += 1
        if self.later is not None and self.probes > self.after:
            self.started_at = self.later
        return {"started_at": self.started_at}

    def took_effect(self, before: dict[str, Any], now: dict[str, Any]) -> bool:
        return bool(now["started_at"] != before["started_at"])


class Unprobed:
    name: ClassVar[str] = "redis.flushdb"
    target_types: ClassVar[frozenset[str]] = frozenset({"redis"})

    async def run(self, ctx: ActionContext) -> ActionResult:
        raise AssertionError("settling never calls the action")


def _intent(step: int = 0, **fields: Any) -> StepIntent:
    values: dict[str, Any] = {
        "remediation_id": 7,
        "step": step,
        "action": "docker.restart",
        "target": "web",
        "owner": DEAD,
        "began_at": 1000.0,
        "probe": {"started_at": "a", "restart_count": 0},
    }
    values.update(fields)
    return StepIntent(**values)


# -- the decision ----------------------------------------------------------------------------


def test_the_verdict_acts_waits_or_finds_the_step_already_done() -> None:
    intent = _intent()

    def decide(
        i: StepIntent | None, a: str = "docker.restart", e: bool | None = None, now: float = 1010.0
    ) -> str:
        return verdict(i, action=a, effect=e, now=now, timeout=60.0)

    assert decide(None, e=True) == "act"  # nobody began this step
    assert decide(intent, a="docker.stop", e=True) == "act"  # another action at this index
    assert decide(intent, e=None) == "act"  # the action cannot tell: taken again
    assert decide(intent, e=True) == ALREADY_DONE
    assert decide(intent, e=False) == "wait"  # the dead owner's call may still be running
    assert decide(intent, e=False, now=1060.0) == "act"  # it cannot be any more


def test_a_previous_owners_intents_read_back_and_decide_on_both_backends(
    store_url: str,
) -> None:
    async def body(store: Store) -> None:
        await store.record_intent(_intent(0))
        await store.record_intent(_intent(2, action="docker.kill", probe={}))
        await store.record_intent(_intent(2, began_at=1005.0))  # a later attempt replaces it
        await store.record_intent(_intent(0, remediation_id=8, owner="other:2"))
        clock = FakeClock(1010.0)
        intents = Intents(store=store, clock=clock)
        inherited = await intents.inherited(7)
        assert inherited == {0: _intent(0), 2: _intent(2, began_at=1005.0)}
        assert inherited[0].probe == {"started_at": "a", "restart_count": 0}
        assert await intents.inherited(9) == {}

        ctx = ActionContext(target=TARGET, step=None, clients=None)  # type: ignore[arg-type]
        restarted = FakeRestart("b")  # the dead owner's call took effect
        done = await intents.settle(restarted, ctx=ctx, intent=inherited[0], timeout=60.0)
        assert done is not None and done.ok and "already took effect" in done.detail
        assert done.data["owner"] == DEAD and done.data["now"] == {"started_at": "b"}
        assert clock.now() == 1010.0  # seen at once

        late = FakeRestart("a", later="c", after=3)  # its effect shows three probes later
        done = await intents.settle(late, ctx=ctx, intent=inherited[0], timeout=60.0)
        assert done is not None and done.data["now"] == {"started_at": "c"}
        assert late.probes == 4 and clock.now() == 1013.0

        never = FakeRestart("a")  # began, never took effect: taken again once it cannot
        assert await intents.settle(never, ctx=ctx, intent=inherited[0], timeout=60.0) is None
        assert clock.now() >= 1060.0
        unprobed = Unprobed()  # cannot tell: taken again at once
        assert await intents.settle(unprobed, ctx=ctx, intent=inherited[0], timeout=60.0) is None

    run(store_url, body)


# -- the engine, with the real docker.restart --------------------------------------------------


def _engine(db: str, container: str, body: Callable[[Runtime, FakeClock], Awaitable[None]]) -> None:
    data = {
        "store": {"url": db},
        "health": {"enabled": False},
        "worker": {"lease": "4s"},
        "targets": [{"name": "web", "type": "docker_container", "container": container}],
        "playbooks": [
            restart_playbook(
                steps=[{"action": "docker.restart", "stop_timeout": 1, "timeout": "20s"}]
            )
        ],
    }

    async def main() -> None:
        clock = FakeClock()
        rt = await build_runtime(
            config_mod.parse(data, env={}),
            authenticator=Authenticator([]),
            clock=clock,
            actions=builtin_actions(),
            plugins=Plugins(),
            rng=random.Random(7),
        )
        await rt.bus.start()
        await rt.engine.startup()
        try:
            await body(rt, clock)
        finally:
            await rt.bus.stop()
            await rt.clients.aclose()
            await rt.store.close()

    asyncio.run(main())


async def _died_mid_step(rt: Runtime, clock: FakeClock, container: Any) -> int:
    """The alert arrives; a previous owner claims its remediation and records the intent of
    its restart (with the container as it was), then dies."""
    await rt.store.ingest([alert("t1", container="web")], received_at=clock.now(), receiver="r", group_key="g")  # fmt: skip
    item = await rt.store.latest_alert("t1")
    assert item is not None
    rid = await rt.store.start_remediation(playbook="restart", fingerprint="t1", episode_id=item.episode_id, target="web", now=clock.now(), owner=DEAD, lease=4.0)  # fmt: skip
    assert rid is not None
    container.reload()
    probe = {
        "started_at": container.attrs["State"]["StartedAt"],
        "restart_count": container.attrs["RestartCount"],
    }
    await rt.store.record_intent(_intent(0, remediation_id=rid, began_at=clock.now(), probe=probe))
    return rid


async def _take_over(rt: Runtime, clock: FakeClock) -> None:
    clock.advance(5.0)  # the dead owner's lease expired
    while await rt.worker.run_once():
        pass
    await rt.bus.drain()


async def _actions(rt: Runtime) -> list[tuple[str, str]]:
    found = await rt.store.events(EventQuery(type=ev.RECOVERY_ACTION, limit=100))
    return [(e.action, e.outcome) for e in found]


@pytest.mark.postgres
@pytest.mark.docker
def test_a_restart_the_dead_owner_began_is_not_repeated_by_the_heir(
    pg_database: str, docker_client: docker.DockerClient, container_factory: ContainerFactory
) -> None:
    container = container_factory(("sleep", "3600"), init=True)

    async def body(rt: Runtime, clock: FakeClock) -> None:
        rid = await _died_mid_step(rt, clock, container)
        counter = StartCounter(docker_client, container.id)
        await asyncio.to_thread(container.restart, timeout=1)  # its call completes after all
        await _take_over(rt, clock)
        assert counter.count() == 1  # the dead owner's restart only
        assert await _actions(rt) == [("docker.restart", ALREADY_DONE)]
        [rem] = await rt.store.remediations()
        assert (rem.id, rem.state, rem.attempts) == (rid, SUCCEEDED, 1)
        [done] = await rt.store.events(EventQuery(type=ev.RECOVERY_ACTION, limit=1))
        assert done.details["data"]["owner"] == DEAD
        value = rt.metrics.registry.get_sample_value(
            "remediator_action_attempts_total",
            {"playbook": "restart", "action": "docker.restart", "outcome": ALREADY_DONE},
        )
        assert value == 1.0

    _engine(pg_database, container.name, body)


@pytest.mark.postgres
@pytest.mark.docker
def test_a_restart_the_dead_owner_never_sent_is_taken_once_its_call_cannot_run(
    pg_database: str, docker_client: docker.DockerClient, container_factory: ContainerFactory
) -> None:
    container = container_factory(("sleep", "3600"), init=True)

    async def body(rt: Runtime, clock: FakeClock) -> None:
        await _died_mid_step(rt, clock, container)  # died before its call reached dockerd
        counter = StartCounter(docker_client, container.id)
        began = clock.now()
        await _take_over(rt, clock)
        assert counter.count() == 1  # the heir's restart
        assert clock.now() >= began + 20.0  # not before the dead owner's call timed out
        assert await _actions(rt) == [("docker.restart", "success")]

    _engine(pg_database, container.name, body)


@pytest.mark.postgres
@pytest.mark.docker
def test_a_run_records_its_restarts_intent_before_the_call(
    pg_database: str, docker_client: docker.DockerClient, container_factory: ContainerFactory
) -> None:
    container = container_factory(("sleep", "3600"), init=True)
    container.reload()
    before = container.attrs["State"]["StartedAt"]

    async def body(rt: Runtime, clock: FakeClock) -> None:
        await rt.store.ingest([alert("t2", container="web")], received_at=clock.now(), receiver="r", group_key="g")  # fmt: skip
        while await rt.worker.run_once():
            pass
        [rem] = await rt.store.remediations()
        [intent] = await rt.store.step_intents(rem.id)
        assert (intent.step, intent.action, intent.target) == (0, "docker.restart", "web")
        assert intent.owner == rt.engine.owner
        assert intent.probe["started_at"] == before  # read before the call
        container.reload()
        assert container.attrs["State"]["StartedAt"] != before

    _engine(pg_database, container.name, body)
