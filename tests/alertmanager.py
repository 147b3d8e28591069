"""A real Alertmanager process on a loopback port, for tests. Stopped by its PID only.

Alone (the default: clustering off), or one peer of an HA cluster on loopback: give each
instance its own ``cluster_port`` and the others' as ``peers``; they gossip silences and the
notification log, so the pair notifies once, as in production."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx2 as httpx
import yaml

from tests.serving import free_port

CLUSTER_FLAGS = (
    "--cluster.settle-timeout=2s",
    "--cluster.gossip-interval=50ms",
    "--cluster.pushpull-interval=1s",
)


class Alertmanager:
    """``webhook_url`` None: alerts route to a receiver without integrations (API use only).

    ``webhook_urls`` adds one ``webhook_config`` per URL to the same receiver (every
    notification goes to each: one per remediator replica). ``cluster_port`` turns clustering
    on, on ``127.0.0.1:cluster_port``, joining the peers on ``127.0.0.1:<port>`` of ``peers``.
    """

    def __init__(
        self,
        binary: str,
        workdir: Path,
        webhook_url: str | None = None,
        token: str | None = None,
        *,
        webhook_urls: Sequence[str] = (),
        cluster_port: int | None = None,
        peers: Sequence[int] = (),
    ) -> None:
        if peers and cluster_port is None:
            raise ValueError("peers need a cluster_port")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cluster_port = cluster_port
        workdir.mkdir(parents=True, exist_ok=True)
        receiver: dict[str, Any] = {"name": "remediator"}
        urls = ([webhook_url] if webhook_url is not None else []) + list(webhook_urls)
        if urls:
            http_config: dict[str, Any] = {}
            if token is not None:
                token_file = workdir / "am.token"
                token_file.write_text(token)
                http_config = {"authorization": {"credentials_file": str(token_file)}}
            receiver["webhook_configs"] = [
                {
                    "url": url,
                    "send_resolved": True,
                    **({"http_config": http_config} if http_config else {}),
                }
                for url in urls
            ]
        config = {
            "route": {
                "receiver": "remediator",
                "group_by": ["alertname"],
                "group_wait": "1s",
                "group_interval": "1s",
                "repeat_interval": "1h",
            },
            "receivers": [receiver],
        }
        self.config_path = workdir / "alertmanager.yml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / "alertmanager.log"
        if cluster_port is None:
            cluster = ["--cluster.listen-address="]
        else:
            cluster = [
                f"--cluster.listen-address=127.0.0.1:{cluster_port}",
                f"--cluster.advertise-address=127.0.0.1:{cluster_port}",
                *(f"--cluster.peer=127.0.0.1:{peer}" for peer in peers),
                *CLUSTER_FLAGS,
            ]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={self.config_path}",
                    f"--storage.path={workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    *cluster,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("alertmanager did not start:\n" + self.log_path.read_text()[-3000:])

    def status(self) -> dict[str, Any]:
        """``GET /api/v2/status`` (``cluster.status`` is "ready" once clustered and settled)."""
        answer = httpx.get(f"{self.url}/api/v2/status", timeout=5)
        assert answer.status_code == 200, answer.text
        found: dict[str, Any] = answer.json()
        return found

    def cluster_peers(self) -> int:
        """How many members (itself included) this instance sees in its cluster."""
        return len(self.status().get("cluster", {}).get("peers") or [])

    def post(self, alerts: list[dict[str, Any]]) -> None:
        answer = httpx.post(f"{self.url}/api/v2/alerts", json=alerts, timeout=5)
        assert answer.status_code == 200, answer.text

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts Alertmanager holds now (active, silenced, inhibited, unprocessed)."""
        answer = httpx.get(f"{self.url}/api/v2/alerts", timeout=5)
        assert answer.status_code == 200, answer.text
        found: list[dict[str, Any]] = answer.json()
        return found

    def silence(self, matchers: dict[str, str], *, minutes: int = 60) -> str:
        """Silence alerts with these label values; the silence id."""
        now = time.time()
        body = {
            "matchers": [
                {"name": k, "value": v, "isRegex": False, "isEqual": True}
                for k, v in matchers.items()
            ],
            "startsAt": _rfc3339(now - 1),
            "endsAt": _rfc3339(now + minutes * 60),
            "createdBy": "tests",
            "comment": "test silence",
        }
        answer = httpx.post(f"{self.url}/api/v2/silences", json=body, timeout=5)
        assert answer.status_code == 200, answer.text
        silence_id: str = answer.json()["silenceID"]
        return silence_id

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def _rfc3339(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + "Z"
