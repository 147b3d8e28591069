"""Memory leak detection: a process whose RSS grows steadily over a window is flagged.

Pure logic over samples the health checks take (``process`` targets read ``VmRSS`` from
``/proc/PID/status``; ``ssh_host`` targets read it over SSH for the main pid of the ``leak``
unit). A process is *leaking* when, within the target's ``leak.window``:

* the samples span the whole window (the oldest kept is the newest taken at or before its
  start) and there are at least ``min_samples`` of them,
* no sample is lower than the one before by more than ``tolerance`` (a ratio, 0.02 = 2 %), and
* the last is at least ``min_growth`` bytes above the first.

A new pid (the process was restarted) starts a new history. The samples live in a
:class:`LeakWatch` kept by the runtime's :class:`~remediator.clients.Clients`
(``clients.shared``), one per remediator, never in a module global.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from itertools import pairwise

from remediator.clients import Clients
from remediator.config.targets import LeakCheck

__all__ = ["LeakWatch", "leak_watch", "parse_vmrss"]


def parse_vmrss(status: str) -> int | None:
    """Bytes of ``VmRSS`` in the text of ``/proc/PID/status`` (None if absent)."""
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1]) * 1024
    return None


@dataclass
class _History:
    pid: int
    samples: deque[tuple[float, int]] = field(default_factory=deque)


class LeakWatch:
    """RSS samples per target and pid; :meth:`observe` says whether the process is leaking."""

    def __init__(self) -> None:
        self._histories: dict[str, _History] = {}

    def observe(self, key: str, *, pid: int, at: float, rss: int, spec: LeakCheck) -> str | None:
        """Record a sample; a one-line finding if the process leaks, else None."""
        history = self._histories.get(key)
        if history is None or history.pid != pid:
            history = self._histories[key] = _History(pid)
        history.samples.append((at, rss))
        # Keep one sample at or before the window's start, so the samples can span it.
        while len(history.samples) > 1 and history.samples[1][0] <= at - spec.window:
            history.samples.popleft()
        return leaking(list(history.samples), spec)

    def forget(self, key: str) -> None:
        self._histories.pop(key, None)

    async def aclose(self) -> None:
        self._histories.clear()


def leaking(samples: list[tuple[float, int]], spec: LeakCheck) -> str | None:
    """The finding for samples (oldest first) of one pid within the window, or None."""
    if len(samples) < spec.min_samples:
        return None
    span = samples[-1][0] - samples[0][0]
    if span < spec.window:
        return None
    for (_, before), (_, after) in pairwise(samples):
        if after < before * (1 - spec.tolerance):
            return None
    growth = samples[-1][1] - samples[0][1]
    if growth < spec.min_growth:
        return None
    return (
        f"RSS grew steadily by {growth // 1024} KiB in {span:.0f}s "
        f"({samples[0][1] // 1024} -> {samples[-1][1] // 1024} KiB, {len(samples)} samples)"
    )


def leak_watch(clients: Clients) -> LeakWatch:
    """The runtime's leak watch (kept by ``clients``)."""
    return clients.shared("leaks", LeakWatch)
