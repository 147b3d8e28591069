"""systemd actions on an ``ssh_host`` target: restart, start, stop, reload an allow-listed unit.

The unit is the step's ``unit`` (literal, or a ``{{ labels.NAME }}`` template rendered from the
alert) and must be one of the target's ``units`` exactly, else the step is refused before a
connection is made. The command is ``[sudo -n] SYSTEMCTL VERB -- UNIT`` (an argv, see
``remediator/tech/ssh.py``); before and after it the action reads the unit's ``ActiveState``,
``SubState`` and ``MainPID`` (``systemctl show``), and puts both in the result. ``stop``
succeeds when systemctl exits 0; the others also need the unit ``active`` afterwards.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from remediator.actions.base import (
    ActionContext,
    BuiltinAction,
    Outcome,
    StepModel,
)
from remediator.actions.ssh import HostAction
from remediator.config.commands import check_label_template, fill_labels, valid_unit
from remediator.config.targets import SshHostTarget
from remediator.errors import ArgumentRefused
from remediator.tech.ssh import connections, unit_state

__all__ = [
    "ACTIONS",
    "SystemdReload",
    "SystemdRestart",
    "SystemdStart",
    "SystemdStop",
]

_TEMPLATE = Field(
    description="The unit, e.g. `nginx.service`, or `{{ labels.NAME }}`: it must be one of the "
    "target's `units`.",
    max_length=300,
)


class _SystemdStep(StepModel):
    unit: str = _TEMPLATE
    sudo: bool = Field(default=False, description="Run systemctl through `sudo -n`.")

    @field_validator("unit")
    @classmethod
    def _unit(cls, value: str) -> str:
        return check_label_template(value)


class SystemdRestart(_SystemdStep):
    action: Literal["systemd.restart"] = Field(description="`systemctl restart` the unit.")


class SystemdStart(_SystemdStep):
    action: Literal["systemd.start"] = Field(description="`systemctl start` the unit.")


class SystemdStop(_SystemdStep):
    action: Literal["systemd.stop"] = Field(description="`systemctl stop` the unit.")


class SystemdReload(_SystemdStep):
    action: Literal["systemd.reload"] = Field(description="`systemctl reload` the unit.")


def resolve_unit(target: SshHostTarget, step: _SystemdStep, labels: dict[str, str]) -> str:
    """The step's unit for this alert; :class:`ArgumentRefused` unless it is on the list."""
    unit = fill_labels(step.unit, labels)
    if not valid_unit(unit) or unit not in target.units:
        raise ArgumentRefused(f"unit {unit[:80]!r} is not in the units of {target.name}")
    return unit


class _SystemdAction(HostAction):
    verb: ClassVar[str]

    def check(self, target: SshHostTarget, step: _SystemdStep, labels: dict[str, str]) -> None:
        resolve_unit(target, step, labels)

    def describe(self, target: SshHostTarget, step: _SystemdStep) -> str:
        return f"systemctl {self.verb} {step.unit} on {target.name}"

    async def perform_in(self, ctx: ActionContext) -> Outcome:
        target, step = ctx.target, ctx.step
        assert isinstance(target, SshHostTarget) and isinstance(step, _SystemdStep)
        unit = resolve_unit(target, step, dict(ctx.labels))
        before = await unit_state(target, unit, clients=ctx.clients, sudo=step.sudo)
        prefix = ("sudo", "-n") if step.sudo else ()
        done = await connections(ctx.clients).run(
            target, (*prefix, target.systemctl, self.verb, "--", unit)
        )
        after = await unit_state(target, unit, clients=ctx.clients, sudo=step.sudo)
        data: dict[str, Any] = {"unit": unit, "before": before, "after": after}
        data["exit_status"] = done.exit_status
        where = f"systemctl {self.verb} {unit} on {target.name}"
        if done.timed_out:
            return False, f"{where}: timed out after {target.command_timeout:g}s", data
        if done.exit_status != 0:
            data["stderr"] = done.stderr
            return False, f"{where}: exit status {done.exit_status}", data
        state = after.get("ActiveState", "unknown")
        if self.verb != "stop" and state != "active":
            return False, f"{where}: the unit is {state} afterwards", data
        pids = f"pid {before.get('MainPID', '?')} -> {after.get('MainPID', '?')}"
        return True, f"{where}: {state}/{after.get('SubState', '?')} ({pids})", data


class SystemdRestartAction(_SystemdAction):
    name = "systemd.restart"
    verb = "restart"
    step_type = SystemdRestart


class SystemdStartAction(_SystemdAction):
    name = "systemd.start"
    verb = "start"
    step_type = SystemdStart


class SystemdStopAction(_SystemdAction):
    name = "systemd.stop"
    verb = "stop"
    step_type = SystemdStop


class SystemdReloadAction(_SystemdAction):
    name = "systemd.reload"
    verb = "reload"
    step_type = SystemdReload


ACTIONS: tuple[BuiltinAction, ...] = (
    SystemdRestartAction(),
    SystemdStartAction(),
    SystemdStopAction(),
    SystemdReloadAction(),
)
