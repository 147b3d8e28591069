"""Host health check: the ``ssh_host`` target is reachable (its pinned key, a login, a command
run) and each of its ``health_units`` is active (``systemctl is-active -- UNIT...``)."""

from __future__ import annotations

import asyncio
import time
from typing import ClassVar

from remediator.checks.base import CheckResult, HealthCheck
from remediator.clients import Clients
from remediator.config.targets import SshHostTarget, Target
from remediator.tech.ssh import HOST_ERRORS, connections, ssh_error

__all__ = ["CHECKS", "SshHostCheck"]


async def _probe(target: SshHostTarget, clients: Clients) -> tuple[bool, str]:
    ssh = connections(clients)
    if not target.health_units:
        done = await ssh.run(target, ("true",))
        return done.ok, "reachable" if done.ok else f"unreachable: exit {done.exit_status}"
    done = await ssh.run(target, (target.systemctl, "is-active", "--", *target.health_units))
    states = done.stdout.split()
    if done.ok:
        return True, f"reachable; {', '.join(target.health_units)} active"
    named = ", ".join(f"{u} {s}" for u, s in zip(target.health_units, states, strict=False))
    return False, f"reachable; not all units active: {named or done.exit_status}"


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
