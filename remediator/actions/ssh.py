"""``ssh.run``: run one of an ``ssh_host`` target's named commands.

The step names a command of the target's ``commands``; its argv is filled from the alert's
labels, each checked against the command's regex (remediator/config/commands.py). A refused
value fails the step before anything is sent or described. The result carries the exit status
and stdout/stderr bounded to ``MAX_OUTPUT`` characters each, secrets redacted; a non-zero exit
(or the command's timeout) is a failed attempt.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from remediator.actions.base import (
    ActionContext,
    ActionResult,
    BuiltinAction,
    GuardedAction,
    Outcome,
    StepModel,
)
from remediator.clients import Clients
from remediator.config.targets import NAME_RE, SshHostTarget
from remediator.errors import ArgumentRefused
from remediator.redaction import redact_text
from remediator.tech.ssh import HOST_ERRORS, connections, ssh_error

__all__ = ["ACTIONS", "HostAction", "SshRun", "SshRunAction", "command_argv", "refusal"]


class SshRun(StepModel):
    action: Literal["ssh.run"] = Field(
        description="Run a named command of the target's `commands` (an argv, no shell)."
    )
    command: str = Field(pattern=NAME_RE.pattern, description="The command's name.")


def command_argv(target: SshHostTarget, command: str, labels: dict[str, str]) -> tuple[str, ...]:
    """The filled argv of ``command``; :class:`ArgumentRefused` if unknown or a label refused."""
    spec = target.commands.get(command)
    if spec is None:
        raise ArgumentRefused(f"command {command!r} is not in the commands of {target.name}")
    return spec.render(labels)


def refusal(action: str, target: str, exc: ArgumentRefused) -> ActionResult:
    """The failed result of a host step refused before anything was sent."""
    return ActionResult(False, f"{action} on {target} refused: {exc}", data={"error": exc.code})


class HostAction(GuardedAction):
    """The shape of an action on an ``ssh_host``: what it reads of the alert is checked first
    (:meth:`check`), so a refused value is never sent, described or dry-run; connection errors
    fail the step with a secret-free detail; a timed-out connection is dropped. Subclasses
    implement :meth:`check` and :meth:`perform_in`."""

    target_types: ClassVar[frozenset[str]] = frozenset({"ssh_host"})
    target_class = SshHostTarget
    errors = HOST_ERRORS

    def check(self, target: SshHostTarget, step: Any, labels: dict[str, str]) -> None:
        """Raise :class:`ArgumentRefused` if the step may not run with these labels."""
        raise NotImplementedError

    async def run(self, ctx: ActionContext) -> ActionResult:
        if isinstance(ctx.target, SshHostTarget) and isinstance(ctx.step, self.step_type):
            try:
                self.check(ctx.target, ctx.step, dict(ctx.labels))
            except ArgumentRefused as exc:
                return refusal(self.name, ctx.target.name, exc)
        return await super().run(ctx)

    def error_detail(self, exc: BaseException, target: Any, step: Any) -> str:
        return ssh_error(exc)

    async def on_timeout(self, target: Any, clients: Clients) -> None:
        await connections(clients).drop(target)

    async def perform(self, target: Any, step: Any, clients: Clients) -> Outcome:
        raise NotImplementedError  # perform_in is the entry point


class SshRunAction(HostAction):
    name = "ssh.run"
    step_type = SshRun

    def check(self, target: SshHostTarget, step: SshRun, labels: dict[str, str]) -> None:
        command_argv(target, step.command, labels)

    def describe(self, target: SshHostTarget, step: SshRun) -> str:
        return f"run the command {step.command} on {target.name}"

    async def perform_in(self, ctx: ActionContext) -> Outcome:
        target, step = ctx.target, ctx.step
        assert isinstance(target, SshHostTarget) and isinstance(step, SshRun)
        argv = command_argv(target, step.command, dict(ctx.labels))
        done = await connections(ctx.clients).run(target, argv)
        data: dict[str, Any] = {
            "command": step.command,
            "exit_status": done.exit_status,
            "stdout": redact_text(done.stdout),
            "stderr": redact_text(done.stderr),
        }
        where = f"command {step.command} on {target.name}"
        if done.timed_out:
            return False, f"{where}: killed at its timeout ({target.command_timeout:g}s)", data
        if done.exit_status != 0:
            return False, f"{where}: exit status {done.exit_status}", data
        return True, f"{where}: exit status 0", data


ACTIONS: tuple[BuiltinAction, ...] = (SshRunAction(),)
