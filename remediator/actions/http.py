"""HTTP recovery actions: call (an admin endpoint of the target), failover (to backup_url) and
failback (to base_url).

Requests go through the shared ``httpx2.AsyncClient`` (no redirects are followed, no cookies are
kept). Details carry the method, the path without its query string and the status, never a
header value, a body or a URL's userinfo.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

import httpx2
from pydantic import Field

from remediator.actions.base import BuiltinAction, GuardedAction, StepModel
from remediator.clients import Clients
from remediator.config.targets import HttpTarget
from remediator.tech.http import http_error, join_url

ACTIVE_URL = "active_url"  # target data: the URL http.failover / http.failback switched to


class HttpCall(StepModel):
    action: Literal["http.call"]
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    path: str = Field(pattern=r"^/")
    headers: dict[str, str] = Field(default_factory=dict)
    body: Any = None
    expected_status: list[int] = Field(default_factory=lambda: [200, 201, 202, 204])


class HttpFailover(StepModel):
    action: Literal["http.failover"]


class HttpFailback(StepModel):
    action: Literal["http.failback"]


__all__ = [
    "ACTIONS",
    "HttpCallAction",
    "HttpFailbackAction",
    "HttpFailoverAction",
]

Outcome = tuple[bool, str, dict[str, Any]]


def _show_path(path: str) -> str:
    return urlsplit(path).path or "/"


async def _status(
    client: httpx2.AsyncClient,
    method: str,
    url: str,
    *,
    headers: dict[str, str],
    timeout: float,
    body: Any = None,
) -> int:
    """Send one request and return its status without reading the response body."""
    kwargs: dict[str, Any] = {"headers": headers, "timeout": timeout}
    if body is not None:
        kwargs["json"] = body
    async with client.stream(method, url, **kwargs) as response:
        return response.status_code


async def _switch(
    target: HttpTarget, *, url: str, role: str, verb: str, timeout: float, clients: Clients
) -> Outcome:
    """Make ``url`` (the target's ``role``: backup or primary) the active URL if its health
    check answers one of the target's expected statuses."""
    status = await _status(
        clients.http(),
        "GET",
        join_url(url, target.health_path),
        headers=dict(target.headers),
        timeout=timeout,
    )
    where = f"{role} of {target.name}: GET {_show_path(target.health_path)} -> {status}"
    if status not in target.expected_status:
        return False, f"{where}; not {verb}", {"status": status}
    return True, f"{where}; now active", {ACTIVE_URL: url}


class _HttpAction(GuardedAction):
    target_types: ClassVar[frozenset[str]] = frozenset({"http"})
    target_class = HttpTarget
    errors = (httpx2.HTTPError, httpx2.InvalidURL, OSError, ValueError)

    def error_detail(self, exc: BaseException, target: Any, step: Any) -> str:
        return http_error(
            exc,
            (target.base_url, target.backup_url),
            {**target.headers, **getattr(step, "headers", {})},
        )


class HttpCallAction(_HttpAction):
    """``method`` base_url+``path`` with the target's then the step's headers and a JSON body."""

    name = "http.call"
    step_type = HttpCall

    def describe(self, target: HttpTarget, step: HttpCall) -> str:
        return f"{step.method} {_show_path(step.path)} on {target.name}"

    async def perform(self, target: HttpTarget, step: HttpCall, clients: Clients) -> Outcome:
        status = await _status(
            clients.http(),
            step.method,
            join_url(target.base_url, step.path),
            headers={**target.headers, **step.headers},
            timeout=step.timeout,
            body=step.body,
        )
        ok = status in step.expected_status
        detail = f"{step.method} {_show_path(step.path)} on {target.name} -> {status}"
        if not ok:
            detail += f" (expected {', '.join(map(str, step.expected_status))})"
        return ok, detail, {"status": status}


class _SwitchAction(_HttpAction):
    """A switch between the target's configured endpoints: the runner keeps the URL it made
    active (remediator/engine/runner.py)."""

    switches_endpoint = True  # it acts on the configured URLs, never on the active one

    def persisted(self, target: Any, data: dict[str, Any]) -> dict[str, Any]:
        return {ACTIVE_URL: data[ACTIVE_URL]} if ACTIVE_URL in data else {}


class HttpFailoverAction(_SwitchAction):
    """Check that backup_url answers health_path with an expected status, then switch to it."""

    name = "http.failover"
    step_type = HttpFailover

    def describe(self, target: HttpTarget, step: HttpFailover) -> str:
        if target.backup_url is None:
            return f"fail over {target.name} (but it has no backup_url)"
        return f"switch {target.name} to its backup_url after a health check"

    async def perform(self, target: HttpTarget, step: HttpFailover, clients: Clients) -> Outcome:
        if target.backup_url is None:
            return False, f"{target.name} has no backup_url to fail over to", {}
        return await _switch(
            target, url=target.backup_url, role="backup", verb="failing over",
            timeout=step.timeout, clients=clients,
        )  # fmt: skip


class HttpFailbackAction(_SwitchAction):
    """Check that base_url (the primary) answers health_path with an expected status, then
    switch back to it."""

    name = "http.failback"
    step_type = HttpFailback

    def describe(self, target: HttpTarget, step: HttpFailback) -> str:
        return f"switch {target.name} back to its base_url after a health check"

    async def perform(self, target: HttpTarget, step: HttpFailback, clients: Clients) -> Outcome:
        return await _switch(
            target, url=target.base_url, role="primary", verb="failing back",
            timeout=step.timeout, clients=clients,
        )  # fmt: skip


ACTIONS: tuple[BuiltinAction, ...] = (HttpCallAction(), HttpFailoverAction(), HttpFailbackAction())
