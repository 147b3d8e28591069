"""A local stand-in for the Slack Web API and incoming webhooks, served on 127.0.0.1 for tests.

It implements the part of Slack's contract the notifier uses, as slack-sdk speaks it:

* ``POST /api/auth.test``, ``/api/chat.postMessage``, ``/api/chat.update``: JSON bodies (what
  ``AsyncWebClient`` sends), form-encoded bodies and query parameters are all accepted.
  The token comes from ``Authorization: Bearer`` (or a ``token`` parameter): missing ->
  ``not_authed``, wrong -> ``invalid_auth``. Channels starting with ``#`` or ``C`` exist (a
  ``#name`` gets a stable ``C…`` id), others are ``channel_not_found``. Every posted message
  gets a unique, increasing ``ts``; ``chat.update`` needs an existing channel+ts, else
  ``message_not_found``. Block Kit limits are checked (``invalid_blocks``), as are ``no_text``
  and ``msg_too_long``. Errors are HTTP 200 with ``{"ok": false, "error": ...}``, as on Slack.
* ``usergroups.users.list`` (GET or POST, ``usergroup=S…``): the members of a user group set
  with :attr:`SlackAPI.usergroups`; an unknown group is ``no_such_subteam``.
* ``POST /services/T…/B…/<secret>`` (:attr:`SlackAPI.webhook_url`): an incoming webhook that
  answers ``ok`` as text, or an HTTP 4xx with the error as text.

Knobs: :meth:`SlackAPI.fail_next` (HTTP 429 + ``Retry-After``), :meth:`SlackAPI.error_next`
(HTTP 200 ``ok: false``), :meth:`SlackAPI.down` / :meth:`SlackAPI.up` (HTTP 503 with an HTML
body, as a load balancer would answer; slack-sdk raises ``SlackApiError`` with status 503).

Use it as a context manager (``with SlackAPI() as api: ...``) or through the ``slack_api``
fixture below (register this module in ``pytest_plugins`` to share it).
"""

from __future__ import annotations

import json
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final
from urllib.parse import parse_qsl

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

__all__ = ["Call", "SlackAPI", "slack_api"]

WEBHOOK_CHANNEL: Final = "C0WEBHOOK"
MAX_TEXT: Final = 40_000


@dataclass(frozen=True, slots=True)
class Call:
    """One accepted call that posted or changed a message."""

    method: str  # "chat.postMessage", "chat.update" or "webhook"
    channel: str  # the channel id (a "#name" is resolved to its C… id)
    ts: str
    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)
    thread_ts: str | None = None


@dataclass(frozen=True, slots=True)
class _Fault:
    status: int
    error: str
    retry_after: float | None = None


