"""Process health check: the pid in the pidfile is alive (``os.kill(pid, 0)``, not a zombie),
and, with ``leak`` set, its RSS does not grow steadily (remediator/checks/leak.py)."""

from __future__ import annotations

import asyncio
import os
import time
from typing import ClassVar

from remediator.checks.base import CheckResult, HealthCheck
from remediator.checks.leak import leak_watch, parse_vmrss
from remediator.clients import Clients
from remediator.config.targets import ProcessTarget, Target
from remediator.tech.process import read_pidfile

__all__ = ["CHECKS", "ProcessAliveCheck"]


def _probe(pidfile: str) -> tuple[bool, str]:
    pid = read_pidfile(pidfile)
    if pid is None:
        return False, "invalid pidfile"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False, f"process {pid} is not running"
    except PermissionError:
        pass  # it exists, owned by someone else
    except OSError as exc:
        return False, f"probing process {pid} failed: {type(exc).__name__}"
    if _is_zombie(pid):
        return False, f"process {pid} is a zombie"
    return True, f"process {pid} is running"


def _rss(pidfile: str) -> tuple[int, int] | None:
    """(pid, RSS bytes) of the process in the pidfile, None if unreadable."""
    pid = read_pidfile(pidfile)
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as handle:
            rss = parse_vmrss(handle.read(8192))
    except OSError:
        return None
    return None if rss is None else (pid, rss)


async def _leak(target: ProcessTarget, clients: Clients) -> str | None:
    """The leak finding of this sample, if the target watches for leaks."""
    if target.leak is None:
        return None
    sample = await asyncio.to_thread(_rss, target.pidfile)
    if sample is None:
        return None
    pid, rss = sample
    finding = leak_watch(clients).observe(
        target.name, pid=pid, at=time.monotonic(), rss=rss, spec=target.leak
    )
    return None if finding is None else f"process {pid} leaks memory: {finding}"


def _is_zombie(pid: int) -> bool:
    """Linux: state Z in /proc/<pid>/stat; False where /proc is unavailable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read(4096)
    except OSError:
        return False
    _, _, rest = stat.rpartition(b")")
    return rest[1:2] == b"Z"


class ProcessAliveCheck:
    """Healthy iff the pidfile names a live process (not pid 1, not ourselves)."""

    target_type: ClassVar[str] = "process"

    async def check(self, target: Target, clients: Clients, *, timeout: float) -> CheckResult:
        start = time.monotonic()
        if not isinstance(target, ProcessTarget):
            return CheckResult(False, "wrong target type", time.monotonic() - start)
        try:
            healthy, detail = await asyncio.wait_for(
                asyncio.to_thread(_probe, target.pidfile), timeout=timeout
            )
            finding = await _leak(target, clients) if healthy else None
            if finding is not None:
                healthy, detail = False, finding
        except TimeoutError:
            healthy, detail = False, f"probe timed out after {timeout}s"
        except Exception as exc:  # a check never raises
            healthy, detail = False, f"probe failed: {type(exc).__name__}"
        return CheckResult(healthy, detail, time.monotonic() - start)


CHECKS: tuple[HealthCheck, ...] = (ProcessAliveCheck(),)
