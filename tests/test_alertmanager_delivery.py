"""A real Alertmanager delivers to a real remediator with a bearer token."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
import yaml

from tests.serving import Served, free_port


class Alertmanager:
    def __init__(self, binary: str, workdir: Path, webhook_url: str, token: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        token_file = workdir / "am.token"
        token_file.write_text(token)
        config = {
            "route": {
                "receiver": "remediator",
                "group_by": ["alertname"],
                "group_wait": "1s",
                "group_interval": "1s",
                "repeat_interval": "1h",
            },
            "receivers": [
                {
                    "name": "remediator",
                    "webhook_configs": [
                        {
                            "url": webhook_url,
                            "send_resolved": True,
                            "http_config": {"authorization": {"credentials_file": str(token_file)}},
                        }
                    ],
                }
            ],
        }
        self.config_path = workdir / "alertmanager.yml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / "alertmanager.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={self.config_path}",
                    f"--storage.path={workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--cluster.listen-address=",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("alertmanager did not start:\n" + self.log_path.read_text()[-3000:])

    def post(self, alerts: list[dict[str, Any]]) -> None:
        answer = httpx.post(f"{self.url}/api/v2/alerts", json=alerts, timeout=5)
        assert answer.status_code == 200, answer.text

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def chain(
    tmp_path: Path, tokens: dict[str, str], alertmanager_bin: str
) -> Iterator[tuple[Served, Alertmanager]]:
    (tmp_path / "remediator").mkdir()
    served = Served(tmp_path / "remediator", {}, tokens)
    served.start()
    am = Alertmanager(
        alertmanager_bin,
        tmp_path / "am",
        served.url + "/api/v1/recovery/alerts",
        tokens["alertmanager"],
    )
    yield served, am
    am.stop()
    served.stop()


def _events(served: Served, **params: Any) -> list[dict[str, Any]]:
    answer = httpx.get(
        served.url + "/api/v1/recovery/events", params=params, headers=served.headers("viewer")
    )
    events: list[dict[str, Any]] = answer.json()["events"]
    return events


def _wait_for(served: Served, kind: str, alertname: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in _events(served, type=kind):
            if event["alertname"] == alertname:
                return event
        time.sleep(0.2)
    raise AssertionError(f"no {kind} event for {alertname} within {timeout}s")


def test_real_alertmanager_delivers_firing_and_resolved(chain: tuple[Served, Alertmanager]) -> None:
    served, am = chain
    now = datetime.now(UTC)
    alert = {
        "labels": {"alertname": "DeliveryTest", "container": "web-1", "severity": "warning"},
        "annotations": {"summary": "delivery test"},
        "startsAt": now.isoformat(),
        "generatorURL": "http://127.0.0.1:9090/graph",
    }
    am.post([alert])
    fired = _wait_for(served, "alert:received", "DeliveryTest")
    assert fired["status"] == "firing"
    assert fired["actor"] == "alertmanager:remediator"

    alert["endsAt"] = (now + timedelta(milliseconds=10)).isoformat()
    am.post([alert])
    resolved = _wait_for(served, "alert:resolved", "DeliveryTest")
    assert resolved["fingerprint"] == fired["fingerprint"]
    metrics = httpx.get(served.url + "/metrics").text
    assert 'remediator_webhook_requests_total{code="200"}' in metrics
    assert 'remediator_webhook_requests_total{code="401"}' not in metrics
