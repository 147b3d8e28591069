"""Hostile alert text against ``queue.restart_workers`` through a ``workers_process``.

The process restarted is the registered process target that the queue target's configuration
names; an alert only chooses which registered target a templated playbook acts on. Alerts carry
hostile values in the label the target template reads (the process target's own name, its
pidfile, shell metacharacters, ``../``, newlines, NUL, a template, 64 KB): the real engine with
the real actions never signals the worker (same pid, alive). A control alert naming the queue
target then restarts it, so the path the hostile alerts were refused on is live. A hostile
``workers_process`` in the configuration is refused when it is loaded.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
from pathlib import Path
from typing import Any

import pytest

from remediator.clock import FakeClock
from remediator.config import model as config_mod
from remediator.config.auth import Authenticator
from remediator.config.targets import NAME_RE
from remediator.engine.decisions import TARGET_NOT_REGISTERED, TARGET_WRONG_TYPE
from remediator.errors import ConfigError
from remediator.http.app import build_runtime
from remediator.plugins import Plugins
from remediator.store import EventQuery
from remediator.tech.process import read_pidfile
from tests.actions.test_process_restart import alive, supervised  # noqa: F401 (fixture)
from tests.engine_harness import alert

Supervised = tuple[subprocess.Popen[bytes], Path]


def hostile(pidfile: Path) -> list[str]:
    return [
        str(pidfile),
        f"jobs; kill -TERM $(cat {pidfile})",
        "$(kill -TERM 1)",
        "../rq-workers",
        "rq-workers\n",
        "jobs\x00",
        "{{ labels.other }}",
        "JOBS",
        "j" * 65536,
        "",
    ]


def sections(tmp_path: Path, pidfile: Path) -> dict[str, Any]:
    return {
        "store": {"url": f"sqlite:///{tmp_path}/engine.db"},
        "health": {"enabled": False},
        "targets": [
            {
                "name": "jobs",
                "type": "rq",
                "url": "redis://127.0.0.1:1/0",
                "queues": ["default"],
                "workers_process": "rq-workers",
            },
            {"name": "rq-workers", "type": "process", "pidfile": str(pidfile)},
        ],
        "playbooks": [
            {
                "name": "restart-workers",
                "match": ['alertname="ContainerMemoryHigh"'],
                "target": "{{ labels.queue_target }}",
                "steps": [{"action": "queue.restart_workers", "queue": "default", "timeout": 10}],
                "cooldown": "0s",
                "retry": {"max_attempts": 1},
            }
        ],
    }


def run(tmp_path: Path, pidfile: Path, values: list[str]) -> tuple[list[str], list[str]]:
    """Feed one alert per value to a real engine; the skip reasons and the action outcomes."""

    async def main() -> tuple[list[str], list[str]]:
        cfg = config_mod.parse(sections(tmp_path, pidfile), env={})
        rt = await build_runtime(
            cfg,
            authenticator=Authenticator([]),
            clock=FakeClock(),
            plugins=Plugins(),
            rng=random.Random(7),
        )
        await rt.bus.start()
        await rt.engine.startup()
        try:
            alerts = [alert(f"h{i}", queue_target=v) for i, v in enumerate(values)]
            await rt.store.ingest(alerts, received_at=1.0, receiver="r", group_key="g")
            while await rt.worker.run_once():
                pass
            await rt.bus.drain()
            skipped = await rt.store.events(EventQuery(type="recovery:skipped", limit=1000))
            acted = await rt.store.events(EventQuery(type="recovery:action", limit=1000))
            return [e.outcome for e in skipped], [e.outcome for e in acted]
        finally:
            await rt.bus.stop()
            await rt.clients.aclose()
            await rt.store.close()

    return asyncio.run(main())


def test_hostile_target_labels_never_restart_the_workers_process(
    tmp_path: Path,
    supervised: Supervised,  # noqa: F811
) -> None:
    _, pidfile = supervised
    before = read_pidfile(str(pidfile))
    assert before is not None and alive(before)
    values = hostile(pidfile)

    skipped, acted = run(tmp_path / "hostile", pidfile, values)

    assert acted == [] and sorted(skipped) == [TARGET_NOT_REGISTERED] * len(values)
    assert read_pidfile(str(pidfile)) == before and alive(before)

    # The control: the registered queue target restarts its workers' process.
    skipped, acted = run(tmp_path / "control", pidfile, ["jobs"])

    assert (skipped, acted) == ([], ["success"])
    assert read_pidfile(str(pidfile)) != before and not alive(before)


def test_the_process_target_itself_is_not_a_queue_target(
    tmp_path: Path,
    supervised: Supervised,  # noqa: F811
) -> None:
    _, pidfile = supervised
    before = read_pidfile(str(pidfile))
    assert before is not None

    skipped, acted = run(tmp_path, pidfile, ["rq-workers"])

    assert (skipped, acted) == ([TARGET_WRONG_TYPE], [])
    assert read_pidfile(str(pidfile)) == before and alive(before)


@pytest.mark.parametrize(
    "value", ["../rq-workers", "a;b", "$(id)", "rq-workers\n", "/run/worker.pid", "x" * 200, ""]
)
def test_a_hostile_workers_process_in_the_configuration_is_refused(value: str) -> None:
    target = {
        "name": "jobs",
        "type": "rq",
        "url": "redis://127.0.0.1:1/0",
        "queues": ["default"],
        "workers_process": value,
    }
    with pytest.raises(ConfigError) as caught:
        config_mod.parse({"targets": [target]}, env={})
    assert caught.value.problems == [
        f"targets[0].workers_process: String should match pattern '{NAME_RE.pattern}'"
    ]
