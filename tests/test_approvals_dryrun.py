"""Dry runs of a playbook with ``approval:`` (issue #15): ``remediator simulate`` and
``POST /test`` say it would ask for approval, and whom; nothing is asked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.engine_harness import restart_playbook
from tests.test_approvals import approval, started
from tests.test_simulate import simulate

SPEC = {"approvers": ["alice"], "slack_usergroups": ["S0OPS01"], "emails": ["carol@example.test"]}


def test_simulate_says_a_playbook_would_ask_for_approval_and_whom(tmp_path: Path) -> None:
    config = {
        "store": {"url": f"sqlite:///{tmp_path}/store/remediator.db"},
        "notifications": {"email": {"host": "127.0.0.1", "sender": "r@example.test",
                                    "to": ["oncall@example.test"]}},
        "approvals": {"link_secret_env": "TEST_DRYRUN_LINK_KEY",
                      "public_url": "https://remediator.example.test"},
        "targets": [{"name": "web", "type": "docker_container", "container": "web"}],
        "playbooks": [
            restart_playbook(approval=SPEC),
            restart_playbook(name="dry", match=['alertname="Other"'], dry_run=True,
                             approval=SPEC),
        ],
    }  # fmt: skip
    path = tmp_path / "remediator.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    alerts = [
        {"status": "firing", "labels": {"alertname": name, "container": "web"},
         "annotations": {}, "startsAt": "2026-01-01T00:00:00Z",
         "endsAt": "0001-01-01T00:00:00Z", "fingerprint": f"f{i}"}
        for i, name in enumerate(["ContainerMemoryHigh", "Other"])
    ]  # fmt: skip
    payload = tmp_path / "payload.json"
    payload.write_text(json.dumps({"version": "4", "status": "firing", "receiver": "r",
                                   "groupKey": "g", "alerts": alerts}))  # fmt: skip
    asks, dry = simulate(path, str(payload))
    assert asks["playbook"] == "restart" and asks["runs"] is True
    assert asks["approval"]["message"] == (
        "would ask for approval by alice, slack group S0OPS01, email:carol@example.test"
    )
    assert asks["approval"]["ttl"] == 900.0 and asks["approval"]["on_expiry"] == "deny"
    assert dry["playbook"] == "dry" and dry["approval"] is None  # a dry run never asks
    assert not (tmp_path / "store").exists()


def test_a_dry_run_over_the_api_says_it_would_ask_and_asks_nobody(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with started(tmp_path, monkeypatch) as app:
        alert = {"status": "firing", "fingerprint": "f1", "startsAt": "2026-01-01T00:00:00Z",
                 "labels": {"alertname": "ContainerMemoryHigh", "container": "web"}}  # fmt: skip
        body = {"version": "4", "status": "firing", "receiver": "r", "groupKey": "g",
                "alerts": [alert]}  # fmt: skip
        answer = app.call("POST", "/test", json=body)
        assert answer.status_code == 200, answer.text
        [trace] = answer.json()["traces"]
        assert trace["approval"]["message"] == "would ask for approval by alice, slack:U0ALICE01"
        assert trace["approval"]["approvers"] == approval()["approvers"]
        target = app.call("POST", "/test", json={"target": "web", "playbook": "restart"})
        assert target.status_code == 200, target.text
        assert target.json()["traces"][0]["approval"]["slack_users"] == ["U0ALICE01"]
        assert app.events("recovery:approval_requested") == []
