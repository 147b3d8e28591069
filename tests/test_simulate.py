"""``remediator simulate``: the decision per alert of a real Alertmanager payload, as JSON lines,
from a real subprocess; it touches nothing (no store is created, no target is contacted).

The playbooks choose between alerts of one payload with each matcher operator (``!=``, ``=~``,
``!~``, and an anchored regex that matches nothing), so a broken operator picks another playbook.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import FIXTURES
from tests.hookserver import Hook, serving

# Playbooks in file order, same priority: the first whose matchers all hold runs.
PLAYBOOKS: list[dict[str, Any]] = [
    {"name": "unanchored", "match": ['alertname="ManualRemediationTest"', 'pod=~"p"'],
     "target": "web", "steps": [{"action": "http.call", "path": "/unanchored"}]},
    {"name": "clean-not-root", "match": ['alertname="DiskAlmostFull"', 'mountpoint!="/"'],
     "target": "disk", "steps": [{"action": "http.call", "path": "/clean"}]},
    {"name": "clean-root", "match": ['alertname="DiskAlmostFull"'],
     "target": "disk", "steps": [{"action": "http.call", "path": "/root"}]},
    {"name": "pods-1-2", "match": ['alertname="ManualRemediationTest"', 'pod=~"p[12]"'],
     "target": "web", "steps": [{"action": "http.call", "path": "/p12"}]},
    {"name": "other-pods", "match": ['alertname="ManualRemediationTest"', 'pod!~"p[12]"'],
     "target": "web", "steps": [{"action": "http.call", "path": "/other"}]},
]  # fmt: skip


def write_config(tmp_path: Path, hook: Hook) -> Path:
    config = {
        "store": {"url": f"sqlite:///{tmp_path}/store/remediator.db"},
        "targets": [
            {"name": "disk", "type": "http", "base_url": hook.url},
            {"name": "web", "type": "http", "base_url": hook.url},
        ],
        "playbooks": PLAYBOOKS,
    }
    path = tmp_path / "remediator.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    (tmp_path / "store").mkdir()
    return path


def simulate(config: Path, payload: str, *, stdin: bytes | None = None) -> list[dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "remediator", "simulate", "--config", str(config), payload],
        input=stdin,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stderr == b""
    lines = done.stdout.decode().splitlines()
    return [json.loads(line) for line in lines]


def picked(decisions: list[dict[str, Any]]) -> list[tuple[str, str, str | None, bool]]:
    return [(d["fingerprint"], d["status"], d["playbook"], d["runs"]) for d in decisions]


def test_one_json_line_per_alert_with_the_playbook_each_operator_picks(tmp_path: Path) -> None:
    with serving() as hook:
        config = write_config(tmp_path, hook)
        disks = simulate(config, str(FIXTURES / "grouped.json"))
        pods = simulate(config, str(FIXTURES / "mixed_firing_resolved.json"))
        assert hook.paths == []  # no target was contacted
    assert not any((tmp_path / "store").iterdir())  # no store was created

    # mountpoint!="/" takes /var; / falls through to the next playbook.
    assert picked(disks) == [
        ("b740fb9ec0e19aca", "firing", "clean-root", True),
        ("1fb0eccaf080988f", "firing", "clean-not-root", True),
    ]
    # pod=~"p" is anchored (matches no pod); =~ "p[12]" takes p1 (and p2, resolved, which runs
    # nothing); !~ "p[12]" takes p3.
    assert picked(pods) == [
        ("e246c3b22eba50b3", "firing", "pods-1-2", True),
        ("370af721faa059e6", "resolved", "pods-1-2", False),
        ("10190e2c6904e5b1", "firing", "other-pods", True),
    ]
    assert pods[1]["reason"] == "resolved" and pods[1]["steps"] == []
    root, var = disks
    assert root["steps"] == [{"action": "http.call", "path": "/root"}]
    assert var["steps"] == [{"action": "http.call", "path": "/clean"}]
    assert (var["target"], var["target_type"], var["category"], var["pattern"]) == (
        "disk",
        "http",
        "disk",
        "disk_full",
    )
    assert set(var) == {
        "fingerprint", "alertname", "status", "pattern", "category", "severity", "playbook",
        "priority", "target", "target_type", "steps", "dry_run", "runs", "reason",
        "rendered_target", "approval",
    }  # fmt: skip


def test_the_payload_can_come_from_stdin(tmp_path: Path) -> None:
    with serving() as hook:
        config = write_config(tmp_path, hook)
        body = (FIXTURES / "grouped.json").read_bytes()
        assert picked(simulate(config, "-", stdin=body)) == picked(
            simulate(config, str(FIXTURES / "grouped.json"))
        )
        assert hook.paths == []


@pytest.mark.parametrize(
    ("payload", "message"),
    [("missing.json", "missing.json: cannot read"), ("-", "-: ")],
)
def test_an_unreadable_or_invalid_payload_is_exit_1(
    tmp_path: Path, payload: str, message: str
) -> None:
    with serving() as hook:
        config = write_config(tmp_path, hook)
    done = subprocess.run(
        [sys.executable, "-m", "remediator", "simulate", "--config", str(config), payload],
        input=b"{not json",
        capture_output=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 1 and done.stdout == b""
    assert done.stderr.decode().startswith(message)
