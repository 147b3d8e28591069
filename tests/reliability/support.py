"""Shared pieces of the reliability scenarios: fast served processes, a signal counter, a TCP
proxy that can be stopped and started, a webhook receiver, and small helpers.

Safety: everything listens on 127.0.0.1 only, and every process is stopped by the PID of the
process this module started.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

import httpx2 as httpx
import yaml

from remediator.clock import iso
from tests.serving import free_port
from tests.waiting import wait_for

ROOT: Final = Path(__file__).resolve().parents[2]
ALERTS: Final = "/api/v1/recovery/alerts"
EVENTS: Final = "/api/v1/recovery/events"
HEALTH: Final = "/api/v1/recovery/health"
SIGCOUNTER: Final = Path(__file__).with_name("sigcounter.py")
BASE_TS: Final = 1_800_000_000.0  # alert times are logical: seconds after this instant

__all__ = [
    "ALERTS",
    "BASE_TS",
    "EVENTS",
    "FastServed",
    "Proxy",
    "SignalCounter",
    "WebhookSink",
    "Zygote",
    "alert",
    "api_events",
    "children_of",
    "db_rows",
    "iso",
    "payload",
    "rss_kib",
    "wait_for",
]


# ------------------------------------------------------------------------------------------------
# waiting, payloads, reading results
# ------------------------------------------------------------------------------------------------


def alert(
    fingerprint: str,
    alertname: str,
    *,
    status: str = "firing",
    starts: float = BASE_TS,
    ends: float | None = None,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One alert of an Alertmanager v4 webhook, at logical times."""
    return {
        "status": status,
        "labels": {"alertname": alertname, "severity": "warning", **(labels or {})},
        "annotations": {"summary": f"{alertname} {status}", **(annotations or {})},
        "startsAt": iso(starts),
        "endsAt": iso(ends) if ends is not None else "0001-01-01T00:00:00Z",
        "generatorURL": "http://127.0.0.1:9090/graph",
        "fingerprint": fingerprint,
    }


def payload(
    alerts: list[dict[str, Any]], *, receiver: str = "remediator", group_key: str = "{}:{}"
) -> dict[str, Any]:
    firing = any(a["status"] == "firing" for a in alerts)
    return {
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": "firing" if firing else "resolved",
        "receiver": receiver,
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "alerts": alerts,
    }


def api_events(url: str, headers: dict[str, str], kind: str | None = None) -> list[dict[str, Any]]:
    """Every recorded event (of one type), newest first, through the API's pagination."""
    params: dict[str, Any] = {"limit": 1000}
    if kind:
        params["type"] = kind
    found: list[dict[str, Any]] = []
    with httpx.Client(timeout=10) as client:
        while True:
            answer = client.get(url + EVENTS, params=params, headers=headers)
            assert answer.status_code == 200, answer.text
            page = answer.json()
            found += page["events"]
            if page["next_before"] is None:
                return found
            params["before"] = page["next_before"]


