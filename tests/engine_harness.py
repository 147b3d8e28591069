"""An engine on a real SQLite store, with fake actions and an injected clock (no sleeps)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

from remediator.actions.base import Action, ActionContext, ActionResult
from remediator.alerts import Alert
from remediator.audit.events import Event
from remediator.clock import FakeClock, iso
from remediator.config import model as config_mod
from remediator.config.auth import Authenticator
from remediator.http.app import build_runtime
from remediator.plugins import Plugins
from remediator.runtime import Runtime
from remediator.store import EventQuery


class Recorder:
    """Counts calls to fake actions; each call pops the next planned outcome (default ok)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, bool]] = []  # (action, target, dry_run)
        self.outcomes: list[bool] = []
        self.on_call: list[Any] = []

    def action(self, name: str, target_types: frozenset[str]) -> Action:
        recorder = self

        async def run(_self: object, ctx: ActionContext) -> ActionResult:
            recorder.calls.append((name, ctx.target.name, ctx.dry_run))
            for hook in recorder.on_call:
                await hook(ctx)
            ok = recorder.outcomes.pop(0) if recorder.outcomes else True
            return ActionResult(ok, "fake ok" if ok else "fake failure")

        fake = type("FakeAction", (), {"name": name, "target_types": target_types, "run": run})
        return cast(Action, fake())

    def count(self, name: str | None = None) -> int:
        return sum(1 for call in self.calls if name is None or call[0] == name)


def fake_registry(recorder: Recorder) -> dict[str, Action]:
    docker = frozenset({"docker_container"})
    return {
        "docker.restart": recorder.action("docker.restart", docker),
        "docker.pause": recorder.action("docker.pause", docker),
        "redis.flushdb": recorder.action("redis.flushdb", frozenset({"redis"})),
    }


def alert(
    fingerprint: str,
    *,
    status: str = "firing",
    starts: float = 1_800_000_000.0,
    ends: float | None = None,
    summary: str = "memory high",
    **labels: str,
) -> Alert:
    data = {
        "status": status,
        "labels": {"alertname": "ContainerMemoryHigh", "severity": "warning", **labels},
        "annotations": {"summary": summary},
        "startsAt": iso(starts),
        "endsAt": iso(ends) if ends is not None else "0001-01-01T00:00:00Z",
        "fingerprint": fingerprint,
    }
    return Alert.model_validate(data)


class EngineHarness:
    def __init__(self, rt: Runtime, clock: FakeClock, recorder: Recorder) -> None:
        self.rt = rt
        self.clock = clock
        self.recorder = recorder

    @classmethod
    async def create(
        cls,
        tmp_path: Path,
        sections: dict[str, Any],
        *,
        recorder: Recorder | None = None,
        actions: dict[str, Action] | None = None,  # default: the recorder's fake actions
    ) -> EngineHarness:
        data: dict[str, Any] = {
            "store": {"url": f"sqlite:///{tmp_path}/engine.db"},
            "health": {"enabled": False},
        }
        data.update(sections)
        cfg = config_mod.parse(data, env={})
        clock = FakeClock()
        recorder = recorder or Recorder()
        rt = await build_runtime(
            cfg,
            authenticator=Authenticator([]),
            clock=clock,
            actions=fake_registry(recorder) if actions is None else actions,
            plugins=Plugins(),
            rng=random.Random(7),
        )
        await rt.bus.start()
        await rt.engine.startup()
        return cls(rt, clock, recorder)

    async def send(self, *alerts: Alert) -> None:
        await self.rt.store.ingest(
            list(alerts), received_at=self.clock.now(), receiver="r", group_key="g"
        )

    async def drain(self) -> None:
        """Process everything pending, then wait until subscribers got every event.

        An item whose processing failed (e.g. a transient store error under load) stays leased
        and is retried once its lease expires, as in production: let leases expire, a bounded
        number of times, and fail loudly if something is still pending after that."""
        for _ in range(3):
            while await self.rt.worker.run_once():
                pass
            if await self.rt.store.pending_count() == 0:
                break
            self.clock.advance(self.rt.config.worker.lease + 1)
        pending = await self.rt.store.pending_count()
        assert pending == 0, f"{pending} inbox item(s) still pending after retries"
        await self.rt.bus.drain()

    async def events(self, type_: str | None = None) -> list[Event]:
        return list(reversed(await self.rt.store.events(EventQuery(type=type_, limit=1000))))

    async def reasons(self) -> list[str]:
        return [e.outcome for e in await self.events("recovery:skipped")]

    async def close(self) -> None:
        await self.rt.bus.stop()
        await self.rt.clients.aclose()
        await self.rt.store.close()


def restart_playbook(**extra: Any) -> dict[str, Any]:
    """The suites' playbook: restart the alert's container once, no cooldown, no retry."""
    book: dict[str, Any] = {
        "name": "restart",
        "match": ['alertname="ContainerMemoryHigh"'],
        "target": "{{ labels.container }}",
        "steps": [{"action": "docker.restart"}],
        "cooldown": "0s",
        "retry": {"max_attempts": 1},
    }
    book.update(extra)
    return book


def run(
    tmp_path: Path,
    sections: dict[str, Any],
    body: Callable[[EngineHarness], Awaitable[None]],
    recorder: Recorder | None = None,
) -> None:
    """Run ``body`` on a fresh harness (closed afterwards) in its own event loop."""

    async def main() -> None:
        h = await EngineHarness.create(tmp_path, sections, recorder=recorder)
        try:
            await body(h)
        finally:
            await h.close()

    asyncio.run(main())
