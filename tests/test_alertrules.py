"""``remediator rules``: the ``self_healing`` thresholds and ``check_interval`` drive the rules.

The rule files are written from a configuration and loaded into a real Prometheus, which must
evaluate the threshold groups every ``check_interval`` and compare with the configured
thresholds; ``--check`` finds a stale directory; the defaults are the committed ``rules/``.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
import yaml

from remediator.cli import main
from tests.e2e.stack import Prometheus

ROOT = Path(__file__).resolve().parents[1]
CONFIG = """\
self_healing:
  memory_threshold: 70
  disk_threshold: 95
  cpu_threshold: 75
  response_time_threshold: 750ms
  error_rate_threshold: 2.5
  check_interval: 1m30s
"""
EXPECTED = {
    "HostMemoryHigh": 0.7,
    "ContainerMemoryHigh": 0.7,
    "HostDiskUsageHigh": 0.95,
    "HostCpuHigh": 0.75,
    "ContainerCpuHigh": 0.75,
    "ServiceLatencyHigh": 0.75,
    "ServiceErrorRateHigh": 0.025,
    "HostDiskFillingUp": 0.8,  # not a self_healing threshold: unchanged
    "RemediatorWebhookErrors": 0.05,
}


@pytest.fixture(autouse=True)
def _no_config_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REMEDIATOR_CONFIG", raising=False)


@pytest.fixture
def written(tmp_path: Path) -> Path:
    config = tmp_path / "remediator.yml"
    config.write_text(CONFIG, encoding="utf-8")
    out = tmp_path / "rules"
    assert main(["rules", "--config", str(config), "--out", str(out)]) == 0
    return out


@pytest.fixture
def prometheus(tmp_path: Path, prometheus_bin: str, written: Path) -> Iterator[Prometheus]:
    server = Prometheus(prometheus_bin, tmp_path / "prometheus", [])
    config = yaml.safe_load(server.config_path.read_text(encoding="utf-8"))
    config["rule_files"] = [str(path) for path in sorted(written.glob("*.rules.yml"))]
    server.config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def threshold(query: str) -> float:
    """The last ``> NUMBER`` comparison of a rule's query, as Prometheus loaded it."""
    found = re.findall(r">\s*([0-9.]+)", query)
    assert found, f"no '> threshold' in {query!r}"
    return float(found[-1])


def loaded_groups(server: Prometheus) -> dict[str, dict[str, Any]]:
    answer = httpx.get(f"{server.url}/api/v1/rules", timeout=10)
    assert answer.status_code == 200, answer.text
    return {group["name"]: group for group in answer.json()["data"]["groups"]}


def test_prometheus_evaluates_the_thresholds_every_check_interval(prometheus: Prometheus) -> None:
    groups = loaded_groups(prometheus)
    assert {name: group["interval"] for name, group in groups.items()} == {
        "host": 90,
        "container": 90,
        "service": 90,
        "remediator": 1,  # Prometheus's evaluation_interval (1s in this test server)
        "remediator-recording": 1,
        "queue": 1,  # the queue alerts (rules/queue.rules.yml) keep the evaluation interval
    }
    queries = {
        rule["name"]: rule["query"]
        for group in groups.values()
        for rule in group["rules"]
        if rule["type"] == "alerting"
    }
    actual = {name: threshold(queries[name]) for name in EXPECTED}
    assert actual == pytest.approx(EXPECTED)


def test_the_descriptions_quote_the_configured_thresholds(written: Path) -> None:
    host = yaml.safe_load((written / "host.rules.yml").read_text(encoding="utf-8"))
    memory = next(r for r in host["groups"][0]["rules"] if r["alert"] == "HostMemoryHigh")
    assert "(threshold 70%)" in memory["annotations"]["description"]
    service = yaml.safe_load((written / "service.rules.yml").read_text(encoding="utf-8"))
    latency = next(r for r in service["groups"][0]["rules"] if r["alert"] == "ServiceLatencyHigh")
    assert "(threshold 0.75s)" in latency["annotations"]["description"]


def test_promtool_accepts_the_written_rules(promtool_bin: str, written: Path) -> None:
    files = [str(path) for path in sorted(written.glob("*.rules.yml"))]
    proc = subprocess.run(
        [promtool_bin, "check", "rules", *files],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_check_finds_a_directory_written_for_other_thresholds(
    written: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = {path.name: path.read_text(encoding="utf-8") for path in written.iterdir()}
    capsys.readouterr()
    assert main(["rules", "--out", str(written), "--check"]) == 1  # the defaults
    out = capsys.readouterr().out
    assert "-    interval: 1m30s\n+    interval: 30s\n" in out
    assert "3 rule file(s) are stale" in out
    assert {path.name: path.read_text(encoding="utf-8") for path in written.iterdir()} == before


def test_the_defaults_are_the_committed_rules() -> None:
    assert main(["rules", "--out", str(ROOT / "rules"), "--check"]) == 0


def test_an_invalid_check_interval_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "remediator.yml"
    config.write_text("self_healing: {check_interval: 0s}\n", encoding="utf-8")
    out = tmp_path / "rules"
    assert main(["rules", "--config", str(config), "--out", str(out)]) == 1
    assert (
        capsys.readouterr().err == "self_healing.check_interval: Input should be greater than 0\n"
    )
    assert not out.exists()
