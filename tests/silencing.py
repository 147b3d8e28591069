"""A remediator in the test process whose playbooks silence in a real Alertmanager, with fake
actions that can be held (the remediation stays ``running`` until released), and ``amtool``
to read the silences as a person would."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from remediator.actions.base import ActionContext
from remediator.clock import FakeClock, iso
from remediator.config import model as config_mod
from remediator.config.auth import Authenticator, Principal
from remediator.http.app import create_app
from remediator.http.ratelimit import RateLimiter
from remediator.plugins import Plugins
from remediator.runtime import Runtime
from remediator.store import EventQuery
from remediator.store.records import Remediation
from tests.engine_harness import Recorder, fake_registry

P = "/api/v1/recovery"
ROLES = {"am": "alertmanager", "alice": "approver", "root": "admin"}
LINK = "https://remediator.example.com"
LABELS = {"alertname": "ContainerMemoryHigh", "severity": "warning", "container": "web"}


def amtool(binary: str, url: str, *args: str) -> list[dict[str, Any]]:
    """``amtool -o json silence query ARGS`` against ``url``."""
    done = subprocess.run(
        [binary, f"--alertmanager.url={url}", "-o", "json", "silence", "query", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    found: list[dict[str, Any]] = json.loads(done.stdout or "[]") or []
    return found


class Rig:
    def __init__(self, client: TestClient, rt: Runtime, tokens: dict[str, str], rec: Recorder):
        self.client, self.rt, self.tokens, self.recorder = client, rt, tokens, rec
        self.gate: asyncio.Event | None = None

    def run(self, fn: Any, *args: Any) -> Any:
        assert self.client.portal is not None
        return self.client.portal.call(fn, *args)

    def call(self, method: str, path: str, who: str = "root", **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        return self.client.request(method, P + path, headers=headers, **kw)

    def hold(self) -> None:
        """Hold every action until :meth:`release`: remediations stay running."""

        async def make() -> asyncio.Event:
            return asyncio.Event()

        self.gate = gate = self.run(make)

        async def wait(_ctx: ActionContext) -> None:
            await gate.wait()

        self.recorder.on_call.append(wait)

    def release(self) -> None:
        gate = self.gate
        assert gate is not None

        async def open_() -> None:
            gate.set()

        self.run(open_)

    def post(
        self, labels: dict[str, str], *, fingerprint: str = "f1", status: str = "firing"
    ) -> Any:
        alert = {
            "status": status,
            "labels": labels,
            "annotations": {"summary": "memory high"},
            "startsAt": iso(1_800_000_000.0),
            "endsAt": iso(1_800_000_100.0) if status == "resolved" else "0001-01-01T00:00:00Z",
            "fingerprint": fingerprint,
        }
        payload = {"version": "4", "status": status, "receiver": "r", "groupKey": "g",
                   "alerts": [alert]}  # fmt: skip
        return self.call("POST", "/alerts", "am", json=payload)

    def events(self, type_: str) -> list[Any]:
        return list(self.run(self.rt.store.events, EventQuery(type=type_, limit=1000)))

    def remediations(self) -> list[Remediation]:
        return list(self.run(self.rt.store.remediations))

    def metric(self, line_start: str) -> float:
        text = self.client.get("/metrics").text
        [line] = [line for line in text.splitlines() if line.startswith(line_start + " ")]
        return float(line.rsplit(" ", 1)[1])


def playbook(silence: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
    book: dict[str, Any] = {
        "name": "restart",
        "match": ['alertname="ContainerMemoryHigh"'],
        "target": "web",
        "steps": [{"action": "docker.restart"}],
        "cooldown": "0s",
        "retry": {"max_attempts": 1},
        "silence": silence,
    }
    book.update(extra)
    return book


@contextlib.contextmanager
def started(
    tmp_path: Path, *, url: str, books: list[dict[str, Any]], db: str = "r.db"
) -> Iterator[Rig]:
    """A remediator on ``tmp_path/db`` whose silences go to ``url``."""
    tokens = {name: secrets.token_urlsafe(24) for name in ROLES}
    auth = Authenticator([(Principal(n, ROLES[n]), t) for n, t in tokens.items()])  # type: ignore[arg-type]
    cfg = config_mod.parse(
        {
            "store": {"url": f"sqlite:///{tmp_path}/{db}"},
            "health": {"enabled": False},
            "targets": [{"name": "web", "type": "docker_container", "container": "web"}],
            "playbooks": books,
            "silences": {"url": url, "link": LINK, "interval": "30s"},
        },
        env={},
    )
    recorder = Recorder()
    holder: list[Runtime] = []
    # Alertmanager keeps real time: the clock starts now (and stands still).
    app = create_app(cfg, authenticator=auth, clock=FakeClock(start=time.time()),
                     plugins=Plugins(), actions=fake_registry(recorder),
                     on_runtime=holder.append)  # fmt: skip
    with TestClient(app, raise_server_exceptions=False) as client:
        holder[0].limiter = RateLimiter(rate=1000, burst=1000)
        yield Rig(client, holder[0], tokens, recorder)
