"""``remediator rules`` as a monitoring mixin: job selector, runbook URL pattern, extra labels
and thresholds, the settings the kubernetes and node mixins take.

The rules rendered with other settings are loaded by promtool, whose unit tests show the alerts
firing on series of another job, with the extra label, the runbook URL of the pattern and the
changed threshold; settings that would render broken rules are refused before anything is
written.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from remediator.cli import main
from remediator.config.patterns import Classifier, effective_patterns

ROOT = Path(__file__).resolve().parents[1]
SELECTOR = 'job="remediator-ha", namespace="ops"'
RUNBOOKS = "https://wiki.example/runbooks/remediator/%s"
SETTINGS = [
    "--job-selector", SELECTOR,
    "--runbook-url-pattern", RUNBOOKS,
    "--label", "team=sre",
    "--label", "cluster=eu-1",
    "--threshold", "RemediatorInboxBacklog=500",
    "--threshold", "HostMemoryHigh=0.95",
]  # fmt: skip
SERIES = 'instance="r:9095", job="remediator-ha", namespace="ops"'


@pytest.fixture(autouse=True)
def _no_config_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REMEDIATOR_CONFIG", raising=False)


@pytest.fixture
def written(tmp_path: Path) -> Path:
    out = tmp_path / "rules"
    assert main(["rules", "--out", str(out), *SETTINGS]) == 0
    return out


def _rules(directory: Path) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("*.rules.yml")):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            for rule in group["rules"]:
                found[rule.get("alert") or rule["record"]] = rule
    return found


def test_every_rule_follows_the_mixin_settings(written: Path) -> None:
    rules = _rules(written)
    own = {name: rule for name, rule in rules.items() if "remediator_" in rule["expr"]}
    own |= {n: r for n, r in rules.items() if n.startswith("Remediator")}
    assert len(own) > 15
    for name, rule in own.items():
        assert 'job="remediator"' not in rule["expr"], name
        assert SELECTOR in rule["expr"], name
    alerts = {name: rule for name, rule in rules.items() if "alert" in rule}
    for name, rule in alerts.items():
        assert rule["labels"]["team"] == "sre" and rule["labels"]["cluster"] == "eu-1", name
        assert rule["annotations"]["runbook_url"] == RUNBOOKS % name.lower(), name
    assert alerts["RemediatorInboxBacklog"]["expr"].endswith("> 500")
    assert "> 0.95" in alerts["HostMemoryHigh"]["expr"]
    assert "(threshold 95%)" in alerts["HostMemoryHigh"]["annotations"]["description"]


PROMTOOL_TEST = f"""\
rule_files: [remediator.rules.yml, recording.rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'up{{{SERIES}}}'
        values: '0x10'
      - series: 'up{{instance="r:9095", job="remediator"}}'
        values: '0x10'
      - series: 'remediator_inbox_pending{{{SERIES}}}'
        values: '600x20'
      - series: 'remediator_inbox_pending{{instance="r:9096", job="remediator-ha", namespace="ops"}}'
        values: '400x20'
      - series: 'remediator_webhook_request_duration_seconds_bucket{{{SERIES}, le="0.1"}}'
        values: '0+10x10'
      - series: 'remediator_webhook_request_duration_seconds_bucket{{{SERIES}, le="+Inf"}}'
        values: '0+10x10'
      - series: 'remediator_webhook_request_duration_seconds_bucket{{instance="x", job="other", le="+Inf"}}'
        values: '0+10x10'
    alert_rule_test:
      - eval_time: 4m
        alertname: RemediatorDown
        exp_alerts: []
      - eval_time: 5m
        alertname: RemediatorDown
        exp_alerts:
          - exp_labels: {{severity: critical, team: sre, cluster: eu-1, instance: "r:9095",
                         job: remediator-ha, namespace: ops}}
            exp_annotations:
              summary: remediator is down.
              description: 'Prometheus has not been able to scrape remediator at r:9095 for 5m: alerts are not being remediated.'
              runbook_url: https://wiki.example/runbooks/remediator/remediatordown
      - eval_time: 10m
        alertname: RemediatorInboxBacklog
        exp_alerts:
          - exp_labels: {{severity: warning, team: sre, cluster: eu-1, instance: "r:9095",
                         job: remediator-ha, namespace: ops}}
            exp_annotations:
              summary: remediator is not keeping up with incoming alerts.
              description: '600 stored alerts are waiting for the worker on r:9095 (threshold 500) for more than 10m.'
              runbook_url: https://wiki.example/runbooks/remediator/remediatorinboxbacklog
    promql_expr_test:
      - expr: job:remediator_webhook_request_duration_seconds:p99_rate5m
        eval_time: 5m
        exp_samples:
          - labels: 'job:remediator_webhook_request_duration_seconds:p99_rate5m{{job="remediator-ha"}}'
            value: 0.099
"""


def test_promtool_fires_the_rules_on_the_selected_job_only(
    promtool_bin: str, written: Path
) -> None:
    (written / "mixin.test.yml").write_text(PROMTOOL_TEST, encoding="utf-8")
    files = [str(path) for path in sorted(written.glob("*.rules.yml"))]
    for args in (["check", "rules", *files], ["test", "rules", "mixin.test.yml"]):
        proc = subprocess.run(
            [promtool_bin, *args], cwd=written, capture_output=True, text=True, timeout=120,
            check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--job-selector", "job=remediator"], "not PromQL label matchers"),
        (["--job-selector", 'job="a"} or vector(1) # '], "not PromQL label matchers"),
        (["--runbook-url-pattern", "https://wiki.example/runbooks"], "must hold %s"),
        (["--runbook-url-pattern", "https://wiki.example/%d/%s"], "must hold %s"),
        (["--label", "severity=none"], "set by every alert already"),
        (["--label", "team-name=sre"], "not a Prometheus label name"),
        (["--label", "team"], "expected NAME=VALUE"),
        (["--threshold", "RemediatorDown=1"], "no such alert with a threshold"),
        (["--threshold", "NoSuchAlert=1"], "no such alert with a threshold"),
        (["--threshold", "RemediatorInboxBacklog=nan"], "not a finite number"),
        (["--threshold", "RemediatorInboxBacklog=many"], "could not convert"),
    ],
)
def test_settings_that_would_break_the_rules_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], problem: str
) -> None:
    out = tmp_path / "rules"
    assert main(["rules", "--out", str(out), *args]) == 2
    assert problem in capsys.readouterr().err
    assert not out.exists()


# The node-exporter mixin's alerts (name and summary as it ships them) and the remediator alert
# each one overlaps: the built-in patterns classify both alike.
NODE_MIXIN = [
    ("NodeMemoryHighUtilization", "Host is running out of memory.", "HostMemoryHigh"),
    ("NodeFilesystemAlmostOutOfSpace", "Filesystem has less than 5% space left.",
     "HostDiskUsageHigh"),
    ("NodeFilesystemSpaceFillingUp",
     "Filesystem is predicted to run out of space within the next 24 hours.", "HostDiskFillingUp"),
    ("NodeCPUHighUsage", "High CPU usage.", "HostCpuHigh"),
]  # fmt: skip


def test_the_node_mixin_alerts_are_classified_as_their_host_counterparts() -> None:
    rules = yaml.safe_load((ROOT / "rules" / "host.rules.yml").read_text(encoding="utf-8"))
    summaries = {r["alert"]: r["annotations"]["summary"] for r in rules["groups"][0]["rules"]}
    classifier = Classifier(effective_patterns([], builtin=True))
    for node, summary, host in NODE_MIXIN:
        theirs = classifier.classify(
            {"alertname": node, "instance": "h:9100"}, {"summary": summary}
        )
        mine = classifier.classify({"alertname": host, "instance": "h:9100"},
                                   {"summary": summaries[host]})  # fmt: skip
        assert theirs == mine and theirs.category != "unknown", (node, theirs, host, mine)
