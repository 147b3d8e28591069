"""Throttling of failed authentication, per client address.

An address that presented wrong credentials ``failures`` times within ``window`` seconds is
throttled: until the earliest of those failures is ``window`` old, a request of it that carries
credentials is answered 429 with ``Retry-After``, whichever token it carries, so that guessing a
viewer or admin token from one address goes no faster than ``failures`` guesses per ``window``.
The one exception is a valid ``alertmanager`` token: Alertmanager takes a 429 as final and would
drop the alerts, so it is never throttled, even from a throttled address (its role may only post
alerts). Requests without credentials guess nothing: they never count.

Addresses are keyed as they are for IPv4, and by their /64 for IPv6 (one host usually holds a
whole /64). Behind a reverse proxy every client has the proxy's address (uvicorn takes
``X-Forwarded-For`` only from the addresses in ``FORWARDED_ALLOW_IPS``, 127.0.0.1 by default).
Time is the injected clock's monotonic reading, so tests drive it without sleeping.
"""

from __future__ import annotations

import ipaddress
import math
from collections import deque
from collections.abc import Callable

MAX_KEYS = (
    10_000  # addresses remembered; those whose failures are all older than the window go first
)


def address_key(host: str | None) -> str:
    """The throttling key of a client address: itself for IPv4 (an IPv4-mapped IPv6 address
    included), its /64 for IPv6, the text as given for anything else."""
    if not host:
        return "unknown"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host[:256]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)


class AuthThrottle:
    """The last ``failures`` failure times of each address. Not thread-safe: used from the event
    loop only."""

    def __init__(
        self,
        *,
        failures: int,
        window: float,
        clock: Callable[[], float],
        max_keys: int = MAX_KEYS,
    ) -> None:
        if failures < 1 or window <= 0:
            raise ValueError("failures must be at least 1 and window positive")
        self.failures = failures
        self.window = window
        self.clock = clock
        self.max_keys = max_keys
        self._seen: dict[str, deque[float]] = {}

    def wait(self, host: str | None) -> int:
        """Whole seconds until ``host`` may present credentials again; 0 when it may now."""
        if not self._seen:
            return 0
        times = self._seen.get(address_key(host))
        if times is None or len(times) < self.failures:
            return 0
        left = times[0] + self.window - self.clock()
        return max(1, math.ceil(left)) if left > 0 else 0

    def failed(self, host: str | None) -> None:
        """Record one failed authentication of ``host``."""
        key = address_key(host)
        times = self._seen.get(key)
        now = self.clock()
        if times is None:
            if len(self._seen) >= self.max_keys:
                self._prune(now)
            times = self._seen[key] = deque(maxlen=self.failures)
        times.append(now)

    def _prune(self, now: float) -> None:
        """Forget addresses whose failures are all older than the window, then the oldest."""
        for key, times in list(self._seen.items()):
            if times[-1] + self.window <= now:
                del self._seen[key]
        while len(self._seen) >= self.max_keys:
            del self._seen[next(iter(self._seen))]
