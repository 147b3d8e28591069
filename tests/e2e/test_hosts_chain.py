"""The chain for a bare host: a leaking process's RSS (exported by the process itself on
127.0.0.1) breaches a real Prometheus rule, Alertmanager posts to a served remediator, and
remediator restarts the process's unit over SSH (``systemd.restart`` on the sshd of
tests/services.sh) and verifies it.

systemd cannot run as PID 1 here: the unit belongs to the systemctl stand-in
(tests/fixtures/hosts/systemctl), which starts the leaker detached and keeps its pid; the
restart kills it by that pid and starts a new one. Nothing is posted by the test.
"""

from __future__ import annotations

import contextlib
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx

from tests.alertmanager import Alertmanager
from tests.e2e.stack import Prometheus, Remediator
from tests.realservices import free_port
from tests.sshhost import Sshd, Units
from tests.test_hosts_engine import host
from tests.waiting import wait_for

ALERT = "HostProcessMemoryHigh"
THRESHOLD = 48 * 2**20  # bytes of RSS; the leaker starts near 15 MiB and grows ~8 MiB a second
# The leaker: serves its own VmRSS as leaker_resident_memory_bytes and grows until killed.
LEAKER = """\
import http.server, sys, threading, time
heap = []
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0
class Metrics(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"leaker_resident_memory_bytes {rss()}\\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Metrics)
threading.Thread(target=server.serve_forever, daemon=True).start()
while True:
    heap.append(bytearray(800_000))
    time.sleep(0.1)
"""


def test_a_host_process_leak_fires_a_rule_and_its_unit_is_restarted_over_ssh(
    tmp_path: Path,
    sshd: Sshd,
    units: Units,
    prometheus_bin: str,
    alertmanager_bin: str,
) -> None:
    port = free_port()
    script = tmp_path / "leaker.py"
    script.write_text(LEAKER)
    unit = units.create("leaker", exec_line=f"{sys.executable} {script} {port}")
    tokens = {role: secrets.token_urlsafe(24) for role in ("alertmanager", "viewer", "admin")}
    config: dict[str, Any] = {
        "targets": [host(sshd, units=[unit], health_units=[unit])],
        "playbooks": [
            {
                "name": "restart-leaking-unit",
                "match": [f'alertname="{ALERT}"'],
                "target": "{{ labels.host }}",
                "steps": [
                    {"action": "systemd.restart", "unit": "{{ labels.unit }}"},
                    {"action": "verify.health", "within": "20s", "interval": "500ms"},
                ],
                "retry": {"max_attempts": 1},
            }
        ],
    }
    rules = {
        "groups": [
            {
                "name": "hosts",
                "rules": [
                    {
                        "alert": ALERT,
                        "expr": f"leaker_resident_memory_bytes > {THRESHOLD}",
                        "for": "1s",
                        "labels": {"severity": "warning"},
                        "annotations": {"summary": "A host process is using too much memory."},
                    }
                ],
            }
        ]
    }
    with contextlib.ExitStack() as stack:
        assert _start_unit(sshd, unit), "the leaker unit did not start"
        first = units.pid(unit)
        (tmp_path / "remediator").mkdir()
        remediator = Remediator(tmp_path / "remediator", config, tokens)
        stack.callback(remediator.shutdown)
        remediator.start()
        alertmanager = Alertmanager(
            alertmanager_bin,
            tmp_path / "alertmanager",
            webhook_url=remediator.url + "/api/v1/recovery/alerts",
            token=tokens["alertmanager"],
        )
        stack.callback(alertmanager.stop)
        prometheus = Prometheus(
            prometheus_bin,
            tmp_path / "prometheus",
            [
                {
                    "job_name": "leaker",
                    "static_configs": [
                        {"targets": [f"127.0.0.1:{port}"], "labels": {"host": "vm1", "unit": unit}}
                    ],
                }
            ],
            rules=rules,
            alertmanager=alertmanager.url,
        )
        stack.callback(prometheus.stop)
        prometheus.start()
        succeeded = wait_for(
            lambda: remediator.events("recovery:succeeded") or None,
            timeout=60,
            what="the unit's restart to succeed",
            every=0.5,
        )
        assert succeeded[0]["playbook"] == "restart-leaking-unit"
        [restart, *_] = [
            e for e in remediator.events("recovery:action") if e["action"] == "systemd.restart"
        ]
        data = restart["details"]["data"]
        assert data["unit"] == unit and data["before"]["MainPID"] == first
        assert data["after"]["ActiveState"] == "active" and data["after"]["MainPID"] != first
        assert ["restart", "--", unit] in units.calls(unit)
        alerts = remediator.events("alert:received")
        assert any(e.get("alertname") == ALERT for e in alerts)


def _start_unit(sshd: Sshd, unit: str) -> bool:
    """Start the unit as its host would have at boot (through the stand-in, by its path)."""
    import subprocess

    subprocess.run([sshd.systemctl, "start", "--", unit], check=True, timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if (
                httpx.get(f"http://127.0.0.1:{_port_of(sshd, unit)}/metrics", timeout=1).status_code
                == 200
            ):
                return True
        time.sleep(0.1)
    return False


def _port_of(sshd: Sshd, unit: str) -> str:
    return (sshd.units_dir / f"{unit}.exec").read_text().split()[-1]
