"""A real Alertmanager process on a loopback port, for tests. Stopped by its PID only."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx
import yaml

from tests.serving import free_port


class Alertmanager:
    """``webhook_url`` None: alerts route to a receiver without integrations (API use only)."""

    def __init__(
        self,
        binary: str,
        workdir: Path,
        webhook_url: str | None = None,
        token: str | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        receiver: dict[str, Any] = {"name": "remediator"}
        if webhook_url is not None:
            webhook: dict[str, Any] = {"url": webhook_url, "send_resolved": True}
            if token is not None:
                token_file = workdir / "am.token"
                token_file.write_text(token)
                webhook["http_config"] = {"authorization": {"credentials_file": str(token_file)}}
            receiver["webhook_configs"] = [webhook]
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
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("alertmanager did not start:\n" + self.log_path.read_text()[-3000:])

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
