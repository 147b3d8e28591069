"""``verify.prometheus`` against a real Prometheus scraping a tiny exporter in this process.

The engine runs on the real clock here (Prometheus scrapes in real time) with fake actions:
a condition that clears verifies the remediation, one that never clears escalates it as
ineffective, a hung Prometheus times out while another alert's remediation completes, and a
label value written to inject PromQL stays data inside its string literal.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from remediator.actions.base import ActionContext
from remediator.audit.events import Event
from remediator.clock import SystemClock, iso
from remediator.config import model as config_mod
from remediator.config.auth import Authenticator
from remediator.config.promql import compile_query
from remediator.engine.prometheus import PrometheusQuerier
from remediator.http.app import build_runtime
from remediator.plugins import Plugins
from remediator.runtime import Runtime
from remediator.store import EventQuery
from tests.e2e.stack import Prometheus
from tests.engine_harness import Recorder, fake_registry
from tests.waiting import wait_for

HOSTILE = 'x"} or vector(1) #'
NASTY = ["a\\b", 'quote"d', "single'q", "new\nline", "tab\there", HOSTILE, "}{=~"]


class Exporter:
    """``/metrics`` with whatever series the test sets, for Prometheus to scrape."""

    def __init__(self) -> None:
        self.series: dict[tuple[str, str], float] = {}  # (metric, service label) -> value
        self.lock = threading.Lock()
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = exporter.text().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def set(self, metric: str, service: str, value: float) -> None:
        with self.lock:
            self.series[(metric, service)] = value

    def text(self) -> str:
        with self.lock:
            items = sorted(self.series.items())
        lines = []
        for (metric, service), value in items:
            quoted = service.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
            lines.append(f'{metric}{{service="{quoted}"}} {value}')
        return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def exporter() -> Iterator[Exporter]:
    served = Exporter()
    yield served
    served.server.shutdown()
    served.server.server_close()


@pytest.fixture(scope="module")
def prometheus(
    tmp_path_factory: pytest.TempPathFactory, prometheus_bin: str, exporter: Exporter
) -> Iterator[Prometheus]:
    for value in NASTY:
        exporter.set("demo_label_echo", value, 1)
    server = Prometheus(
        prometheus_bin,
        tmp_path_factory.mktemp("prometheus"),
        [{"job_name": "demo", "static_configs": [{"targets": [exporter.address]}]}],
    )
    server.start()
    try:
        wait_for(
            lambda: len(server.query("demo_label_echo")) == len(NASTY) or None,
            timeout=20,
            what="a first scrape of the exporter",
        )
        yield server
    finally:
        server.stop()


def _seen(prometheus: Prometheus, metric: str, service: str, value: float) -> None:
    """Wait until Prometheus has scraped ``value`` for the series."""
    query = f"{metric}{{service={_go_quote(service)}}} == {value}"
    wait_for(lambda: prometheus.query(query) or None, timeout=10, what=f"{metric} = {value}")


def _go_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class HungServer:
    """Accepts TCP connections and never answers them."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.sock.accept()
                self.accepted.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


@contextlib.asynccontextmanager
async def engine(
    tmp_path: Path, sections: dict[str, Any], recorder: Recorder
) -> AsyncIterator[Runtime]:
    data: dict[str, Any] = {
        "store": {"url": f"sqlite:///{tmp_path}/engine.db"},
        "health": {"enabled": False},
        "safety": {"blast_radius": 1.0, "blast_radius_min_targets": 100},
        **sections,
    }
    rt = await build_runtime(
        config_mod.parse(data, env={}),
        authenticator=Authenticator([]),
        clock=SystemClock(),
        actions=fake_registry(recorder),
        plugins=Plugins(),
        rng=random.Random(7),
    )
    await rt.bus.start()
    await rt.engine.startup()
    try:
        yield rt
    finally:
        await rt.bus.stop()
        await rt.clients.aclose()
        await rt.store.close()
        query = rt.engine.runner.query
        if isinstance(query, PrometheusQuerier):
            query.close()


def firing(fingerprint: str, alertname: str, **labels: str) -> Any:
    from remediator.alerts import Alert

    return Alert.model_validate(
        {
            "status": "firing",
            "labels": {"alertname": alertname, "severity": "warning", **labels},
            "annotations": {"summary": "queue deep"},
            "startsAt": iso(time.time()),
            "endsAt": "0001-01-01T00:00:00Z",
            "fingerprint": fingerprint,
        }
    )


