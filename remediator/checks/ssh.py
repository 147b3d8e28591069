"""Host health check: the ``ssh_host`` target is reachable (its pinned key, a login, a command
run), each of its ``health_units`` is active (``systemctl is-active -- UNIT...``) and, with
``leak`` set, the main process of ``leak.unit`` does not leak memory (its ``VmRSS`` read with
``cat /proc/PID/status``, judged by remediator/checks/leak.py)."""

from __future__ import annotations

import asyncio
import time
from typing import ClassVar

from remediator.checks.base import CheckResult, HealthCheck
from remediator.checks.leak import leak_watch, parse_vmrss
from remediator.clients import Clients
from remediator.config.targets import SshHostTarget, Target
from remediator.tech.ssh import HOST_ERRORS, connections, ssh_error, unit_state

__all__ = ["CHECKS", "SshHostCheck"]


async def _probe(target: SshHostTarget, clients: Clients) -> tuple[bool, str]:
    ssh = connections(clients)
    if not target.health_units:
        done = await ssh.run(target, ("true",))
        if not done.ok:
            return False, f"unreachable: exit {done.exit_status}"
        return await _leak(target, clients, "reachable")
    done = await ssh.run(target, (target.systemctl, "is-active", "--", *target.health_units))
    states = done.stdout.split()
    if done.ok:
        return await _leak(target, clients, f"reachable; {', '.join(target.health_units)} active")
    named = ", ".join(f"{u} {s}" for u, s in zip(target.health_units, states, strict=False))
    return False, f"reachable; not all units active: {named or done.exit_status}"


async def _leak(target: SshHostTarget, clients: Clients, healthy: str) -> tuple[bool, str]:
    """``(True, healthy)`` unless the main process of ``leak.unit`` leaks memory."""
    if target.leak is None or target.leak.unit is None:
        return True, healthy
    unit = target.leak.unit
    pid = (await unit_state(target, unit, clients=clients)).get("MainPID", 0)
    if not isinstance(pid, int) or pid <= 1:
        return True, healthy
    done = await connections(clients).run(target, ("cat", "--", f"/proc/{pid}/status"))
    rss = parse_vmrss(done.stdout) if done.ok else None
    if rss is None:
        return True, healthy
    finding = leak_watch(clients).observe(
        f"{target.name}/{unit}", pid=pid, at=time.monotonic(), rss=rss, spec=target.leak
    )
    if finding is None:
        return True, healthy
    return False, f"{unit} (pid {pid}) leaks memory: {finding}"


class SshHostCheck:
    """Healthy iff the host answers over SSH and every unit in ``health_units`` is active."""

    target_type: ClassVar[str] = "ssh_host"

    async def check(self, target: Target, clients: Clients, *, timeout: float) -> CheckResult:
        start = time.monotonic()
        if not isinstance(target, SshHostTarget):
            return CheckResult(False, "wrong target type", time.monotonic() - start)
        try:
            healthy, detail = await asyncio.wait_for(_probe(target, clients), timeout=timeout)
        except TimeoutError:
            await connections(clients).drop(target)
            healthy, detail = False, f"unreachable: no answer within {timeout:g}s"
        except HOST_ERRORS as exc:
            healthy, detail = False, f"unreachable: {ssh_error(exc)}"
        except Exception as exc:  # a check never raises
            healthy, detail = False, f"probe failed: {type(exc).__name__}"
        return CheckResult(healthy, detail, time.monotonic() - start)


CHECKS: tuple[HealthCheck, ...] = (SshHostCheck(),)
