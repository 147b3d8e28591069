"""One remediator in the test process: the app with real actions, a fake clock and generous
rate limits, driven through Starlette's TestClient (its event loop runs store calls too)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.testclient import TestClient

from remediator.clock import FakeClock
from remediator.config.auth import Authenticator
from remediator.config.model import Config
from remediator.http.app import create_app
from remediator.http.ratelimit import RateLimiter
from remediator.plugins import Plugins
from remediator.runtime import Runtime


class InProcess:
    def __init__(self, client: TestClient, rt: Runtime, headers: Callable[[str], dict[str, str]]):
        self.client, self.rt, self.headers = client, rt, headers

    def call(self, method: str, path: str, role: str = "admin", **kw: Any) -> Any:
        """``method path`` (the full path) with the token of ``role``."""
        return self.client.request(method, path, headers=self.headers(role), **kw)

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``await fn(*args)`` on the app's event loop."""
        assert self.client.portal is not None
        return self.client.portal.call(fn, *args)


R = TypeVar("R", bound=InProcess)


def start(
    stack: contextlib.ExitStack,
    cfg: Config,
    *,
    authenticator: Authenticator,
    headers: Callable[[str], dict[str, str]],
    kind: type[R],
) -> R:
    """Start a remediator on ``cfg`` (as a ``kind``); ``stack`` stops it."""
    holder: list[Runtime] = []
    app = create_app(
        cfg, authenticator=authenticator, clock=FakeClock(), plugins=Plugins(),
        on_runtime=holder.append,
    )  # fmt: skip
    client = stack.enter_context(TestClient(app, raise_server_exceptions=False))
    holder[0].limiter = RateLimiter(rate=1000, burst=1000)
    return kind(client, holder[0], headers)
