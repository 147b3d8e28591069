"""Per-token rate limiting of the management API: one token bucket per caller.

Each caller (the name of its API token) has a bucket holding up to ``burst`` requests, refilled at
``rate`` requests per second. A request takes one; an empty bucket answers 429 with
``Retry-After`` (whole seconds until the next request would be allowed). Time comes from an
injected monotonic clock, so tests drive it without sleeping.

The Alertmanager intake (``POST /alerts``) is never limited: refusing a webhook would only make
Alertmanager retry. Public endpoints (health, OpenAPI, metrics) are not limited either.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from remediator.errors import RateLimited

# Defaults until the configuration has an ``api.rate_limit`` section.
DEFAULT_RATE = 10.0  # requests per second, sustained
DEFAULT_BURST = 20  # requests at once
MAX_KEYS = 10_000  # buckets kept; full ones are dropped first beyond this


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets keyed by caller. Not thread-safe: used from the event loop only."""

    def __init__(
        self,
        rate: float = DEFAULT_RATE,
        burst: int = DEFAULT_BURST,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = MAX_KEYS,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: dict[str, _Bucket] = {}

    def _refilled(self, key: str, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._prune(now)
            bucket = _Bucket(tokens=float(self.burst), updated=now)
            self._buckets[key] = bucket
            return bucket
        elapsed = max(now - bucket.updated, 0.0)
        bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate)
        bucket.updated = now
        return bucket

    def acquire(self, key: str) -> float:
        """Take one request from ``key``'s bucket: 0.0 if allowed, else seconds to wait."""
        now = self.clock()
        bucket = self._refilled(key, now)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    def check(self, key: str) -> None:
        """Raise :class:`RateLimited` (429, with ``Retry-After``) when ``key`` is over its rate."""
        wait = self.acquire(key)
        if wait > 0:
            raise RateLimited(
                f"too many requests; at most {self.rate:g}/s (burst {self.burst}) per token",
                retry_after=max(1, math.ceil(wait)),
            )

    def _prune(self, now: float) -> None:
        """Forget buckets that have refilled completely (they behave like new ones)."""
        for key, bucket in list(self._buckets.items()):
            if bucket.tokens + (now - bucket.updated) * self.rate >= self.burst:
                del self._buckets[key]
        while len(self._buckets) >= self.max_keys:
            del self._buckets[next(iter(self._buckets))]
