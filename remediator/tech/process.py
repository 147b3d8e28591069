"""Process plumbing shared by the process actions and health checks: pidfiles and signals."""

from __future__ import annotations

import os
import signal

_MAX_PIDFILE_BYTES = 64


def read_pidfile(path: str) -> int | None:
    """The pid in ``path``: an integer > 1 that is not this process, else None."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(_MAX_PIDFILE_BYTES + 1)
    except OSError:
        return None
    if len(raw) > _MAX_PIDFILE_BYTES:
        return None
    text = raw.decode("ascii", "replace").strip()
    if not text.isdigit():
        return None
    pid = int(text)
    if pid <= 1 or pid == os.getpid():
        return None
    return pid


def parse_signal(name: str) -> signal.Signals | None:
    """``SIGHUP``/``HUP`` (any case) -> ``signal.SIGHUP``; None if unknown."""
    upper = name.strip().upper()
    if not upper.startswith("SIG"):
        upper = "SIG" + upper
    return signal.Signals.__members__.get(upper)
