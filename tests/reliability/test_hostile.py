"""Hostile input against a real served process.

A corpus of label and annotation values (shell metacharacters, ``../``, newlines, NUL, 64 KB
strings, Unicode direction overrides, JSON and templates inside strings, SQL, ANSI escapes),
placed in every field of a notification, plus random strings from a hostile alphabet; raw
bodies that are not JSON, not UTF-8, nested 100 000 deep, or empty; bodies over
``server.max_body_bytes`` (declared, and streamed slowly in chunks without a length); slow but
legal bodies; wrong credentials. While it runs, the process's children are sampled.

Expected: 0 actions on anything but the registered target (whose legitimate alerts carry the
hostile annotations and each act exactly once), 0 child processes, nothing stored from a refused
request, every log line one JSON object, memory (RSS) bounded, and the service still healthy
with an intact audit chain.
"""

from __future__ import annotations

import base64
import contextlib
import json
import random
import socket
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx2 as httpx

from remediator.audit.recording import Recording
from remediator.engine import verifier as audit
from remediator.redaction import redact_text
from tests.reliability.conftest import Counters, Figures, Serve
from tests.reliability.support import ALERTS, FastServed, alert, children_of, payload, rss_kib
from tests.waiting import wait_for

MAX_BODY = 1024 * 1024
RSS_MARGIN_KIB = 64 * 1024


def corpus(marker: Path) -> list[str]:
    big = "A" * 65536
    return [
        f"app; touch {marker}",
        f"$(touch {marker})",
        f"`touch {marker}`",
        f"app && touch {marker}",
        f"app | tee {marker}",
        f"app > {marker}",
        "app;kill -9 1",
        "../app",
        "../../../../etc/passwd",
        "/app",
        "app/../app",
        "./app",
        "..",
        "app\nINJECTED",
        'app\r\n{"level": "error", "msg": "forged"}',
        "\n",
        "app\x00",
        "\x00",
        "app\x00; reboot",
        big,
        "app" + big,
        "😀" * 16384,
        "app\u202e",
        "\u202eppa",
        "\u2066app\u2069",
        "a\u200bpp",
        "аpp",  # noqa: RUF001 - a Cyrillic a: a homoglyph of "app"
        "ａｐｐ",  # noqa: RUF001 - fullwidth letters
        '{"target": "app"}',
        '"},{"target":"app',
        "\\u0000",
        "{{ labels.target }}",
        "{{7*7}}",
        "{% for x in y %}",
        "${HOME}",
        "%s%n%x",
        "app'; DROP TABLE events; --",
        "' OR 1=1 --",
        "\x1b[31mred\x1b[0m",
        "\x7f\b\x07",
        "",
        " app ",
        "APP",
    ]


def fuzz(rng: random.Random, n: int) -> list[str]:
    alphabet = [
        *";|&$`'\"\\/.\n\r\t\x00\x1b{}[]()<>%*?~!#=",
        *("\u202e", "\u202d", "\u2066", "\u200b", "\ufeff", "\u0301", "😀", "é", "a", "p", ".."),
    ]
    found = ["".join(rng.choices(alphabet, k=rng.randint(1, 40))) for _ in range(n)]
    return [v for v in found if v != "app"]


def raw_bodies() -> list[bytes]:
    ok = json.dumps(payload([alert("00000000000000aa", "RawCase", labels={"target": "app"})]))
    return [
        b"",
        b"{",
        b"null",
        b"[]",
        b'"a string"',
        b"\xff\xfe\xfd",
        ok.replace("RawCase", "Raw\xffCase").encode("latin-1"),  # invalid UTF-8 inside a string
        ok.encode()[:-1],
        b"\xef\xbb\xbf" + ok.encode(),  # a BOM
        b"[" * 100_000,
        b'{"version": "4", "alerts": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
        ok.replace('"4"', '"3"').encode(),
        ok.replace('"firing"', '"burning"').encode(),
        ok.replace('"startsAt": "', '"startsAt": "not a date').encode(),
        b'{"version": "4", "truncatedAlerts": 1e999}',
        b'{"version": "4", "truncatedAlerts": NaN}',
        ok.replace("00000000000000aa", "f" * 65).encode(),  # fingerprint too long
        json.dumps(payload([alert(f"{i:016x}", "Many", labels={"target": "nope"}) for i in range(1000)])).encode(),
    ]  # fmt: skip


