"""The served process: start-up refusal, durability across kill -9, graceful SIGTERM."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from tests.conftest import fixture_payload
from tests.serving import Served

ALERTS = "/api/v1/recovery/alerts"


@pytest.fixture
def served(tmp_path: Path, tokens: dict[str, str]) -> Iterator[Served]:
    server = Served(tmp_path, {}, tokens)
    yield server
    server.stop()


def test_serve_refuses_to_start_without_any_token(tmp_path: Path) -> None:
    config = tmp_path / "c.yml"
    config.write_text(f"store: {{url: 'sqlite:///{tmp_path}/x.db'}}\n")
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("REMEDIATOR_")}
    done = subprocess.run(
        [sys.executable, "-m", "remediator", "serve", "--config", str(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "--insecure-no-auth" in done.stderr


def _storm(n: int) -> list[dict[str, Any]]:
    base = fixture_payload("grouped.json")
    out = []
    for i in range(n):
        payload = copy.deepcopy(base)
        for j, alert in enumerate(payload["alerts"]):
            alert["fingerprint"] = f"{i:08x}{j:08x}"
            alert["labels"]["instance"] = f"host-{i}-{j}"
        out.append(payload)
    return out


def test_every_acknowledged_alert_survives_kill_9(served: Served) -> None:
    served.start()
    acknowledged: set[str] = set()
    lock = threading.Lock()
    stop = threading.Event()

    def sender(chunk: list[dict[str, Any]]) -> None:
        with httpx.Client(timeout=5) as client:
            for payload in chunk:
                if stop.is_set():
                    return
                try:
                    answer = client.post(
                        served.url + ALERTS, json=payload, headers=served.headers("alertmanager")
                    )
                except httpx.HTTPError:
                    return
                if answer.status_code == 200:
                    with lock:
                        acknowledged.update(a["fingerprint"] for a in payload["alerts"])

    payloads = _storm(400)
    threads = [threading.Thread(target=sender, args=(payloads[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    while True:
        with lock:
            if len(acknowledged) >= 100:
                break
    served.kill9()
    stop.set()
    for t in threads:
        t.join(10)
    assert acknowledged

    served.start()
    found: set[str] = set()
    before: int | None = None
    deadline = time.monotonic() + 30.0  # the restarted worker's claims chain the arrivals
    with httpx.Client(timeout=10) as client:
        while True:
            params: dict[str, Any] = {"limit": 1000, "type": "alert:received"}
            if before:
                params["before"] = before
            page = client.get(
                served.url + "/api/v1/recovery/events",
                params=params,
                headers=served.headers("viewer"),
            ).json()
            found.update(e["fingerprint"] for e in page["events"])
            before = page["next_before"]
            if before is None and (acknowledged <= found or time.monotonic() > deadline):
                break
            if before is None:
                time.sleep(0.1)  # scan again
    lost = acknowledged - found
    assert not lost, f"{len(lost)} acknowledged alerts lost after kill -9"


def test_sigterm_finishes_and_exits_cleanly(served: Served) -> None:
    served.start()
    answer = httpx.post(
        served.url + ALERTS,
        json=fixture_payload("grouped.json"),
        headers=served.headers("alertmanager"),
    )
    assert answer.status_code == 200
    assert served.terminate() == 0
    lines = [json.loads(line) for line in served.log().splitlines() if line.startswith("{")]
    assert any(entry["msg"] == "remediator stopped" for entry in lines)


def test_logs_are_one_json_object_per_line(served: Served) -> None:
    served.start()
    payload = fixture_payload("firing_single.json")
    payload["alerts"][0]["labels"]["alertname"] = "Evil\nInjected\r\nLine\u202e"
    payload["receiver"] = "r\nx"
    httpx.post(served.url + ALERTS, json=payload, headers=served.headers("alertmanager"))
    served.terminate()
    for line in served.log().splitlines():
        if line.startswith("{"):
            json.loads(line)
        else:
            # Only the human-readable banner is not JSON.
            assert line.startswith(("remediator ", "Point Alertmanager", "  ")), line
