"""Polling for tests that watch a real process or service: one helper, bounded in time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    check: Callable[[], T | None],
    *,
    timeout: float = 30.0,
    what: str = "condition",
    every: float = 0.1,
) -> T:
    """Call ``check`` every ``every`` seconds until it returns something truthy, and return that.

    Raises ``AssertionError`` naming ``what`` once ``timeout`` seconds have passed.
    """
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)
