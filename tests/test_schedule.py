"""Scheduled restarts: a ``process.restart`` outside its maintenance window is kept for the
window's opening and run then, through the guards (remediator/engine/schedule.py).

The restart is of a unit on the real sshd of tests/services.sh (its systemctl stand-in: systemd
cannot run as PID 1 here); the engine runs on a fake clock.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from remediator.config.windows import MaintenanceWindow
from remediator.engine.schedule import due
from tests.engine_harness import EngineHarness, alert
from tests.sshhost import Sshd, Units
from tests.test_hosts_engine import host, run_engine


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


NIGHT = MaintenanceWindow(start="02:00", end="04:00")


def test_a_window_opens_at_its_next_start_and_is_open_until_its_end() -> None:
    assert NIGHT.next_start(ts("2027-01-15T08:00:00")) == ts("2027-01-16T02:00:00")
    assert NIGHT.next_start(ts("2027-01-15T01:59:59")) == ts("2027-01-15T02:00:00")
    inside = ts("2027-01-15T03:59:00")
    assert NIGHT.next_start(inside) == inside
    assert NIGHT.next_start(ts("2027-01-15T04:00:00")) == ts("2027-01-16T02:00:00")


def test_a_window_may_cross_midnight_and_keep_to_its_days() -> None:
    late = MaintenanceWindow(start="23:00", end="01:00", days=["sat"])  # 2027-01-16 is a Saturday
    assert late.next_start(ts("2027-01-15T12:00:00")) == ts("2027-01-16T23:00:00")
    after_midnight = ts("2027-01-17T00:30:00")  # Saturday's window, on Sunday
    assert late.next_start(after_midnight) == after_midnight
    assert late.next_start(ts("2027-01-17T01:00:00")) == ts("2027-01-23T23:00:00")
    with pytest.raises(ValidationError, match="invalid time"):
        MaintenanceWindow(start="24:00", end="01:00")


def test_only_due_restarts_are_run() -> None:
    data: dict[str, Any] = {
        "scheduled_restart:a": {"due": 10.0, "params": {}},
        "scheduled_restart:b": {"due": 20.0, "params": {}},
        "scheduled_restart:c": None,  # already run
        "active_url": "http://x",
    }
    assert [key for key, _ in due(data, 15.0)] == ["scheduled_restart:a"]


def at_night(unit: str, **window: str) -> dict[str, Any]:
    """A playbook restarting ``unit`` of vm1 in a 02:00-04:00 window, on WorkerLeaking."""
    return {
        "name": "restart-at-night",
        "match": ['alertname="WorkerLeaking"'],
        "target": "vm1",
        "steps": [
            {
                "action": "process.restart",
                "unit": unit,
                "window": {"start": "02:00", "end": "04:00", **window},
            }
        ],
        "cooldown": "0s",
        "retry": {"max_attempts": 1},
    }


def test_a_restart_outside_its_window_runs_when_the_window_opens(
    tmp_path: Path, sshd: Sshd, units: Units
) -> None:
    unit = units.create("batch", exec_line="sleep 600")
    book = at_night("{{ labels.unit }}", name="night")
    sections = {"targets": [host(sshd, units=[unit])], "playbooks": [book]}

    async def body(h: EngineHarness) -> None:
        assert h.rt.scheduler is not None
        assert h.clock.now() == ts("2027-01-15T08:00:00")
        await h.send(alert("w1", alertname="WorkerLeaking", unit=unit))
        await h.drain()
        [scheduled] = await h.events("recovery:action")
        opens = ts("2027-01-16T02:00:00")
        assert scheduled.message == (
            "restart of vm1 scheduled for 2027-01-16T02:00:00Z (window night)"
        )
        assert scheduled.details["data"] == {"scheduled_for": opens, "window": "night"}
        assert units.calls(unit) == []  # nothing touched yet
        assert await h.rt.scheduler.run_once() == 0  # not due
        h.clock.advance(opens - h.clock.now())
        assert await h.rt.scheduler.run_once() == 1
        [triggered] = await h.events("recovery:triggered")
        assert triggered.actor == "schedule" and triggered.target == "vm1"
        assert triggered.message == (
            "manual run of manual:process.restart on vm1 by schedule: maintenance window night"
        )
        restart = (await h.events("recovery:action"))[-1]
        assert restart.action == "process.restart" and restart.outcome == "success"
        assert restart.details["data"]["unit"] == unit
        data = (await h.rt.store.target_state("vm1")).data
        assert data[f"scheduled_restart:{unit}"] is None
        assert await h.rt.scheduler.run_once() == 0  # run once only

    run_engine(tmp_path, sections, body)
    assert [call[0] for call in units.calls(unit) if call[0] == "restart"] == ["restart"]
    assert units.state(unit) == "active" and units.pid(unit) > 1


def test_a_dry_run_outside_the_window_keeps_nothing(
    tmp_path: Path, sshd: Sshd, units: Units
) -> None:
    unit = units.create("batch", active=True)
    book = {**at_night(unit), "dry_run": True}
    sections = {"targets": [host(sshd, units=[unit])], "playbooks": [book]}

    async def body(h: EngineHarness) -> None:
        await h.send(alert("w1", alertname="WorkerLeaking"))
        await h.drain()
        [step] = await h.events("recovery:action")
        assert step.message == (
            "dry-run: restart of vm1 would be scheduled for 2027-01-16T02:00:00Z (window maintenance)"
        )
        assert (await h.rt.store.target_state("vm1")).data == {}

    run_engine(tmp_path, sections, body)
