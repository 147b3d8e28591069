"""The throttle of failed authentication (remediator/http/throttle.py), on an injected clock:
the sliding window, the keys, the bound on memory, and the app forgetting a throttled address
once the window has passed."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from starlette.testclient import TestClient

from remediator.clock import FakeClock
from remediator.config import model as config_mod
from remediator.config.auth import Authenticator, Principal
from remediator.http.app import create_app
from remediator.http.throttle import AuthThrottle, address_key
from remediator.plugins import Plugins

EVENTS = "/api/v1/recovery/events"
WRONG = {"Authorization": "Bearer not-a-token-not-a-token"}


def test_an_address_is_throttled_after_its_failures_in_the_window_until_the_first_ages_out() -> (
    None
):
    clock = FakeClock()
    throttle = AuthThrottle(failures=3, window=60, clock=clock.monotonic)
    for _ in range(2):
        throttle.failed("192.0.2.7")
        clock.advance(10)
    assert throttle.wait("192.0.2.7") == 0
    throttle.failed("192.0.2.7")  # three within 20s
    assert throttle.wait("192.0.2.7") == 40  # the first failure is 20s old
    assert throttle.wait("192.0.2.8") == 0
    clock.advance(39.5)
    assert throttle.wait("192.0.2.7") == 1
    clock.advance(0.5)
    assert throttle.wait("192.0.2.7") == 0
    # One more failure: three within the window again, until the second one ages out.
    throttle.failed("192.0.2.7")
    assert throttle.wait("192.0.2.7") == 10


def test_ipv6_addresses_share_their_64_and_mapped_ipv4_is_ipv4() -> None:
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:ffff::9")
    assert address_key("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert address_key("192.0.2.1") == "192.0.2.1"
    assert address_key(None) == "unknown"
    assert address_key("testclient") == "testclient"


def test_memory_is_bounded_and_stale_addresses_go_first() -> None:
    clock = FakeClock()
    throttle = AuthThrottle(failures=1, window=60, clock=clock.monotonic, max_keys=3)
    throttle.failed("192.0.2.1")
    clock.advance(61)
    throttle.failed("192.0.2.2")
    throttle.failed("192.0.2.3")
    throttle.failed("192.0.2.4")  # full: the stale 192.0.2.1 goes
    assert [throttle.wait(f"192.0.2.{i}") > 0 for i in (1, 2, 3, 4)] == [False, True, True, True]
    throttle.failed("192.0.2.5")  # full of live ones: the oldest goes
    assert [throttle.wait(f"192.0.2.{i}") > 0 for i in (2, 3, 4, 5)] == [False, True, True, True]


def test_the_app_throttles_on_its_injected_clock_and_forgets_after_the_window(
    tmp_path: Path, tokens: dict[str, str], headers: Callable[[str], dict[str, str]]
) -> None:
    cfg = config_mod.parse(
        {
            "store": {"url": f"sqlite:///{tmp_path}/throttle.db"},
            "health": {"enabled": False},
            "auth": {"throttle": {"failures": 2, "window": "5m"}},
        },
        env={},
    )
    clock = FakeClock()
    authenticator = Authenticator(
        [(Principal(role, role), token) for role, token in tokens.items()]  # type: ignore[arg-type]
    )
    app = create_app(cfg, authenticator=authenticator, clock=clock, plugins=Plugins())
    with contextlib.ExitStack() as stack:
        client = stack.enter_context(TestClient(app, raise_server_exceptions=False))
        assert [client.get(EVENTS, headers=WRONG).status_code for _ in range(2)] == [401, 401]
        refused = client.get(EVENTS, headers=headers("viewer"))
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "300"
        clock.advance(299)
        assert client.get(EVENTS, headers=WRONG).headers["Retry-After"] == "1"
        clock.advance(1)
        assert client.get(EVENTS, headers=headers("viewer")).status_code == 200
        assert client.get(EVENTS, headers=WRONG).status_code == 401
