"""The overview dashboard as a mixin's: runbook links on the alert panels, the recording rules
read instead of recomputed, every remediation as an annotation, and a ConfigMap for the Grafana
sidecar of kube-prometheus-stack beside the JSON.

The annotation's query is run by promtool's PromQL engine on series where a remediation ends
(real Prometheus evaluation, no mock); the panels' queries run against a real Prometheus in
``tests/test_panels.py``.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS = ROOT / "grafana" / "dashboards"
OVERVIEW = DASHBOARDS / "remediator-overview.json"
# No panel can show these: while they fire, remediator exports nothing.
UNLINKED = {"RemediatorDown", "RemediatorAbsent"}


def _board() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(OVERVIEW.read_text(encoding="utf-8"))
    return data


def _panels() -> list[dict[str, Any]]:
    return [p for p in _board()["panels"] if p["type"] != "row"]


def _rules(name: str) -> list[dict[str, Any]]:
    doc = yaml.safe_load((ROOT / "rules" / name).read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_each_remediator_alert_is_linked_from_the_panel_that_shows_it() -> None:
    runbooks = {r["alert"]: r["annotations"]["runbook_url"] for r in _rules("remediator.rules.yml")}
    linked: dict[str, set[str]] = {}
    for panel in _panels():
        for link in panel.get("links", []):
            alert = link["title"].removeprefix("Runbook: ")
            assert link["url"] == runbooks[alert], (panel["title"], link)
            assert link["targetBlank"] is True
            linked.setdefault(alert, set()).add(panel["title"])
    assert set(linked) == set(runbooks) - UNLINKED
    assert linked["RemediatorWebhookRejected"] == {"Webhooks refused (4xx) by reason"}
    assert linked["RemediatorPaused"] == {"Paused (kill switch)"}


def test_the_panels_read_the_recording_rules_instead_of_recomputing_them() -> None:
    exprs = [target["expr"] for panel in _panels() for target in panel["targets"]]
    for rule in _rules("recording.rules.yml"):
        assert any(rule["record"] + '{job="$job"}' in e for e in exprs), rule["record"]
    for histogram in (
        "remediator_time_to_recovery_seconds",
        "remediator_webhook_request_duration_seconds",
    ):
        assert not any(f"{histogram}_bucket" in e for e in exprs), histogram


def _generator() -> Any:
    name = "remediator_grafana_generate_mixin"
    spec = importlib.util.spec_from_file_location(name, ROOT / "grafana" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


ANNOTATION_TEST = """\
rule_files: []
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'remediator_remediations_total{instance="r:9095", job="remediator", playbook="restart", outcome="success"}'
        values: '0 0 0 0 0 1 1 1 1 1 1 1'
      - series: 'remediator_remediations_total{instance="r:9095", job="remediator", playbook="restart", outcome="failure"}'
        values: '0x11'
      - series: 'remediator_remediations_total{instance="x:9095", job="other", playbook="restart", outcome="success"}'
        values: '0+1x11'
    promql_expr_test:
      - expr: 'EXPR'
        eval_time: 5m
        exp_samples:
          - labels: '{playbook="restart", outcome="success"}'
            value: 1
      - expr: 'EXPR'
        eval_time: 4m
        exp_samples: []
      - expr: 'EXPR'
        eval_time: 8m
        exp_samples: []
"""


def test_every_remediation_is_an_annotation(promtool_bin: str, tmp_path: Path) -> None:
    [annotation] = [a for a in _board()["annotations"]["list"] if a["name"] == "Remediations"]
    assert annotation["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    assert annotation["enable"] is True and annotation["titleFormat"] == "{{playbook}}: {{outcome}}"
    assert annotation["tagKeys"] == "playbook,outcome"
    [(name, expr)] = _generator().annotation_queries()
    assert name == "Remediations" and "$" not in expr
    path = tmp_path / "annotation.test.yml"
    path.write_text(ANNOTATION_TEST.replace("EXPR", expr.replace("'", "''")), encoding="utf-8")
    proc = subprocess.run(
        [promtool_bin, "test", "rules", str(path)], capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_dashboard_ships_as_a_configmap_for_the_grafana_sidecar() -> None:
    path = DASHBOARDS / "remediator-overview.configmap.yml"
    configmap = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert (configmap["apiVersion"], configmap["kind"]) == ("v1", "ConfigMap")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["data"] == {"remediator-overview.json": OVERVIEW.read_text(encoding="utf-8")}


def test_check_finds_a_stale_configmap(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    generator = _generator()
    monkeypatch.setattr(generator, "DASHBOARDS_DIR", tmp_path)
    assert generator.main([]) == 0
    stale = tmp_path / "remediator-overview.configmap.yml"
    stale.write_text(stale.read_text(encoding="utf-8").replace('"1"', '"0"').replace("'1'", "'0'"))
    capsys.readouterr()
    assert generator.main(["--check"]) == 1
    assert "grafana/dashboards/remediator-overview.configmap.yml" in capsys.readouterr().err
