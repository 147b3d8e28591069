"""``ansible.playbook``: run an allow-listed playbook against an ``ssh_host`` with ansible-runner.

The playbook is a file name from the target's ``playbooks``, read from its ``playbook_dir``
(an absolute directory of the configuration; a name never holds a ``/`` and the resolved file
must stay inside the directory). Its inventory holds the target alone, reached as remediator
reaches it: the same user and key, and the pinned ``host_key`` as the only known host key
(``StrictHostKeyChecking=yes``, a known_hosts file of its own, no global one). Extra vars come
only from the alert labels the step lists in ``labels``, each checked against its regex
(remediator/config/commands.py): a refused value fails the step before ansible starts.

Each task's result (``runner_on_ok``/``changed``/``failed``/``unreachable``/``skipped``)
becomes an entry of the step's result (task, host, status), at most :data:`MAX_TASK_EVENTS`,
so the playbook's task events are in the step's ``recovery:action`` event of the audit chain.
While the playbook runs, each of them is also reported as it happens (task, host, status,
changed) through the context's ``progress`` (handed from ansible-runner's thread to the event
loop): the runner records it as its own ``recovery:progress`` event.
A failed or unreachable host, or the step's timeout, fails the step.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from remediator.actions.base import (
    ActionContext,
    BuiltinAction,
    Outcome,
    StepModel,
)
from remediator.actions.ssh import HostAction
from remediator.config.commands import check_label_values, check_regexes
from remediator.config.durations import Duration
from remediator.config.targets import SshHostTarget
from remediator.errors import ArgumentRefused

__all__ = ["ACTIONS", "AnsiblePlaybook", "AnsiblePlaybookAction", "playbook_path"]

MAX_TASK_EVENTS = 200
_TASK_EVENTS = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_unreachable": "unreachable",
    "runner_on_skipped": "skipped",
}


class AnsiblePlaybook(StepModel):
    action: Literal["ansible.playbook"] = Field(
        description="Run a playbook of the target's `playbooks` against it with ansible-runner."
    )
    playbook: str = Field(description="The playbook's file name, one of the target's `playbooks`.")
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Alert label -> the regex (RE2) its value must match in full; each becomes "
        "an extra var of the same name. No other extra vars are passed.",
    )
    timeout: Duration = 300.0

    @field_validator("labels")
    @classmethod
    def _regexes(cls, value: dict[str, str]) -> dict[str, str]:
        return check_regexes(value)


def playbook_path(target: SshHostTarget, name: str) -> Path:
    """The allow-listed playbook's file; :class:`ArgumentRefused` if it is not allowed."""
    if name not in target.playbooks or target.playbook_dir is None:
        raise ArgumentRefused(f"playbook {name!r} is not in the playbooks of {target.name}")
    base = Path(target.playbook_dir).resolve()
    path = (base / name).resolve()
    if path.parent != base or not path.is_file():
        raise ArgumentRefused(f"playbook {name!r} is not a file in {target.playbook_dir}")
    return path


def _search_path() -> str:
    """PATH with this interpreter's directory first: the ansible-playbook installed beside it
    (a virtualenv) is the one ansible-runner starts."""
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


def _known_host(target: SshHostTarget) -> str:
    where = target.host if target.port == 22 else f"[{target.host}]:{target.port}"
    return f"{where} {target.host_key}\n"


