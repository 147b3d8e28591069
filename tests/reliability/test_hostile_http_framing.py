"""Hostile request framing against the webhook served by httptools (the default HTTP parser):
a request that smuggles a second one behind conflicting lengths, or carries a header with a
bare CR, never stores the alert hidden in it."""

from __future__ import annotations

import json
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import fixture_payload
from tests.serving import Served

ALERTS = "/api/v1/recovery/alerts"
SMUGGLED = "5a5a5a5a5a5a5a5a"


@pytest.fixture
def served(tmp_path: Path, tokens: dict[str, str]) -> Iterator[Served]:
    server = Served(tmp_path, {}, tokens)
    server.start()
    yield server
    server.stop()


def _http(served: Served) -> str:
    for line in served.log_path.read_text(errors="replace").splitlines():
        if line.startswith("{") and json.loads(line).get("msg") == "serving":
            return str(json.loads(line)["http"])
    raise AssertionError(f"no 'serving' line in the log:\n{served.log()}")


def _body(fingerprint: str) -> bytes:
    payload = fixture_payload("firing_single.json")
    payload["alerts"][0]["fingerprint"] = fingerprint
    return json.dumps(payload).encode()


def _exchange(served: Served, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _fingerprints(served: Served) -> set[str]:
    db = sqlite3.connect(f"file:{served.workdir / 'remediator.db'}?mode=ro", uri=True)
    try:
        return {row[0] for row in db.execute("SELECT fingerprint FROM inbox")}
    finally:
        db.close()


def _request(served: Served, body: bytes, *extra: bytes) -> bytes:
    token = served.tokens["alertmanager"].encode()
    head = [
        b"POST " + ALERTS.encode() + b" HTTP/1.1",
        b"Host: 127.0.0.1",
        b"Authorization: Bearer " + token,
        b"Content-Type: application/json",
        *extra,
    ]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def test_a_request_smuggled_behind_conflicting_lengths_is_never_stored(served: Served) -> None:
    assert _http(served) == "httptools"
    hidden = _request(served, _body(SMUGGLED), b"Content-Length: %d" % len(_body(SMUGGLED)))
    outer = b"0\r\n\r\n" + hidden
    raw = _request(served, outer, b"Content-Length: %d" % len(outer), b"Transfer-Encoding: chunked")
    answer = _exchange(served, raw)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert served.terminate() == 0
    assert SMUGGLED not in _fingerprints(served)


def test_a_header_with_a_bare_carriage_return_is_refused(served: Served) -> None:
    assert _http(served) == "httptools"
    body = _body(SMUGGLED)
    raw = _request(served, body, b"Content-Length: %d" % len(body), b"X-Evil: a\rb")
    answer = _exchange(served, raw)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert served.terminate() == 0
    assert SMUGGLED not in _fingerprints(served)
