"""HTTP recovery actions: call (an admin endpoint of the target), failover (to backup_url) and
failback (to base_url).

Requests go through the shared ``httpx2.AsyncClient`` (no redirects are followed, no cookies are
kept). Details carry the method, the path without its query string and the status, never a
header value, a body or a URL's userinfo.
"""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx2

from remediator import steps
from remediator.actions.base import Action, GuardedAction
from remediator.clients import Clients
from remediator.targets import HttpTarget

__all__ = [
    "ACTIONS",
    "HttpCallAction",
    "HttpFailbackAction",
    "HttpFailoverAction",
    "http_error",
    "join_url",
]

Outcome = tuple[bool, str, dict[str, Any]]


def join_url(base_url: str, path: str) -> str:
    """``base_url`` (its own path kept) + ``path`` (which starts with ``/``)."""
    return base_url.rstrip("/") + path


def http_error(
    exc: BaseException, urls: tuple[str | None, ...], headers: dict[str, str] | None = None
) -> str:
    """A short one-line description of ``exc`` without the URLs or header values."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if "header" in text.lower() or isinstance(exc, UnicodeError):
        text = "invalid header (name/value hidden)"
    secrets = [url.rstrip("/") for url in urls if url]
    for value in (headers or {}).values():
        secrets += [value, repr(value.encode("utf-8", "replace"))[2:-1]]
    for secret in sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True):
        text = text.replace(secret, "***")
    name = type(exc).__name__
    return f"{name}: {text[:200]}" if text else name


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
    return True, f"{where}; now active", {"active_url": url}


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
    step_type = steps.HttpCall

    def describe(self, target: HttpTarget, step: steps.HttpCall) -> str:
        return f"{step.method} {_show_path(step.path)} on {target.name}"

    async def perform(self, target: HttpTarget, step: steps.HttpCall, clients: Clients) -> Outcome:
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


class HttpFailoverAction(_HttpAction):
    """Check that backup_url answers health_path with an expected status, then switch to it."""

    name = "http.failover"
    step_type = steps.HttpFailover

    def describe(self, target: HttpTarget, step: steps.HttpFailover) -> str:
        if target.backup_url is None:
            return f"fail over {target.name} (but it has no backup_url)"
        return f"switch {target.name} to its backup_url after a health check"

    async def perform(
        self, target: HttpTarget, step: steps.HttpFailover, clients: Clients
    ) -> Outcome:
        if target.backup_url is None:
            return False, f"{target.name} has no backup_url to fail over to", {}
        return await _switch(
            target, url=target.backup_url, role="backup", verb="failing over",
            timeout=step.timeout, clients=clients,
        )  # fmt: skip


class HttpFailbackAction(_HttpAction):
    """Check that base_url (the primary) answers health_path with an expected status, then
    switch back to it."""

    name = "http.failback"
    step_type = steps.HttpFailback

    def describe(self, target: HttpTarget, step: steps.HttpFailback) -> str:
        return f"switch {target.name} back to its base_url after a health check"

    async def perform(
        self, target: HttpTarget, step: steps.HttpFailback, clients: Clients
    ) -> Outcome:
        return await _switch(
            target, url=target.base_url, role="primary", verb="failing back",
            timeout=step.timeout, clients=clients,
        )  # fmt: skip


ACTIONS: tuple[Action, ...] = (HttpCallAction(), HttpFailoverAction(), HttpFailbackAction())
