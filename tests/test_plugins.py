"""The plugin API for real: entry points of an "installed" distribution, run through the engine.

Nothing is pip-installed. Each test writes the example plugin of ``tests/plugin_example`` into a
temporary site directory as an installed distribution would look (``*.dist-info/METADATA`` and
``entry_points.txt`` generated from the plugin's own ``pyproject.toml``, next to the package),
prepends that directory to ``sys.path`` and lets :func:`remediator.plugins.load` find it through
``importlib.metadata``. The engine runs on a real SQLite store with a fake clock.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import random
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from remediator.alerts import Alert
from remediator.audit.events import Event
from remediator.clock import FakeClock
from remediator.config import model as config_mod
from remediator.config.auth import Authenticator
from remediator.engine.guards import PAUSE_FLAG
from remediator.http.app import build_runtime
from remediator.plugins import Plugins, load
from remediator.store import EventQuery
from remediator.store.records import BLOCKED, FAILED, SUCCEEDED
from tests.engine_harness import EngineHarness, Recorder, alert

EXAMPLE = Path(__file__).resolve().parent / "plugin_example"
PLUGIN = "remediator_example_plugin"
BROKEN = "remediator_broken_plugin"

# -- an installed distribution, without pip --------------------------------------------------


def write_distribution(
    site: Path, name: str, version: str, entry_points: dict[str, dict[str, str]]
) -> Path:
    """``site/<name>-<version>.dist-info`` with METADATA and entry_points.txt, as pip writes."""
    dist = site / f"{name.replace('-', '_')}-{version}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8"
    )
    lines: list[str] = []
    for group, entries in entry_points.items():
        lines.append(f"[{group}]")
        lines += [f"{entry} = {value}" for entry, value in entries.items()]
        lines.append("")
    (dist / "entry_points.txt").write_text("\n".join(lines), encoding="utf-8")
    return dist


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The example plugin installed into a fresh site directory at the front of sys.path."""
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    root = tmp_path / "site-packages"
    root.mkdir()
    write_distribution(root, project["name"], project["version"], project["entry-points"])
    shutil.copytree(EXAMPLE / PLUGIN, root / PLUGIN, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.syspath_prepend(str(root))
    try:
        yield root
    finally:  # the next test imports its own fresh copy (and its own RECEIVED list)
        for name in [n for n in sys.modules if n.split(".")[0] in (PLUGIN, BROKEN)]:
            del sys.modules[name]


def example() -> ModuleType:
    return importlib.import_module(PLUGIN)


# -- an engine with the loaded plugins ---------------------------------------------------------


def process_target(tmp_path: Path, name: str = "app") -> dict[str, str]:
    home = tmp_path / name
    home.mkdir(exist_ok=True)
    return {"name": name, "type": "process", "pidfile": str(home / f"{name}.pid")}


def maintenance_playbook(**extra: Any) -> dict[str, Any]:
    book: dict[str, Any] = {
        "name": "maintenance",
        "match": ['alertname="AppDegraded"'],
        "target": "{{ labels.instance }}",
        "steps": [{"action": "plugin", "plugin": "maintenance_file", "params": {}}],
        "cooldown": "0s",
        "retry": {"max_attempts": 1},
    }
    book.update(extra)
    return book


def run(
    tmp_path: Path,
    sections: dict[str, Any],
    body: Callable[[EngineHarness], Awaitable[None]],
    plugins: Plugins | None = None,
) -> None:
    async def main() -> None:
        data: dict[str, Any] = {
            "store": {"url": f"sqlite:///{tmp_path}/engine.db"},
            "health": {"enabled": False},
            **sections,
        }
        clock = FakeClock()
        rt = await build_runtime(
            config_mod.parse(data, env={}),
            authenticator=Authenticator([]),
            clock=clock,
            plugins=load() if plugins is None else plugins,
            rng=random.Random(7),
        )
        await rt.bus.start()
        await rt.engine.startup()
        h = EngineHarness(rt, clock, Recorder())
        try:
            await body(h)
        finally:
            await h.close()

    asyncio.run(main())


def degraded(name: str = "d1") -> Alert:
    return alert(name, alertname="AppDegraded", instance="app", summary="app degraded")


def backlog(name: str = "q1") -> Alert:
    return alert(name, alertname="QueueBacklog", instance="app", summary="queue keeps growing")


# -- discovery -------------------------------------------------------------------------------


def test_load_finds_one_entry_point_in_each_group(site: Path) -> None:
    assert PLUGIN not in sys.modules
    plugins = load()
    module = sys.modules[PLUGIN]  # imported by the entry points, from the site directory
    assert Path(module.__file__ or "").is_relative_to(site)

    action = plugins.actions["plugin:maintenance_file"]
    assert isinstance(action, module.MaintenanceFileAction)  # a class is instantiated
    assert [s for s in plugins.strategies if s.name == "drain"] == [module.DRAIN]
    strategy_action = plugins.actions["plugin:strategy:drain"]
    assert strategy_action.target_types == frozenset({"process"})
    assert isinstance(plugins.checks["process"], module.MaintenanceAwareCheck)
    assert module.subscribe in plugins.subscribers


def test_nothing_is_found_without_the_distribution() -> None:
    plugins = load()
    assert "plugin:maintenance_file" not in plugins.actions
    assert all(s.name != "drain" for s in plugins.strategies)
    assert "process" not in plugins.checks


def test_a_plugin_that_fails_to_import_is_logged_and_skipped(
    site: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (site / f"{BROKEN}.py").write_text('raise RuntimeError("broken at import")\n')
    write_distribution(
        site,
        "remediator-broken-plugin",
        "0.1",
        {
            "remediator.actions": {"bad_actions": f"{BROKEN}:THING", "gone": f"{PLUGIN}:GONE"},
            "remediator.strategies": {"bad_strategies": f"{BROKEN}:THING"},
            "remediator.checks": {"bad_checks": f"{BROKEN}:THING"},
            "remediator.subscribers": {"bad_subscribers": f"{BROKEN}:THING"},
        },
    )
    with caplog.at_level(logging.ERROR, logger="remediator.plugins"):
        plugins = load()

    # The good distribution is loaded in full, the broken one not at all.
    assert set(plugins.actions) >= {"plugin:maintenance_file", "plugin:strategy:drain"}
    assert not {"plugin:bad_actions", "plugin:gone"} & set(plugins.actions)
    assert [s.name for s in plugins.strategies].count("drain") == 1
    assert "process" in plugins.checks
    assert [s for s in plugins.subscribers if s.__module__ == PLUGIN] == [example().subscribe]
    failed = {(r.getMessage(), getattr(r, "plugin", None)) for r in caplog.records}
    assert failed == {
        ("plugin action failed to load", "bad_actions"),
        ("plugin action failed to load", "gone"),
        ("plugin strategy failed to load", "bad_strategies"),
        ("plugin check failed to load", "bad_checks"),
        ("plugin subscriber failed to load", "bad_subscribers"),
    }
    assert all(r.exc_info is not None for r in caplog.records)


# -- a plugin step ---------------------------------------------------------------------------


def test_a_plugin_step_runs_the_custom_action_and_records_its_result(
    site: Path, tmp_path: Path
) -> None:
    target = process_target(tmp_path)
    flag = Path(target["pidfile"]).with_name("maintenance")

    async def body(h: EngineHarness) -> None:
        await h.send(degraded("d1"))
        await h.drain()
        assert flag.is_file()
        [action] = await h.events("recovery:action")
        assert (action.target, action.playbook, action.action) == ("app", "maintenance", "plugin")
        assert action.outcome == "success"
        assert action.message == "'maintenance' now set on app"
        assert action.details["data"] == {"flag": "maintenance", "present": True, "changed": True}
        [rem] = await h.rt.store.remediations()
        assert rem.state == SUCCEEDED

        # Idempotent: a second episode finds the flag already set.
        await h.send(degraded("d2"))
        await h.drain()
        second = (await h.events("recovery:action"))[-1]
        assert (second.outcome, second.message) == ("success", "'maintenance' already set on app")
        assert second.details["data"]["changed"] is False

    run(tmp_path, {"targets": [target], "playbooks": [maintenance_playbook()]}, body)


def test_a_dry_run_plugin_step_touches_nothing(site: Path, tmp_path: Path) -> None:
    target = process_target(tmp_path)

    async def body(h: EngineHarness) -> None:
        await h.send(degraded())
        await h.drain()
        assert not Path(target["pidfile"]).with_name("maintenance").exists()
        [action] = await h.events("recovery:action")
        assert (action.outcome, action.message) == (
            "dry_run",
            "dry-run: would set 'maintenance' on app",
        )

    book = maintenance_playbook(dry_run=True)
    run(tmp_path, {"targets": [target], "playbooks": [book]}, body)


def test_invalid_plugin_params_fail_the_step_and_escalate(site: Path, tmp_path: Path) -> None:
    target = process_target(tmp_path)
    step = {"action": "plugin", "plugin": "maintenance_file", "params": {"name": "../escape"}}

    async def body(h: EngineHarness) -> None:
        await h.send(degraded())
        await h.drain()
        [action] = await h.events("recovery:action")
        assert action.outcome == "failure"
        assert action.message.startswith("invalid params: name: String should match pattern")
        [failed] = await h.events("recovery:failed")
        assert failed.playbook == "maintenance"
        assert [e.outcome for e in await h.events("recovery:escalated")] == ["remediation_failed"]
        [rem] = await h.rt.store.remediations()
        assert rem.state == FAILED

    book = maintenance_playbook(steps=[step])
    run(tmp_path, {"targets": [target], "playbooks": [book]}, body)
    assert list(tmp_path.rglob("*escape*")) == []


def test_a_plugin_step_on_a_target_of_another_type_fails(site: Path, tmp_path: Path) -> None:
    web = {"name": "app", "type": "http", "base_url": "http://127.0.0.1:9"}

    async def body(h: EngineHarness) -> None:
        await h.send(degraded())
        await h.drain()
        [action] = await h.events("recovery:action")
        assert (action.outcome, action.message) == ("failure", "wrong target type")

    run(tmp_path, {"targets": [web], "playbooks": [maintenance_playbook()]}, body)


# -- a strategy ------------------------------------------------------------------------------


def test_a_strategy_whose_condition_does_not_hold_changes_nothing(
    site: Path, tmp_path: Path
) -> None:
    async def body(h: EngineHarness) -> None:
        await h.send(alert("o1", alertname="SomethingOdd", instance="app", summary="odd"))
        await h.drain()
        assert await h.reasons() == ["unknown_pattern"]
        assert await h.events("recovery:action") == []

    run(tmp_path, {"targets": [process_target(tmp_path)]}, body)
    assert list(tmp_path.rglob("drain")) == []


def test_a_strategy_handles_an_alert_no_playbook_handles(site: Path, tmp_path: Path) -> None:
    target = process_target(tmp_path)

    async def body(h: EngineHarness) -> None:
        await h.send(backlog())
        await h.drain()
        assert Path(target["pidfile"]).with_name("drain").is_file()
        [action] = await h.events("recovery:action")
        assert (action.playbook, action.action, action.outcome) == (
            "strategy:drain",
            "plugin",
            "success",
        )
        assert action.message == "app is now draining"
        assert await h.events("recovery:escalated") == []
        [rem] = await h.rt.store.remediations()
        assert (rem.playbook, rem.state) == ("strategy:drain", SUCCEEDED)

    # A playbook exists, but for another alert: the strategy is only asked when none applies.
    sections = {"targets": [target], "playbooks": [maintenance_playbook()]}
    run(tmp_path, sections, body)


def test_the_kill_switch_blocks_a_strategy(site: Path, tmp_path: Path) -> None:
    target = process_target(tmp_path)

    async def body(h: EngineHarness) -> None:
        await h.rt.store.set_flag(PAUSE_FLAG, "1", actor="test", now=h.clock.now(), events=[])
        await h.send(backlog())
        await h.drain()
        assert not Path(target["pidfile"]).with_name("drain").exists()
        assert await h.events("recovery:action") == []
        assert await h.reasons() == ["paused"]
        [rem] = await h.rt.store.remediations()
        assert (rem.playbook, rem.state) == ("strategy:drain", BLOCKED)

    run(tmp_path, {"targets": [target]}, body)


# -- a subscriber ----------------------------------------------------------------------------


def test_the_subscriber_hears_events_after_they_are_recorded(site: Path, tmp_path: Path) -> None:
    async def body(h: EngineHarness) -> None:
        received: list[Event] = example().RECEIVED
        stored_when_called: list[bool] = []

        async def still_there(event: Event) -> None:  # an embedder's in-process subscription
            found = await h.rt.store.events(EventQuery(type=event.type, limit=10))
            stored_when_called.append(any(e.id == event.id for e in found))

        h.rt.on("recovery:escalated", still_there)
        await h.send(alert("o1", alertname="SomethingOdd", instance="app", summary="odd"))
        await h.drain()
        [escalated] = await h.events("recovery:escalated")
        assert [e for e in received if e.type == "recovery:escalated"] == [escalated]
        assert escalated.id is not None and escalated.hash
        assert stored_when_called == [True]
        # Types it did not subscribe to never reach it.
        assert {e.type for e in received} <= set(example().WATCHED)

    run(tmp_path, {"targets": [process_target(tmp_path)]}, body)


def test_the_subscriber_hears_recovery_actions(site: Path, tmp_path: Path) -> None:
    async def body(h: EngineHarness) -> None:
        await h.send(degraded())
        await h.drain()
        [action] = await h.events("recovery:action")
        received: list[Event] = example().RECEIVED
        assert [e for e in received if e.type == "recovery:action"] == [action]

    sections = {"targets": [process_target(tmp_path)], "playbooks": [maintenance_playbook()]}
    run(tmp_path, sections, body)


def test_the_subscriber_hears_a_circuit_opening(
    site: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    step = {"action": "plugin", "plugin": "maintenance_file", "params": {"bogus": 1}}

    async def body(h: EngineHarness) -> None:
        await h.send(degraded())
        await h.drain()
        [opened] = await h.events("circuit:open")
        assert opened.target == "app"
        received: list[Event] = example().RECEIVED
        assert [e for e in received if e.type == "circuit:open"] == [opened]
        assert "circuit open: automatic recovery of app stopped" in caplog.messages

    sections = {
        "targets": [process_target(tmp_path)],
        "playbooks": [maintenance_playbook(steps=[step])],
        "circuit_breaker": {"failure_threshold": 1},
    }
    with caplog.at_level(logging.WARNING, logger=PLUGIN):
        run(tmp_path, sections, body)


# -- a health check --------------------------------------------------------------------------


@pytest.fixture
def live_pid() -> Iterator[int]:
    """A process of our own to point a pidfile at (ended by its pid when the test is done)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_the_custom_check_is_used_for_its_target_type(
    site: Path, tmp_path: Path, live_pid: int
) -> None:
    target = process_target(tmp_path)
    Path(target["pidfile"]).write_text(f"{live_pid}\n")

    async def body(h: EngineHarness) -> None:
        app = h.rt.config.target("app")
        assert app is not None
        assert isinstance(h.rt.monitor.checks["process"], example().MaintenanceAwareCheck)
        first = await h.rt.monitor.check_now(app)
        assert (first.healthy, first.detail) == (
            True,
            f"example: process {live_pid} of app is running",
        )
        # The plugin action sets the maintenance flag; the plugin check now reports it.
        await h.send(degraded())
        await h.drain()
        second = await h.rt.monitor.check_now(app)
        await h.rt.bus.drain()  # subscribers get committed events from the bus's own task
        assert (second.healthy, second.detail) == (False, "example: app is in maintenance")
        [down] = await h.events("service:degraded")
        assert (down.target, down.actor, down.message) == ("app", "health", second.detail)
        received: list[Event] = example().RECEIVED
        assert [e for e in received if e.type == "service:degraded"] == [down]

    sections = {"targets": [target], "playbooks": [maintenance_playbook()]}
    run(tmp_path, sections, body)