class ChildWatch(threading.Thread):
    """Samples the served process's children every few milliseconds."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.seen: set[int] = set()
        self.samples = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.seen |= children_of(self.pid)
            self.samples += 1
            time.sleep(0.005)


def raw_request(
    served: FastServed, head: bytes, body_chunks: list[bytes], pause: float
) -> tuple[int, int]:
    """Send a request by hand; (status, body bytes sent before the answer came)."""
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
        sock.sendall(head)
        sent = 0
        sock.setblocking(False)
        answer = b""
        for chunk in body_chunks:
            with contextlib.suppress(BlockingIOError):
                answer += sock.recv(65536)
            if answer:
                break
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
            time.sleep(pause)
        sock.setblocking(True)
        sock.settimeout(10)
        while b"\r\n" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0
    return status, sent


def chunked_head(served: FastServed, auth: str) -> bytes:
    return (
        f"POST {ALERTS} HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\n"
        f"Authorization: {auth}\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def test_hostile_input_touches_nothing_spawns_nothing_and_stays_bounded(
    serve: Serve, counters: Counters, tmp_path: Path, figures: Figures
) -> None:
    app = counters("app")
    marker = tmp_path / "pwned"
    served = serve(
        {
            "health": {"enabled": False},
            "server": {"max_body_bytes": MAX_BODY},
            "worker": {"poll_interval": "100ms"},
            "targets": [{"name": "app", "type": "process", "pidfile": str(app.pidfile)}],
            "playbooks": [
                {
                    "name": "by-label",
                    "match": ['alertname="Hostile"'],
                    "target": "{{ labels.target }}",
                    "steps": [{"action": "process.signal", "signal": "SIGRTMIN"}],
                    "cooldown": "0s",
                    "max_per_window": None,
                    "retry": {"max_attempts": 1},
                },
                {
                    "name": "fixed",
                    "match": ['alertname="Legit"'],
                    "target": "app",
                    "steps": [{"action": "process.signal", "signal": "SIGRTMIN"}],
                    "cooldown": "0s",
                    "max_per_window": None,
                    "retry": {"max_attempts": 1},
                },
            ],
        }
    )
    assert served.pid is not None
    pid = served.pid
    auth = served.headers("alertmanager")
    statuses: Counter[int] = Counter()
    tried = 0
    legit = 0
    values = corpus(marker) + fuzz(random.Random(3), 120)
    seq = iter(range(10**9))

    def fp() -> str:
        return f"c{next(seq):015x}"

    with httpx.Client(timeout=30) as client:

        def post(body: Any, headers: dict[str, str] | None = None) -> int:
            nonlocal tried
            tried += 1
            answer = client.post(
                served.url + ALERTS, json=body, headers=auth if headers is None else headers
            )
            statuses[answer.status_code] += 1
            return answer.status_code

        # Warm up with the same kinds of requests, then take the memory baseline.
        for v in values[:20]:
            post(payload([alert(fp(), "Warmup", labels={"target": v})]))
        time.sleep(0.5)
        rss_before = rss_kib(pid)
        children_before = children_of(pid)
        watch = ChildWatch(pid)
        watch.start()

        # 1. Every hostile value in every field.
        for v in values:
            assert post(payload([alert(fp(), "Hostile", labels={"target": v})])) == 200
            assert (
                post(payload([alert(fp(), "Legit", annotations={"summary": v, "runbook_url": v})]))
                == 200
            )
            legit += 1
            post(payload([alert(fp(), "Hostile", labels={"target": "nope", v: "x"})]))
            post(payload([alert(fp(), v, labels={"target": v, "container": v})]))
            post(payload([alert(v or "x", "Hostile", labels={"target": "nope"})]))
            body = payload(
                [alert(fp(), "Hostile", labels={"target": "nope"})], receiver=v, group_key=v
            )
            body["externalURL"] = v
            body["commonAnnotations"] = {v: v}
            body["alerts"][0]["generatorURL"] = v
            post(body)

        # 2. Raw bodies: not JSON, not UTF-8, deep nesting, wrong schema.
        for raw in raw_bodies():
            tried += 1
            answer = client.post(
                served.url + ALERTS,
                content=raw,
                headers={**auth, "Content-Type": "application/json"},
            )
            statuses[answer.status_code] += 1
            assert answer.status_code in (200, 400, 413, 422), (raw[:40], answer.status_code)

        # 3. Wrong credentials, on a payload that would act on the registered target.
        refused = payload([alert("deadbeefdeadbeef", "Legit", annotations={"summary": "no auth"})])
        basic = base64.b64encode(b"alertmanager:wrong").decode()
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": "Bearer " + served.tokens["alertmanager"][:-1]},
            {"Authorization": "Bearer " + served.tokens["viewer"]},
            {"Authorization": "Basic " + basic},
            {"Authorization": "Basic !!!notbase64"},
            {"Authorization": "Token " + served.tokens["alertmanager"]},
            {"Authorization": "Bearer " + "x" * 8000},
        ):
            code = post(refused, headers)
            assert code in (401, 403), (headers.keys(), code)

        # 4. Too large: declared, and streamed slowly without a length.
        tried += 1
        answer = client.post(
            served.url + ALERTS,
            content=b"x" * (MAX_BODY + 1),
            headers={**auth, "Content-Type": "application/json"},
        )
        assert answer.status_code == 413
        statuses[413] += 1
    streamed: list[tuple[int, int]] = []

    def stream_too_much() -> None:
        status, sent = raw_request(
            served,
            chunked_head(served, auth["Authorization"]),
            [chunk(b" " * 16384)] * (3 * MAX_BODY // 16384),
            pause=0.002,
        )
        streamed.append((status, sent))

    threads = [threading.Thread(target=stream_too_much) for _ in range(8)]
    for t in threads:
        t.start()
    rss_during = 0
    while any(t.is_alive() for t in threads):
        rss_during = max(rss_during, rss_kib(pid))
        time.sleep(0.02)
    for t in threads:
        t.join()
    tried += len(streamed)
    statuses.update(s for s, _ in streamed)
    assert [s for s, _ in streamed] == [413] * len(streamed)
    assert max(sent for _, sent in streamed) <= MAX_BODY + 256 * 1024  # refused while streaming
    # A slow but legal body (a byte-trickle of a valid notification) is accepted.
    legal = json.dumps(payload([alert(fp(), "Legit", annotations={"summary": "slow"})])).encode()
    legit += 1
    slow_status, _ = raw_request(
        served,
        chunked_head(served, auth["Authorization"]),
        [chunk(legal[i : i + 7]) for i in range(0, len(legal), 7)] + [b"0\r\n\r\n"],
        pause=0.005,
    )
    tried += 1
    statuses[slow_status] += 1
    assert slow_status == 200

    # Everything decided: only the legitimate alerts acted, once each, on the registered target.
    wait_for(lambda: app.count() >= legit, timeout=60, what="the legitimate actions")
    wait_for(
        lambda: len(served.events("recovery:skipped")) >= len(values),
        timeout=60,
        what="the refusals",
    )
    time.sleep(1.0)
    watch.stop.set()
    watch.join(5)
    rss_after = rss_kib(pid)
    assert app.count() == legit
    actions = served.events("recovery:action")
    assert {e["target"] for e in actions} == {"app"}
    assert {e["playbook"] for e in actions} == {"fixed"}
    refused_targets = [
        e for e in served.events("recovery:skipped") if e["outcome"] == "target_not_registered"
    ]
    assert len(refused_targets) >= len(values)
    assert not any(e["fingerprint"] == "deadbeefdeadbeef" for e in served.events())
    assert not marker.exists()
    assert watch.seen == set() and children_before == set() and children_of(pid) == set()
    assert rss_after - rss_before < RSS_MARGIN_KIB, (rss_before, rss_after)
    assert httpx.get(served.url + "/api/v1/recovery/health", timeout=5).status_code == 200
    served.terminate()
    for line in served.log_path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            json.loads(line)
        else:
            assert line.startswith(("remediator ", "Point Alertmanager", "  ")), line[:200]
    verdict = audit.verify(served.db_path, Recording())
    assert verdict.ok, verdict.line()
    figures(
        inputs_tried=tried,
        corpus_values=len(values),
        answers=dict(sorted(statuses.items())),
        legitimate_actions=legit,
        actions_on_unregistered_targets=0,
        refused_targets=len(refused_targets),
        child_samples=watch.samples,
        children_seen=len(watch.seen),
        rss_kib_before=rss_before,
        rss_kib_peak_streaming=rss_during,
        rss_kib_after=rss_after,
        max_streamed_before_413=max(sent for _, sent in streamed),
    )


def test_redacting_a_long_value_takes_linear_time() -> None:
    """Regression: the URL-credentials pattern scanned from every position of a long run of
    letters and digits to its end: 10 s for one 64 KB label value, on the store's single
    writer thread (every event is redacted) and in every log line."""
    for value in ("A" * 65536, "a:" * 32768, "a://" * 16384, "a://" + "b" * 65536, "9" * 65536):
        began = time.perf_counter()
        assert redact_text(value) == value
        assert time.perf_counter() - began < 0.5
    # Still redacted: credentials after a long run of letters, and in an ordinary DSN.
    assert redact_text("x" * 40 + "redis://:pw@127.0.0.1") == "x" * 40 + "redis://***@127.0.0.1"
    assert redact_text("postgresql://u:s3cret@db/x") == "postgresql://***@db/x"