class SlackAPI:
    """The stand-in server: ``start()``/``stop()`` or ``with``; knobs are thread-safe."""

    def __init__(self, token: str | None = None) -> None:
        self.token = token or f"xoxb-test-{secrets.token_hex(12)}"
        self.messages: list[Call] = []
        self.requests: list[tuple[str, int]] = []  # (method or "webhook", HTTP status), all calls
        self.usergroups: dict[str, list[str]] = {}  # user group id -> member user ids
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []
        self._down = False
        self._ids: dict[str, str] = {}
        self._posted: dict[tuple[str, str], Call] = {}
        self._seconds = int(time.time())
        self._serial = 0
        self._hook_secret = secrets.token_hex(12)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.url = f"{self.base}/api/"
        self.webhook_url = f"{self.base}/services/T0000TEST/B0000TEST/{self._hook_secret}"
        self.app = Starlette(
            routes=[
                Route("/api/{method}", self._api, methods=["GET", "POST"]),
                Route("/services/{path:path}", self._webhook, methods=["POST"]),
            ]
        )
        config = uvicorn.Config(
            self.app, lifespan="off", log_level="warning", access_log=False, ws="none", http="h11"
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    # ---- lifecycle

    def start(self, timeout: float = 10.0) -> SlackAPI:
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the Slack stand-in did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        self._sock.close()

    def __enter__(self) -> SlackAPI:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ---- knobs

    def fail_next(self, n: int, status: int = 429, retry_after: float | None = 1) -> None:
        """Answer the next ``n`` calls with ``status`` (+ ``Retry-After``), ``ratelimited``."""
        error = "ratelimited" if status == 429 else "internal_error"
        with self._lock:
            self._faults.extend(_Fault(status, error, retry_after) for _ in range(n))

    def error_next(self, n: int, error: str = "channel_not_found") -> None:
        """Answer the next ``n`` calls with HTTP 200 ``{"ok": false, "error": error}``."""
        with self._lock:
            self._faults.extend(_Fault(200, error) for _ in range(n))

    def down(self) -> None:
        """Answer every call with HTTP 503 (an HTML body, not Slack JSON) until :meth:`up`."""
        with self._lock:
            self._down = True

    def up(self) -> None:
        with self._lock:
            self._down = False

    def channel_id(self, name: str) -> str:
        """The id this stand-in gives a ``#name`` (ids are returned unchanged)."""
        with self._lock:
            return self._resolve(name)

    def in_channel(self, channel: str) -> list[Call]:
        cid = self.channel_id(channel)
        with self._lock:
            return [m for m in self.messages if m.channel == cid]

    # ---- the contract

    def _resolve(self, name: str) -> str:
        if name.startswith("C"):
            return name
        if name not in self._ids:
            self._ids[name] = f"C{0x0123ABCD + len(self._ids):08X}"
        return self._ids[name]

    def _next_ts(self) -> str:
        self._serial += 1
        return f"{self._seconds}.{self._serial:06d}"

    def _fault(self, method: str) -> Response | None:
        with self._lock:
            if self._down:
                self.requests.append((method, 503))
                return HTMLResponse("<html><body>503 Service Unavailable</body></html>", 503)
            if not self._faults:
                return None
            fault = self._faults.pop(0)
            self.requests.append((method, fault.status))
        headers = {}
        if fault.retry_after is not None:
            ra = fault.retry_after
            headers["Retry-After"] = str(int(ra)) if float(ra).is_integer() else str(ra)
        if method == "webhook" and fault.status != 429:
            status = fault.status if fault.status != 200 else _webhook_status(fault.error)
            return PlainTextResponse(fault.error, status, headers=headers)
        return JSONResponse({"ok": False, "error": fault.error}, fault.status, headers=headers)

    async def _api(self, request: Request) -> Response:
        method = request.path_params["method"]
        fault = self._fault(method)
        if fault is not None:
            return fault
        try:
            params = await _params(request)
        except ValueError:
            return self._answer(method, {"ok": False, "error": "invalid_json"})
        auth = request.headers.get("authorization", "")
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""
        token = token or str(params.get("token", ""))
        if not token:
            return self._answer(method, {"ok": False, "error": "not_authed"})
        if not secrets.compare_digest(token, self.token):
            return self._answer(method, {"ok": False, "error": "invalid_auth"})
        if method == "auth.test":
            body = {"ok": True, "url": f"{self.base}/", "team": "Test", "user": "remediator"}
            return self._answer(method, {**body, "team_id": "T0000TEST", "user_id": "U0000TEST"})
        if method == "usergroups.users.list":
            group = str(params.get("usergroup", ""))
            with self._lock:
                members = self.usergroups.get(group)
            if members is None:
                return self._answer(method, {"ok": False, "error": "no_such_subteam"})
            return self._answer(method, {"ok": True, "users": list(members)})
        if method not in ("chat.postMessage", "chat.update"):
            return self._answer(method, {"ok": False, "error": "unknown_method"}, 404)
        with self._lock:
            return self._answer(method, self._message(method, params))

    def _message(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        channel = str(params.get("channel", ""))
        if not channel.startswith(("#", "C")):
            return {"ok": False, "error": "channel_not_found"}
        text = str(params.get("text", "") or "")
        blocks = params.get("blocks") or []
        if not text and not blocks:
            return {"ok": False, "error": "no_text"}
        if len(text) > MAX_TEXT:
            return {"ok": False, "error": "msg_too_long"}
        problem = block_problem(blocks)
        if problem:
            return {"ok": False, "error": "invalid_blocks", "errors": [problem]}
        cid = self._resolve(channel)
        thread_ts = params.get("thread_ts")
        if method == "chat.update":
            ts = str(params.get("ts", ""))
            if (cid, ts) not in self._posted:
                return {"ok": False, "error": "message_not_found"}
            thread_ts = self._posted[(cid, ts)].thread_ts
        else:
            ts = self._next_ts()
        call = Call(
            method, cid, ts, text, list(blocks), None if thread_ts is None else str(thread_ts)
        )
        self._posted[(cid, ts)] = call
        self.messages.append(call)
        message = {"type": "message", "text": text, "blocks": blocks, "ts": ts, "bot_id": "B0TEST"}
        if call.thread_ts is not None:
            message["thread_ts"] = call.thread_ts
        return {"ok": True, "channel": cid, "ts": ts, "message": message}

    def _answer(self, method: str, body: dict[str, Any], status: int = 200) -> Response:
        # Called with or without the lock held: list.append is atomic.
        self.requests.append((method, status))
        return JSONResponse(body, status)

    async def _webhook(self, request: Request) -> Response:
        fault = self._fault("webhook")
        if fault is not None:
            return fault
        if request.path_params["path"] != f"T0000TEST/B0000TEST/{self._hook_secret}":
            return self._text("no_service", 404)
        try:
            body = json.loads(await request.body())
        except ValueError:
            return self._text("invalid_payload", 400)
        if not isinstance(body, dict) or not (body.get("text") or body.get("blocks")):
            return self._text("no_text", 400)
        blocks = body.get("blocks") or []
        if block_problem(blocks):
            return self._text("invalid_blocks", 400)
        with self._lock:
            call = Call(
                "webhook", WEBHOOK_CHANNEL, self._next_ts(), str(body.get("text", "")), blocks
            )
            self.messages.append(call)
        return self._text("ok", 200)

    def _text(self, text: str, status: int) -> Response:
        self.requests.append(("webhook", status))
        return HTMLResponse(text, status)


def _webhook_status(error: str) -> int:
    return {"channel_not_found": 404, "channel_is_archived": 410, "invalid_token": 403}.get(
        error, 400
    )


async def _params(request: Request) -> dict[str, Any]:
    """Query, JSON and form parameters merged (``blocks`` decoded when sent as a string)."""
    params: dict[str, Any] = dict(request.query_params)
    ctype = request.headers.get("content-type", "")
    raw = await request.body()
    if ctype.startswith("application/json") and raw:
        body = json.loads(raw)
        if not isinstance(body, dict):
            raise ValueError("not an object")
        params.update(body)
    elif ctype.startswith("application/x-www-form-urlencoded"):
        params.update(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
    if isinstance(params.get("blocks"), str):
        params["blocks"] = json.loads(params["blocks"])
    return params


def block_problem(blocks: Any) -> str:
    """The first Block Kit limit a message breaks, or ``""`` (a subset of Slack's checks)."""
    if not isinstance(blocks, list) or len(blocks) > 50:
        return "blocks must be a list of at most 50"
    for i, block in enumerate(blocks):
        if not isinstance(block, dict) or "type" not in block:
            return f"blocks[{i}]: not a block"
        kind = block["type"]
        text = block.get("text")
        if kind == "header" and len(str((text or {}).get("text", ""))) > 150:
            return f"blocks[{i}]: header text longer than 150"
        if kind == "section":
            if text is not None and len(str(text.get("text", ""))) > 3000:
                return f"blocks[{i}]: section text longer than 3000"
            fields = block.get("fields") or []
            if len(fields) > 10 or any(len(str(f.get("text", ""))) > 2000 for f in fields):
                return f"blocks[{i}]: more than 10 fields or a field longer than 2000"
        if kind == "context" and len(block.get("elements") or []) > 10:
            return f"blocks[{i}]: more than 10 context elements"
    return ""


@pytest.fixture
def slack_api() -> Iterator[SlackAPI]:
    """A running stand-in, stopped after the test."""
    with SlackAPI() as api:
        yield api
