"""Fixtures of the queue recovery tests: real RQ and Celery workers as child processes on the
test Redis (database 13), the test RabbitMQ (tests/services.sh), unique queue names.

Workers are stopped by the PID of the ``Popen`` that started them. Under CI=true a missing
service fails, never skips (tests/realservices.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote, urlsplit

import httpx2
import pytest
import redis

from tests.realservices import load_services_env, require
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
QUEUE_DB = 13


@pytest.fixture(scope="session")
def queue_redis_url() -> Iterator[str]:
    """The test Redis, database 13 (emptied before and after the session)."""
    base = require("redis")
    parts = urlsplit(base)
    url = parts._replace(path=f"/{QUEUE_DB}").geturl()
    conn = redis.Redis.from_url(url)
    conn.flushdb()
    yield url
    conn.flushdb()
    conn.close()


@pytest.fixture
def qname() -> str:
    """A queue name of its own for each test."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def rconn(queue_redis_url: str) -> Iterator[redis.Redis]:
    conn = redis.Redis.from_url(queue_redis_url)
    yield conn
    conn.delete("rq:suspended")
    conn.close()


def _env(queue_redis_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env["QUEUE_TEST_REDIS_URL"] = queue_redis_url
    env["PYTHONPATH"] = str(ROOT)
    return env


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (a warm shutdown), a second one a second later (cold: RQ and Celery stop at once
    on it), SIGKILL if it still runs; always by the Popen's PID."""
    for wait in (1.0, 10.0):
        if proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue
    proc.kill()
    proc.wait(5)


@dataclass
class Workers:
    """Starts worker processes; stops exactly those (by their Popen) at teardown."""

    redis_url: str
    log_dir: Path
    procs: list[subprocess.Popen[bytes]]
    logs: list[BinaryIO]

    def rq(self, *queues: str) -> subprocess.Popen[bytes]:
        """An RQ worker on ``queues`` and on ``<first>-primer`` (see :func:`suspend_rq`)."""
        queues = (*queues, f"{queues[0]}-primer")
        log = (self.log_dir / f"rq-{queues[0]}.log").open("ab")
        self.logs.append(log)
        proc = subprocess.Popen(
            [str(BIN / "rq"), "worker", "--url", self.redis_url, "--worker-ttl", "30", *queues],
            cwd=ROOT,
            env=_env(self.redis_url),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        return proc

    def celery(self, name: str, *queues: str) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"celery-{name}.log").open("ab")
        self.logs.append(log)
        proc = subprocess.Popen(
            [
                str(BIN / "celery"),
                "-A",
                "tests.queues.celeryapp",
                "worker",
                "-Q",
                ",".join(queues),
                "-n",
                f"{name}@remediator-test",
                "-c",
                "1",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-l",
                "INFO",
            ],
            cwd=ROOT,
            env=_env(self.redis_url),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        return proc


@pytest.fixture
def workers(queue_redis_url: str, tmp_path: Path) -> Iterator[Workers]:
    found = Workers(queue_redis_url, tmp_path, [], [])
    yield found
    conn = redis.Redis.from_url(queue_redis_url)
    conn.delete("rq:suspended")  # a suspended RQ worker ignores SIGTERM until resumed
    conn.close()
    for proc in found.procs:
        _stop(proc)
    for log in found.logs:
        log.close()


@dataclass(frozen=True)
class Rabbit:
    """The test RabbitMQ's management API (a vhost of its own per test)."""

    api_url: str
    user: str
    password: str
    vhost: str

    def call(self, method: str, path: str, body: object = None) -> httpx2.Response:
        response = httpx2.request(
            method, self.api_url + path, auth=(self.user, self.password), json=body, timeout=10
        )
        assert response.status_code < 400, (method, path, response.status_code, response.text)
        return response

    @property
    def v(self) -> str:
        return quote(self.vhost, safe="")

    def declare(self, name: str, arguments: dict[str, object] | None = None) -> None:
        self.call(
            "PUT", f"/api/queues/{self.v}/{name}", {"durable": True, "arguments": arguments or {}}
        )

    def publish(self, queue: str, payload: str) -> None:
        body = {
            "properties": {"delivery_mode": 2, "timestamp": int(time.time())},
            "routing_key": queue,
            "payload": payload,
            "payload_encoding": "string",
        }
        answer = self.call("POST", f"/api/exchanges/{self.v}/amq.default/publish", body).json()
        assert answer == {"routed": True}

    def take(self, queue: str, count: int, requeue: bool = False) -> list[str]:
        """Get up to ``count`` messages (acknowledged, i.e. removed, unless ``requeue``)."""
        mode = "reject_requeue_true" if requeue else "ack_requeue_false"
        body = {"count": count, "ackmode": mode, "encoding": "auto"}
        got = self.call("POST", f"/api/queues/{self.v}/{queue}/get", body).json()
        return [m["payload"] for m in got]

    def stats(self, queue: str) -> dict[str, object]:
        return dict(self.call("GET", f"/api/queues/{self.v}/{queue}").json())


def _rabbit_env() -> dict[str, str]:
    env = {**load_services_env(), **os.environ}
    missing = [
        k for k in ("RABBITMQ_API_URL", "RABBITMQ_USER", "RABBITMQ_PASSWORD") if k not in env
    ]
    if missing:
        pytest.fail(f"rabbitmq: {', '.join(missing)} not set; run: bash tests/services.sh up")
    host = urlsplit(env["RABBITMQ_API_URL"]).hostname
    if host not in ("127.0.0.1", "::1", "localhost"):
        pytest.fail("rabbitmq: RABBITMQ_API_URL is not on loopback (refusing)")
    return env


@pytest.fixture(scope="session")
def rabbit_session() -> tuple[str, str, str]:
    env = _rabbit_env()
    try:
        httpx2.get(
            env["RABBITMQ_API_URL"] + "/api/overview",
            auth=(env["RABBITMQ_USER"], env["RABBITMQ_PASSWORD"]),
            timeout=5,
        ).raise_for_status()
    except Exception as exc:
        pytest.fail(
            f"rabbitmq: management API not answering ({type(exc).__name__}); run: bash tests/services.sh up"
        )
    return env["RABBITMQ_API_URL"], env["RABBITMQ_USER"], env["RABBITMQ_PASSWORD"]


@pytest.fixture
def rabbit(rabbit_session: tuple[str, str, str]) -> Iterator[Rabbit]:
    api, user, password = rabbit_session
    vhost = f"remediator-test-{uuid.uuid4().hex[:8]}"
    found = Rabbit(api, user, password, vhost)
    found.call("PUT", f"/api/vhosts/{found.v}")
    found.call(
        "PUT",
        f"/api/permissions/{found.v}/{user}",
        {"configure": ".*", "write": ".*", "read": ".*"},
    )
    yield found
    found.call("DELETE", f"/api/vhosts/{found.v}")


def suspend_rq(conn: redis.Redis, primer_queue: str) -> None:
    """``rq suspend``, then wait until the worker (which also listens on ``primer_queue``)
    holds: a worker blocked in its dequeue takes one more job before it looks, so a primer job
    is enqueued on its own queue to wake it."""
    from rq import Queue, Worker
    from rq.suspension import suspend

    suspend(conn)
    Queue(primer_queue, connection=conn).enqueue(
        "tests.queues.jobs.record", f"{primer_queue}:done", "primer"
    )
    wait_for(
        lambda: [w.get_state() for w in Worker.all(connection=conn)].count("suspended") >= 1,
        what="the worker to see the suspension",
    )
