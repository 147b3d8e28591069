"""Hostile ``traceparent`` and ``tracestate`` headers at the real HTTP intake (raw bytes on a
socket, so nothing in a client library cleans them): garbage, 10 kB, unknown versions,
all-zero ids, uppercase hex, control characters, non-ASCII bytes, many headers, malformed or
oversized ``tracestate``. The webhook answers 200 as usual, stores the alert, keeps only a
canonical trace context (never the hostile one; NULL with tracing off), nothing raises, and the
worker still decides every alert.

A control character in a header value is refused by the HTTP parser (httptools: 400) before
remediator sees the request, as any malformed framing; those values are also handed to the
ASGI webhook directly (what a more lenient server would pass on): answered 200 all the same."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from remediator.config import model as config_mod
from remediator.config.auth import Authenticator
from remediator.http.app import create_app
from remediator.runtime import Runtime
from tests.reliability.conftest import Figures, Serve
from tests.reliability.support import FastServed, alert, db_rows, payload
from tests.waiting import wait_for

ALERTS = "/api/v1/recovery/alerts"
SPAN = "00f067aa0ba902b7"
CANONICAL = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}( \S.*)?")


FRAMING = frozenset({"control character", "delete character", "tracestate control"})


def trace_id(index: int) -> str:
    return f"{index + 1:032x}"


# (name, trace id the headers name, header lines, is the traceparent valid (continued)?)
def cases() -> list[tuple[str, str, list[bytes], bool]]:
    found: list[tuple[str, str, list[bytes], bool]] = []

    def add(name: str, lines: list[bytes], valid: bool = False) -> None:
        found.append((name, tid, lines, valid))

    def parent(tid: str, version: str = "00", span: str = SPAN, flags: str = "01") -> bytes:
        return f"traceparent: {version}-{tid}-{span}-{flags}".encode()

    tid = trace_id(0)
    add("garbage", [b"traceparent: garbage"])
    tid = trace_id(1)
    add("10kB", [parent(tid) + b"x" * 10_000])
    tid = trace_id(2)
    add("version 01", [parent(tid, version="01")])
    tid = trace_id(3)
    add("version ff", [parent(tid, version="ff")])
    tid = trace_id(4)
    add("all-zero trace id", [parent("0" * 32)])
    tid = trace_id(5)
    add("all-zero span id", [parent(tid, span="0" * 16)])
    tid = trace_id(6)
    add("uppercase", [parent(tid.upper().replace("0", "A"), span=SPAN.upper())])
    tid = trace_id(7)
    add("control character", [parent(tid) + b"\x01"])
    tid = trace_id(8)
    add(
        "delete character", [b"traceparent: 00-" + tid.encode() + b"\x7f-" + SPAN.encode() + b"-01"]
    )
    tid = trace_id(9)
    add("non-ASCII", [f"traceparent: 00-{tid[:-1]}é-{SPAN}-01".encode()])
    tid = trace_id(10)
    add(
        "utf-8 bytes",
        [b"traceparent: 00-" + tid.encode() + b"-\xe2\x80\xae" + SPAN.encode() + b"-01"],
    )
    tid = trace_id(11)
    add("two traceparents", [parent(tid), parent(trace_id(99))])
    tid = trace_id(12)
    add("200 headers", [parent(tid)] * 100 + [b"tracestate: a=b"] * 100)
    tid = trace_id(13)
    add("short flags", [parent(tid, flags="1")])
    tid = trace_id(14)
    add("extra field", [parent(tid) + b"-00"])
    # A valid traceparent with a hostile tracestate: the trace is continued, the state dropped.
    tid = trace_id(15)
    add("tracestate 10kB", [parent(tid), b"tracestate: " + b"a=b," * 2500], valid=True)
    tid = trace_id(16)
    add("tracestate uppercase key", [parent(tid), b"tracestate: KEY=value"], valid=True)
    tid = trace_id(17)
    add("tracestate duplicate key", [parent(tid), b"tracestate: k=1,k=2"], valid=True)
    tid = trace_id(18)
    members = ",".join(f"k{i}=v" for i in range(33)).encode()
    add("tracestate 33 members", [parent(tid), b"tracestate: " + members], valid=True)
    tid = trace_id(19)
    add("tracestate control", [parent(tid), b"tracestate: k=v\x01"], valid=True)
    tid = trace_id(20)
    add("tracestate non-ASCII", [parent(tid), "tracestate: k=vé".encode()], valid=True)
    return found


def kept_only_canonical(
    name: str, context: object, *, tid: str, valid: bool, enabled: bool
) -> None:
    """The stored trace context: NULL with tracing off; else canonical, continuing the
    header's trace only when its traceparent is valid, and never a hostile tracestate."""
    if not enabled:
        assert context is None, name
        return
    assert isinstance(context, str) and CANONICAL.fullmatch(context), (name, context)
    assert context.isascii() and context.isprintable(), name
    parent, _, state = context.partition(" ")
    assert state == "", (name, context)  # no hostile tracestate is ever kept
    assert (parent.split("-")[1] == tid) is valid, (name, context)