def db_rows(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows from the store's SQLite file, opened read-only (the server may be running)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        conn.execute("PRAGMA busy_timeout=10000")
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def children_of(pid: int) -> set[int]:
    """The direct children of ``pid`` (every thread's), from /proc."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found.update(int(c) for c in (task / "children").read_text().split())
    return found


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


# ------------------------------------------------------------------------------------------------
# served processes
# ------------------------------------------------------------------------------------------------


class Zygote:
    """The launcher of :mod:`tests.reliability.zygote`, started once per session."""

    def __init__(self, workdir: Path) -> None:
        self._lock = threading.Lock()
        self._log = (workdir / "zygote.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.zygote"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        first = self._read()
        assert first.get("ready") is True, first

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the remediator launcher exited")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            answer = self._read()
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer

    def spawn(self, argv: list[str], *, env: dict[str, str], cwd: Path, log: Path) -> int:
        answer = self._ask(
            {"op": "spawn", "argv": argv, "env": env, "cwd": str(cwd), "log": str(log)}
        )
        return int(answer["pid"])

    def wait(self, pid: int, timeout: float) -> int | None:
        code = self._ask({"op": "wait", "pid": pid, "timeout": timeout})["code"]
        return None if code is None else int(code)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()


class FastServed:
    """A real ``remediator serve`` process forked by the launcher (see :mod:`.zygote`).

    The same interface as :class:`tests.serving.Served`; the port and store stay the same
    across restarts. Signalled and reaped by its PID only."""

    def __init__(
        self,
        zygote: Zygote,
        workdir: Path,
        config: dict[str, Any],
        tokens: dict[str, str],
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.zygote = zygote
        self.workdir = workdir
        self.port = free_port()
        self.tokens = tokens
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = workdir / "remediator.yml"
        server = {**config.get("server", {}), "host": "127.0.0.1", "port": self.port}
        data = {**config, "server": server}
        data.setdefault("store", {"url": f"sqlite:///{workdir}/remediator.db"})
        self.db_path = Path(str(data["store"]["url"]).removeprefix("sqlite:///"))
        self.config_path.write_text(yaml.safe_dump(data))
        self.log_path = workdir / "remediator.log"
        self.extra_env = extra_env or {}
        self.pid: int | None = None
        self.starts = 0

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.extra_env)
        env["REMEDIATOR_ALERTMANAGER_TOKEN"] = self.tokens["alertmanager"]
        env["REMEDIATOR_VIEWER_TOKEN"] = self.tokens["viewer"]
        env["REMEDIATOR_ADMIN_TOKEN"] = self.tokens["admin"]
        return env

    def spawn(self) -> int:
        """Start the process and return at once (it may not answer yet)."""
        assert self.pid is None, "already running"
        self.pid = self.zygote.spawn(
            ["serve", "--config", str(self.config_path)],
            env=self.env(),
            cwd=self.workdir,
            log=self.log_path,
        )
        self.starts += 1
        return self.pid

    def wait_healthy(self, timeout: float = 20.0) -> None:
        assert self.pid is not None
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=1) as client:
            while time.monotonic() < deadline:
                code = self.zygote.wait(self.pid, 0)
                if code is not None:
                    self.pid = None
                    raise RuntimeError(f"remediator exited {code}:\n{self.log()}")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(self.url + HEALTH).status_code == 200:
                        return
                time.sleep(0.02)
        raise RuntimeError(f"remediator did not become healthy:\n{self.log()}")

    def start(self, timeout: float = 20.0) -> None:
        self.spawn()
        self.wait_healthy(timeout)

    def kill9(self) -> None:
        assert self.pid is not None
        os.kill(self.pid, signal.SIGKILL)
        code = self.zygote.wait(self.pid, 10)
        assert code is not None, "a SIGKILLed process did not exit"
        self.pid = None

    def terminate(self, timeout: float = 20.0) -> int:
        assert self.pid is not None
        os.kill(self.pid, signal.SIGTERM)
        code = self.zygote.wait(self.pid, timeout)
        if code is None:
            self.kill9()
            raise AssertionError(f"remediator did not stop within {timeout}s of SIGTERM")
        self.pid = None
        return code

    def stop(self) -> None:
        if self.pid is not None:
            self.kill9()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def headers(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        return api_events(self.url, self.headers("viewer"), kind)

    def post(self, body: dict[str, Any], timeout: float = 10) -> int:
        answer = httpx.post(
            self.url + ALERTS, json=body, headers=self.headers("alertmanager"), timeout=timeout
        )
        return answer.status_code

    def metric(self, name: str, labels: str = "") -> float:
        """The value of one sample on /metrics (0 when absent)."""
        text = httpx.get(self.url + "/metrics", timeout=5).text
        wanted = f"{name}{{{labels}}}" if labels else name
        for line in text.splitlines():
            if line.startswith(wanted + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0


# ------------------------------------------------------------------------------------------------
# the real effect of process.signal
# ------------------------------------------------------------------------------------------------


class SignalCounter:
    """A child process that counts the SIGRTMIN it receives (see :mod:`.sigcounter`).

    ``pidfile`` is what a ``process`` target points at."""

    def __init__(self, workdir: Path, name: str) -> None:
        self.out = workdir / f"{name}.signals"
        self.pidfile = workdir / f"{name}.pid"
        self.proc = subprocess.Popen([sys.executable, str(SIGCOUNTER), str(self.out)])
        wait_for(
            lambda: self.out.exists() and self.out.read_text().startswith("ready\n"),
            timeout=10,
            what="the signal counter",
            every=0.01,
        )
        self.pidfile.write_text(f"{self.proc.pid}\n")

    def senders(self) -> list[int]:
        return [int(line) for line in self.out.read_text().splitlines()[1:]]

    def count(self) -> int:
        return len(self.senders())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


# ------------------------------------------------------------------------------------------------
# a dependency that goes down and comes back: a TCP proxy on a port the test owns
# ------------------------------------------------------------------------------------------------


class Proxy:
    """``127.0.0.1:port`` → ``127.0.0.1:backend``, on its own event-loop thread.

    :meth:`stop` closes the listener and cuts every open connection (clients see the service
    die and new connections refused); :meth:`start` listens again on the same port. The
    backend can be changed (:attr:`backend`), e.g. to a new server after a restart."""

    def __init__(self, backend: int) -> None:
        self.port = free_port()
        self.backend = backend
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(15)

    def start(self) -> None:
        self._call(self._start())

    def stop(self) -> None:
        self._call(self._stop())

    def close(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    @property
    def up(self) -> bool:
        return self._server is not None

    async def _start(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(
                self._accept, "127.0.0.1", self.port, reuse_address=True
            )

    async def _stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        if server is not None:
            await server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        upstream: asyncio.StreamWriter | None = None
        try:
            up_reader, upstream = await asyncio.open_connection("127.0.0.1", self.backend)
            self._writers.add(upstream)
            self.connections += 1
            await asyncio.gather(
                _pipe(reader, upstream), _pipe(up_reader, writer), return_exceptions=True
            )
        except OSError:
            pass  # the backend is down: the client sees its connection closed
        finally:
            for w in (writer, upstream):
                if w is not None:
                    self._writers.discard(w)
                    w.transport.abort()
            self._tasks.discard(task)


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    finally:
        sink.transport.abort()


# ------------------------------------------------------------------------------------------------
# a webhook receiver (remediator's outgoing webhooks)
# ------------------------------------------------------------------------------------------------


class WebhookSink:
    """Records every JSON body POSTed to it; answers 503 while :attr:`down`."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.refused = 0
        self.down = False
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", "0")))
                if sink.down:
                    sink.refused += 1
                    self.send_response(503)
                else:
                    sink.bodies.append(json.loads(raw))
                    self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def phases(self, phase: str) -> list[dict[str, Any]]:
        return [b for b in self.bodies if b.get("phase") == phase]


@contextlib.contextmanager
def webhook_sink() -> Iterator[WebhookSink]:
    sink = WebhookSink()
    try:
        yield sink
    finally:
        sink.close()
