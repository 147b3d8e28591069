"""``python -m bench structure``: how far one alert travels through the code, and the import graph.

1. One alert, traced. A real remediator runs in this process (the app under Starlette's
   TestClient, an SQLite store in a temporary directory, the real Docker engine of
   ``tests/services.sh``). One container from the test image (``network_mode="none"``, label
   ``remediator.test=1``, removed afterwards) is registered as the target ``web``; the alert of
   ``tests/fixtures/alertmanager/firing_single.json``, labelled ``container=<its name>``, is
   POSTed to the webhook and a playbook restarts the container. ``sys.setprofile`` and
   ``threading.setprofile`` (every thread: the event loop, the store's writer, the executor
   threads of the Docker calls) record from the POST until the store announces the commit of
   the ``docker.restart`` ``recovery:action`` event (its commit subscription). The POST waits
   ``SETTLE`` seconds after startup, so that the first runs of the background loops (retention)
   are not counted; what the alert wakes (the outbox) is. Counted:

   - *modules*: distinct ``remediator.*`` modules whose code ran;
   - *cross-module calls*: calls into a ``remediator`` function from a function of another
     ``remediator`` module (a coroutine or generator counts once, when it starts; resuming it
     after an ``await`` is counted apart, as *resumptions*);
   - *distinct caller -> callee pairs*, by module and by function.

2. The import graph of ``remediator/`` (``tests/importgraph.py``: every import, including those
   inside functions and under ``TYPE_CHECKING``): modules, edges, cycles, and the longest
   import chain (modules of one cycle folded into one).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Final

from bench.procs import BenchError
from bench.table import Table

ROOT: Final = Path(__file__).resolve().parent.parent
FIXTURE: Final = ROOT / "tests" / "fixtures" / "alertmanager" / "firing_single.json"
ALERTS: Final = "/api/v1/recovery/alerts"
TIMEOUT: Final = 60.0
SETTLE: Final = 1.0
# generator, coroutine, iterable coroutine, async generator
_GENERATOR_FLAGS: Final = 0x20 | 0x80 | 0x100 | 0x200


def _in_package(module: str) -> bool:
    return module == "remediator" or module.startswith("remediator.")


@dataclass
class Trace:
    """What the profiler saw while ``recording`` was set."""

    recording: bool = False
    modules: set[str] = field(default_factory=set)
    calls: Counter[tuple[str, str]] = field(default_factory=Counter)  # (caller, callee) modules
    functions: set[tuple[str, str]] = field(default_factory=set)  # qualified caller, callee
    resumptions: int = 0
    # Generator and coroutine frames already started (kept alive so that ids are not reused).
    _started: dict[int, FrameType] = field(default_factory=dict)

    def profile(self, frame: FrameType, event: str, arg: Any) -> None:
        if event != "call":
            return
        module = frame.f_globals.get("__name__", "")
        if not isinstance(module, str) or not _in_package(module):
            return
        code = frame.f_code
        resumed = False
        if code.co_flags & _GENERATOR_FLAGS:
            resumed = id(frame) in self._started
            self._started[id(frame)] = frame
        if not self.recording:
            return
        self.modules.add(module)
        caller = frame.f_back
        if caller is None:
            return
        source = caller.f_globals.get("__name__", "")
        if not isinstance(source, str) or not _in_package(source) or source == module:
            return
        if resumed:
            self.resumptions += 1
            return
        self.calls[(source, module)] += 1
        self.functions.add(
            (f"{source}.{caller.f_code.co_qualname}", f"{module}.{code.co_qualname}")
        )

    def forget(self) -> None:
        self._started.clear()


@contextlib.contextmanager
def _profiled(trace: Trace) -> Iterator[None]:
    threading.setprofile(trace.profile)
    sys.setprofile(trace.profile)
    try:
        yield
    finally:
        sys.setprofile(None)
        threading.setprofile(None)


def _config(container: str, store: Path) -> dict[str, Any]:
    from tests.test_engine_docker import config

    target = {"name": "web", "type": "docker_container", "container": container}
    cfg = config([target], match=['alertname="HighMemoryUsage"'])
    return {"store": {"url": f"sqlite:///{store}"}, **cfg}


def _payload() -> dict[str, Any]:
    body: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))
    for item in (body["alerts"][0]["labels"], body["commonLabels"]):
        item["container"] = "web"
    return body


def trace_one_alert() -> Trace:
    """POST one alert to an in-process remediator and trace it to its committed restart."""
    try:
        import docker
        from starlette.testclient import TestClient

        from remediator.audit.events import Event
        from remediator.config import model as config_mod
        from remediator.config.auth import Authenticator, Principal
        from remediator.http.app import create_app
        from remediator.plugins import Plugins
        from remediator.runtime import Runtime
        from tests.realservices import ContainerFactory, load_services_env
    except ImportError as exc:
        raise BenchError(f"structure: cannot import the app or the test services ({exc})") from None
    env = load_services_env()
    if not env.get("DOCKER_HOST") or not env.get("REMEDIATOR_TEST_IMAGE"):
        raise BenchError("structure: no Docker engine; run `bash tests/services.sh up` first")
    os.environ["DOCKER_HOST"] = env["DOCKER_HOST"]
    engine = docker.DockerClient(base_url=env["DOCKER_HOST"], timeout=60)
    factory = ContainerFactory(engine, env["REMEDIATOR_TEST_IMAGE"])
    token = secrets.token_urlsafe(24)
    trace = Trace()
    restarted = threading.Event()
    try:
        container = factory(("sleep", "3600"), init=True, name_prefix="remediator-bench")
        with tempfile.TemporaryDirectory(prefix="remediator-structure-") as tmp:
            cfg = config_mod.parse(_config(container.name, Path(tmp) / "r.db"), env={})
            holder: list[Runtime] = []
            app = create_app(
                cfg,
                authenticator=Authenticator([(Principal("am", "alertmanager"), token)]),
                plugins=Plugins(),
                on_runtime=holder.append,
            )
            with _profiled(trace), TestClient(app, raise_server_exceptions=False) as client:
                rt = holder[0]

                def committed(events: list[Event]) -> None:
                    if any(
                        e.type == "recovery:action" and e.action == "docker.restart" for e in events
                    ):
                        trace.recording = False
                        restarted.set()
                    rt.bus.feed_threadsafe(events)

                rt.store.subscribe(committed)
                time.sleep(SETTLE)  # let the startup runs of the background loops pass
                trace.recording = True
                answer = client.post(
                    ALERTS, json=_payload(), headers={"Authorization": f"Bearer {token}"}
                )
                if answer.status_code != 200:
                    raise BenchError(f"structure: the webhook answered {answer.status_code}")
                if not restarted.wait(TIMEOUT):
                    raise BenchError("structure: no docker.restart recovery:action committed")
                trace.recording = False
    finally:
        trace.forget()
        factory.close()
        engine.close()
    return trace


def _alert_table(trace: Trace) -> Table:
    table = Table(
        "structure: one alert, webhook -> docker.restart -> recovery:action committed",
        ["measure", "count"],
    )
    pairs = trace.calls
    table.add("remediator modules whose code ran", str(len(trace.modules)))
    table.add(
        "rooms they belong to (sub-packages, and modules at the top of the package)",
        str(len(rooms(trace.modules))),
    )
    table.add("cross-module calls", str(sum(pairs.values())))
    table.add("distinct caller -> callee module pairs", str(len(pairs)))
    table.add("distinct caller -> callee function pairs", str(len(trace.functions)))
    table.add("coroutine resumptions across modules (not in the calls)", str(trace.resumptions))
    busiest = ", ".join(f"{a} -> {b} ({n})" for (a, b), n in pairs.most_common(5))
    table.note(f"busiest module pairs: {busiest}")
    table.note("modules: " + " ".join(m.removeprefix("remediator.") for m in sorted(trace.modules)))
    table.note("rooms: " + " ".join(sorted(rooms(trace.modules))))
    return table


def rooms(modules: set[str]) -> set[str]:
    """The rooms of the package these modules are in: ``remediator.store.inbox`` is in
    ``store``, ``remediator.clock`` is a room of its own."""
    return {m.split(".")[1] for m in modules if m.count(".") >= 1}


def _import_table() -> Table:
    from tests import importgraph

    edges = importgraph.graph(importgraph.all_imports())
    found = importgraph.cycles(edges)
    chain = importgraph.longest_chain(edges)
    table = Table("structure: the import graph of remediator/", ["measure", "count"])
    table.add("modules", str(len(edges)))
    table.add("import edges (module -> module)", str(sum(len(t) for t in edges.values())))
    table.add("import cycles (strongly connected groups)", str(len(found)))
    table.add("depth (edges on the longest import chain)", str(max(len(chain) - 1, 0)))
    for group in found:
        table.note("cycle: " + " <-> ".join(group))
    table.note("longest chain: " + " -> ".join(m.removeprefix("remediator.") for m in chain))
    return table


def run(*, trace: bool = True) -> list[Table]:
    began = time.monotonic()
    tables = [_import_table()]
    if trace:
        tables.insert(0, _alert_table(trace_one_alert()))
        tables[0].note(f"traced run took {time.monotonic() - began:.1f} s")
    return tables