def send(served: FastServed, body: bytes, lines: list[bytes]) -> int:
    """POST the webhook with these extra header lines, as raw bytes; the status answered."""
    head = [
        f"POST {ALERTS} HTTP/1.1".encode(),
        f"Host: 127.0.0.1:{served.port}".encode(),
        f"Authorization: Bearer {served.tokens['alertmanager']}".encode(),
        b"Content-Type: application/json",
        f"Content-Length: {len(body)}".encode(),
        b"Connection: close",
        *lines,
    ]
    raw = b"\r\n".join(head) + b"\r\n\r\n" + body
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
        sock.sendall(raw)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1])


@pytest.mark.parametrize("enabled", [True, False], ids=["tracing", "no-tracing"])
def test_hostile_trace_headers_never_refuse_the_webhook_nor_reach_the_store(
    serve: Serve, figures: Figures, enabled: bool
) -> None:
    served = serve({"tracing": {"enabled": enabled}, "health": {"enabled": False}})
    tried = cases()
    fingerprints = {}
    for index, (name, _, lines, _) in enumerate(tried):
        fingerprint = f"{0xAB00 + index:016x}"
        fingerprints[fingerprint] = index
        body = json.dumps(payload([alert(fingerprint, "HostileTrace")])).encode()
        status = send(served, body, lines)
        if name in FRAMING:  # refused by the HTTP parser: never reaches remediator
            assert status == 400, name
            del fingerprints[fingerprint]
            continue
        assert status == 200, name
    rows = {
        fp: (context, state)
        for fp, context, state in db_rows(
            served.db_path, "SELECT fingerprint, trace_context, state FROM inbox"
        )
    }
    assert set(rows) == set(fingerprints)  # every alert stored
    for fingerprint, (context, _) in rows.items():
        name, tid, _, valid = tried[fingerprints[fingerprint]]
        kept_only_canonical(name, context, tid=tid, valid=valid, enabled=enabled)

    def decided() -> bool:
        states = db_rows(served.db_path, "SELECT state FROM inbox")
        return {state for (state,) in states} == {"done"}

    wait_for(decided, timeout=30, what="the worker to decide every alert")
    log = served.log_path.read_text(errors="replace")
    assert "Traceback" not in log and "intake failed" not in log
    skipped: list[dict[str, Any]] = served.events("recovery:skipped")
    assert len(skipped) == len(fingerprints)
    figures(inputs=len(tried), refused_by_the_parser=len(FRAMING), enabled=enabled)


def test_control_characters_handed_to_the_asgi_webhook_are_dropped_too(
    tmp_path: Path, authenticator: Authenticator, tokens: dict[str, str]
) -> None:
    """The values the HTTP parser refuses, given to the webhook's ASGI path as a lenient
    server would: 200, the alert stored and decided, the trace context canonical."""
    data = {
        "store": {"url": f"sqlite:///{tmp_path}/remediator.db"},
        "health": {"enabled": False},
        "tracing": {"enabled": True},
    }
    holder: list[Runtime] = []
    app = create_app(
        config_mod.parse(data, env={}), authenticator=authenticator, on_runtime=holder.append
    )
    tried = [case for case in cases() if case[0] in FRAMING]
    assert len(tried) == len(FRAMING)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.portal is not None
        rt = holder[0]
        for index, (name, _, lines, _) in enumerate(tried):
            body = json.dumps(payload([alert(f"{0xCD00 + index:016x}", "HostileTrace")]))
            status = client.portal.call(asgi_post, app, rt, tokens["alertmanager"], body, lines)
            assert status == 200, name

        def decided() -> bool:
            assert client.portal is not None
            states = client.portal.call(rt.store.raw, "SELECT state FROM inbox")
            return {state for (state,) in states} == {"done"}

        wait_for(decided, timeout=30, what="the worker to decide every alert")
        rows = client.portal.call(rt.store.raw, "SELECT fingerprint, trace_context FROM inbox")
    assert len(rows) == len(tried)
    for fingerprint, context in rows:
        name, tid, _, valid = tried[int(fingerprint, 16) - 0xCD00]
        kept_only_canonical(name, context, tid=tid, valid=valid, enabled=True)


async def asgi_post(app: Any, rt: Runtime, token: str, body: str, lines: list[bytes]) -> int:
    """POST the webhook through the app's ASGI interface with raw header lines."""
    headers = [
        (b"authorization", f"Bearer {token}".encode()),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    for line in lines:
        name, _, value = line.partition(b": ")
        headers.append((name.lower(), value))
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": ALERTS, "raw_path": ALERTS.encode(), "root_path": "",
        "query_string": b"", "headers": headers, "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80), "state": {"runtime": rt},
    }  # fmt: skip
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body.encode(), "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return int(sent[0]["status"])