async def decide(rt: Runtime, *alerts: Any) -> list[Event]:
    """Ingest the alerts, process them as one batch, return every recorded event, oldest first."""
    await rt.store.ingest(list(alerts), received_at=time.time(), receiver="r", group_key="g")
    while await rt.worker.run_once():
        pass
    return list(reversed(await rt.store.events(EventQuery(limit=1000))))


def book(name: str, alertname: str, *steps: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "match": [f'alertname="{alertname}"'],
        "target": "{{ labels.service }}",
        "steps": [{"action": "docker.restart"}, *steps],
        "cooldown": "0s",
        "retry": {"max_attempts": 1},
    }


def verify(**fields: Any) -> dict[str, Any]:
    return {
        "action": "verify.prometheus",
        "query": 'demo_queue_depth{service="{{ labels.service }}"}',
        **fields,
    }


def of(events: list[Event], type_: str, target: str = "") -> list[Event]:
    return [e for e in events if e.type == type_ and (not target or e.target == target)]


def test_a_condition_that_clears_verifies_the_remediation(
    tmp_path: Path, exporter: Exporter, prometheus: Prometheus
) -> None:
    exporter.set("demo_queue_depth", "api", 500)
    _seen(prometheus, "demo_queue_depth", "api", 500)
    recorder = Recorder()

    async def drained(ctx: ActionContext) -> None:
        # The restart "works": the queue drains a moment later, and Prometheus scrapes that.
        threading.Timer(1.5, exporter.set, ("demo_queue_depth", "api", 3)).start()

    recorder.on_call.append(drained)
    sections = {
        "prometheus": {"url": prometheus.url, "timeout": "5s"},
        "targets": [{"name": "api", "type": "docker_container"}],
        "playbooks": [book("drain", "QueueDeep", verify(below=10, within="20s", interval="250ms"))],
    }

    async def main() -> list[Event]:
        async with engine(tmp_path, sections, recorder) as rt:
            return await decide(rt, firing("q1", "QueueDeep", service="api"))

    events = asyncio.run(main())
    step = [e for e in of(events, "recovery:action") if e.action == "verify.prometheus"]
    assert [e.outcome for e in step] == ["success"], [e.message for e in events]
    assert step[0].message.startswith("every series below 10 after ")
    tries = int(step[0].message.split(" after ")[1].split(" ")[0])
    assert tries >= 2  # the first queries still saw 500: the condition was re-evaluated
    assert len(of(events, "recovery:verified")) == 1
    assert len(of(events, "recovery:succeeded")) == 1
    assert not of(events, "recovery:failed")


def test_a_condition_that_never_clears_escalates_the_remediation_as_ineffective(
    tmp_path: Path, exporter: Exporter, prometheus: Prometheus
) -> None:
    exporter.set("demo_queue_depth", "stuck", 500)
    _seen(prometheus, "demo_queue_depth", "stuck", 500)
    sections = {
        "prometheus": {"url": prometheus.url, "timeout": "5s"},
        "targets": [{"name": "stuck", "type": "docker_container"}],
        "playbooks": [book("drain", "QueueDeep", verify(below=10, within="2s", interval="500ms"))],
    }

    async def main() -> list[Event]:
        async with engine(tmp_path, sections, Recorder()) as rt:
            return await decide(rt, firing("q2", "QueueDeep", service="stuck"))

    started = time.monotonic()
    events = asyncio.run(main())
    assert time.monotonic() - started >= 1.5  # queried until the last try before the deadline
    step = [e for e in of(events, "recovery:action") if e.action == "verify.prometheus"]
    assert [(e.outcome, e.message) for e in step] == [
        ("failure", "every series below 10 did not hold within 2s")
    ]
    assert not of(events, "recovery:verified")
    assert len(of(events, "recovery:failed")) == 1
    assert [e.outcome for e in of(events, "recovery:escalated")] == ["remediation_failed"]