def _run(
    target: SshHostTarget,
    *,
    playbook: Path,
    extravars: dict[str, str],
    timeout: float,
    on_task: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[str, list[dict[str, Any]]]:
    """Run the playbook in a private directory (removed afterwards): (status, task events).
    ``on_task`` gets each task event as it happens (on ansible-runner's thread)."""
    import ansible_runner

    events: list[dict[str, Any]] = []

    def on_event(event: dict[str, Any]) -> bool:
        kind = str(event.get("event", ""))
        data = event.get("event_data") or {}
        status = _TASK_EVENTS.get(kind)
        if status == "ok" and data.get("res", {}).get("changed"):
            status = "changed"
        if status is not None and len(events) < MAX_TASK_EVENTS:
            entry = {
                "task": str(data.get("task", ""))[:200],
                "host": str(data.get("host", ""))[:200],
                "status": status,
            }
            events.append(entry)
            if on_task is not None:
                on_task({**entry, "changed": bool(data.get("res", {}).get("changed"))})
        return False  # keep nothing on disk beyond what the run needs

    with tempfile.TemporaryDirectory(prefix="remediator-ansible-") as private:
        home = Path(private)
        known = home / "known_hosts"
        known.write_text(_known_host(target))
        key_file = target.private_key_file
        if target.private_key_env is not None:
            secret = os.environ.get(target.private_key_env, "")
            if not secret:
                raise ValueError(f"environment variable {target.private_key_env} is not set")
            key_path = home / "id_key"
            fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secret if secret.endswith("\n") else secret + "\n")
            key_file = str(key_path)
        ssh_args = (
            f"-o UserKnownHostsFile={known} -o GlobalKnownHostsFile=/dev/null "
            "-o StrictHostKeyChecking=yes -o IdentitiesOnly=yes -o BatchMode=yes"
        )
        inventory = {
            "all": {
                "hosts": {
                    target.name: {
                        "ansible_host": target.host,
                        "ansible_port": target.port,
                        "ansible_user": target.user,
                        "ansible_ssh_private_key_file": key_file,
                        "ansible_ssh_common_args": ssh_args,
                        "ansible_python_interpreter": target.ansible_python,
                        "ansible_pipelining": True,
                        "ansible_ssh_transfer_method": "piped",
                    }
                }
            }
        }
        done = ansible_runner.run(
            private_data_dir=private,
            playbook=str(playbook),
            inventory=inventory,
            extravars=dict(extravars),
            limit=target.name,
            envvars={
                "PATH": _search_path(),
                "ANSIBLE_HOST_KEY_CHECKING": "True",
                "ANSIBLE_NOCOLOR": "1",
                "ANSIBLE_RETRY_FILES_ENABLED": "False",
                "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
                "ANSIBLE_CONNECTION_TIMEOUT": str(int(target.connect_timeout)),
            },
            event_handler=on_event,
            quiet=True,
            timeout=max(1, int(timeout)),
            suppress_env_files=True,
        )
        return str(done.status), events


def _from_thread(ctx: ActionContext) -> Callable[[dict[str, Any]], None] | None:
    """The context's ``progress`` as ansible-runner's thread may call it: each task event is
    handed to the event loop, in order (dropped once the loop is closed)."""
    progress = ctx.progress
    if progress is None:
        return None
    loop = asyncio.get_running_loop()

    def report(item: dict[str, Any]) -> None:
        with suppress(RuntimeError):  # the loop closed: nobody is listening any more
            loop.call_soon_threadsafe(progress, item)

    return report


class AnsiblePlaybookAction(HostAction):
    name = "ansible.playbook"
    step_type = AnsiblePlaybook
    errors = (OSError, ValueError, ArgumentRefused)

    def check(self, target: SshHostTarget, step: AnsiblePlaybook, labels: dict[str, str]) -> None:
        playbook_path(target, step.playbook)
        check_label_values(step.labels, labels, step.labels)

    def describe(self, target: SshHostTarget, step: AnsiblePlaybook) -> str:
        return f"run the playbook {step.playbook} against {target.name}"

    async def perform_in(self, ctx: ActionContext) -> Outcome:
        target, step = ctx.target, ctx.step
        assert isinstance(target, SshHostTarget) and isinstance(step, AnsiblePlaybook)
        path = playbook_path(target, step.playbook)
        extravars = check_label_values(step.labels, ctx.labels, step.labels)
        status, events = await asyncio.to_thread(
            _run,
            target,
            playbook=path,
            extravars=extravars,
            timeout=step.timeout - 1,
            on_task=_from_thread(ctx),
        )
        changed = sum(1 for e in events if e["status"] == "changed")
        bad = [e for e in events if e["status"] in ("failed", "unreachable")]
        data: dict[str, Any] = {"playbook": step.playbook, "status": status, "tasks": events}
        where = f"playbook {step.playbook} on {target.name}"
        if status != "successful" or bad:
            return False, f"{where}: {status}, {len(bad)} task(s) failed or unreachable", data
        return True, f"{where}: successful, {len(events)} task(s), {changed} changed", data


ACTIONS: tuple[BuiltinAction, ...] = (AnsiblePlaybookAction(),)
