"""Exponential backoff with full jitter (the seed's formula).

``delay = min(initial_delay * multiplier ** attempts, max_delay)``; the wait is drawn uniformly
from ``[0, delay]`` so that retries of many targets do not move in lockstep.
"""

from __future__ import annotations

import random
from typing import Protocol

from remediator.config.playbooks import RetrySpec


class Uniform(Protocol):
    def uniform(self, a: float, b: float) -> float: ...


def ceiling(spec: RetrySpec, attempts: int) -> float:
    """The upper bound of the wait before retry number ``attempts`` (0-based)."""
    if attempts < 0:
        raise ValueError("attempts must be >= 0")
    # Cap the exponent's growth before it overflows a float.
    try:
        raw = spec.initial_delay * spec.multiplier**attempts
    except OverflowError:
        return spec.max_delay
    return min(raw, spec.max_delay)


def delay(spec: RetrySpec, attempts: int, rng: Uniform | None = None) -> float:
    """A full-jitter wait in ``[0, ceiling(spec, attempts)]``."""
    top = ceiling(spec, attempts)
    return (rng or random).uniform(0.0, top)