def test_a_hung_prometheus_times_out_while_other_alerts_are_decided(tmp_path: Path) -> None:
    hung = HungServer()
    recorder = Recorder()

    async def docker_work(ctx: ActionContext) -> None:
        if ctx.target.name == "other":  # blocking work on the default executor, like Docker's
            await asyncio.to_thread(time.sleep, 0.05)

    recorder.on_call.append(docker_work)
    slow = [f"slow-{i}" for i in range(8)]  # more than the default executor's threads here
    sections = {
        "prometheus": {"url": hung.url, "timeout": "2s"},
        "targets": [{"name": n, "type": "docker_container"} for n in [*slow, "other"]],
        "playbooks": [
            book("check", "QueueDeep", verify(within="30s")),
            book("plain", "Plain"),
        ],
    }

    async def main() -> list[Event]:
        async with engine(tmp_path, sections, recorder) as rt:
            alerts = [firing(f"s{i}", "QueueDeep", service=n) for i, n in enumerate(slow)]
            return await asyncio.wait_for(
                decide(rt, *alerts, firing("o1", "Plain", service="other")), timeout=20
            )

    started = time.time()
    try:
        events = asyncio.run(main())
    finally:
        hung.close()
    assert len(hung.accepted) >= 4  # the queries did reach the hung server
    failed = of(events, "recovery:failed")
    assert sorted(e.target for e in failed) == slow
    for event in failed:
        assert "query timed out: no answer within 2s" in event.message
        assert 2.0 <= event.time - started < 10.0
    done = of(events, "recovery:succeeded", "other")
    assert len(done) == 1
    assert done[0].time < min(e.time for e in failed)  # decided while the queries hung


def test_a_label_value_cannot_inject_promql(
    tmp_path: Path, exporter: Exporter, prometheus: Prometheus
) -> None:
    exporter.set("demo_queue_depth", "api", 500)
    exporter.set("demo_hostile", HOSTILE, 7)
    _seen(prometheus, "demo_hostile", HOSTILE, 7)
    sections = {
        "prometheus": {"url": prometheus.url, "timeout": "5s"},
        "targets": [{"name": n, "type": "docker_container"} for n in ["api", "hostile"]],
        "playbooks": [
            {
                **book("inject", "Inject", verify(within="1s", interval="250ms")),
                "target": "api",
            },
            {
                **book(
                    "exact",
                    "Exact",
                    verify(
                        query='demo_hostile{service="{{ labels.service }}"}', above=6, within="5s"
                    ),
                ),
                "target": "hostile",
            },
        ],
    }

    async def main() -> list[Event]:
        async with engine(tmp_path, sections, Recorder()) as rt:
            return await decide(
                rt,
                firing("i1", "Inject", service=HOSTILE),
                firing("i2", "Exact", service=HOSTILE),
            )

    events = asyncio.run(main())
    # Altered, the query would be demo_queue_depth{service="x"} or vector(1): one series.
    steps = {e.target: e for e in of(events, "recovery:action") if e.action == "verify.prometheus"}
    assert steps["api"].outcome == "failure"
    assert steps["api"].message == "some series did not hold within 1s"
    # The same value, as data, matches exactly the series that carries it.
    assert steps["hostile"].outcome == "success"
    assert steps["hostile"].message == "every series above 6 after 1 query(ies) (1 series)"


def test_escaped_label_values_match_exactly_their_series(prometheus: Prometheus) -> None:
    template = compile_query('demo_label_echo{service="{{ labels.v }}"}')
    single = compile_query("demo_label_echo{service='{{ labels.v }}'}")
    querier = PrometheusQuerier(config_mod.PrometheusConfig(url=prometheus.url, timeout=5))

    async def main() -> list[tuple[float, ...]]:
        return [await querier(t.render({"v": v})) for v in NASTY for t in (template, single)]

    try:
        answers = asyncio.run(main())
    finally:
        querier.close()
    assert answers == [(1.0,)] * (2 * len(NASTY))


def test_a_scalar_answer_is_one_value_not_two_series(prometheus: Prometheus) -> None:
    querier = PrometheusQuerier(config_mod.PrometheusConfig(url=prometheus.url, timeout=5))

    async def main() -> list[tuple[float, ...]]:
        return [await querier(q) for q in ["2", "scalar(vector(3))", "vector(4)", "absent(up)"]]

    try:
        assert asyncio.run(main()) == [(2.0,), (3.0,), (4.0,), ()]
    finally:
        querier.close()
