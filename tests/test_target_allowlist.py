"""A playbook's ``targets:`` allow-list in the configuration: ``check-config`` warns about a
templated target without one, the allow-list is checked when the configuration loads, every
example configuration has one where it needs one, and ``remediator simulate`` shows the refusal.
(The refusal on a real Docker engine: tests/reliability/test_hostile_targets.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from remediator.config import model as config_mod
from remediator.errors import ConfigError
from tests.test_deploy import check_config
from tests.test_docs import CONFIGS

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = [
    ROOT / "deploy" / "remediator.yml",
    ROOT / "deploy" / "systemd" / "remediator.yml",
    ROOT / "deploy" / "compose" / "remediator.yml",
]


def configuration(**book: Any) -> dict[str, Any]:
    playbook = {"name": "restart-web", "match": ['alertname="ContainerMemoryHigh"'],
                "target": "{{ labels.container }}", "steps": [{"action": "docker.restart"}]}  # fmt: skip
    playbook.update(book)
    return {
        "targets": [
            {"name": "web", "type": "docker_container", "labels": {"role": "web"}},
            {"name": "db", "type": "docker_container", "labels": {"role": "db"}},
        ],
        "playbooks": [playbook],
    }


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "remediator", *args], input=stdin,
                          capture_output=True, text=stdin is None, timeout=60, check=False)  # fmt: skip


def write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "remediator.yml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_check_config_warns_about_a_templated_target_without_an_allow_list(
    tmp_path: Path,
) -> None:
    done = run("check-config", str(write(tmp_path, configuration())))
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "warning: playbooks[0] (restart-web).targets: the target '{{ labels.container }}' comes "
        "from alert text and no allow-list limits it, so a forged label can make it act on any "
        "registered target; add targets: {names: [...]} or {labels: {...}}"
    ]
    pattern = {"id": "web_oom", "pattern": "oom", "category": "memory",
               "recovery": [{"action": "docker.restart"}], "target": "{{ labels.container }}"}  # fmt: skip
    data = configuration(targets={"names": ["web"]}) | {"patterns": [pattern]}
    done = run("check-config", str(write(tmp_path, data)))
    assert done.returncode == 0, done.stderr
    assert [line.split(".targets:")[0] for line in done.stderr.splitlines()] == [
        "warning: patterns[0] (web_oom)"
    ]


@pytest.mark.parametrize(
    "selector",
    [{"labels": {"role": "web"}}, {"names": ["web"]}, {"names": ["web"], "labels": {"x": "y"}}],
)
def test_an_allow_list_by_name_or_label_silences_the_warning(
    tmp_path: Path, selector: dict[str, Any]
) -> None:
    done = run("check-config", str(write(tmp_path, configuration(targets=selector))))
    assert done.returncode == 0 and done.stderr == "", done.stderr


def test_the_allow_list_is_checked_when_the_configuration_loads() -> None:
    def problems(data: dict[str, Any]) -> list[str]:
        with pytest.raises(ConfigError) as caught:
            config_mod.parse(data, env={})
        return [line.removeprefix("<root>: ") for line in caught.value.problems]

    assert problems(configuration(targets={"names": ["ghost"]})) == [
        "playbooks[0].targets.names: unknown target 'ghost'"
    ]
    assert problems(configuration(target="db", targets={"labels": {"role": "web"}})) == [
        "playbooks[0].targets: does not allow its own target 'db'"
    ]
    assert problems(configuration(targets={})) == [
        "playbooks[0].targets: name at least one target in 'names' or one label in 'labels'"
    ]
    bad_label = configuration()
    bad_label["targets"][0]["labels"] = {"role; x": "web"}
    [line] = problems(bad_label)
    assert line.startswith("targets[0].labels: invalid label name 'role; x'")


def test_every_example_configuration_limits_its_templated_targets(tmp_path: Path) -> None:
    for path in EXAMPLES:
        assert config_mod.warnings(check_config(path)) == [], path
    for block in CONFIGS:
        assert config_mod.warnings(config_mod.parse(block.data(), env={})) == [], block.id


def test_simulate_shows_the_refusal_of_a_target_outside_the_allow_list(tmp_path: Path) -> None:
    path = write(tmp_path, configuration(targets={"labels": {"role": "web"}}))
    alerts = [
        {"status": "firing", "labels": {"alertname": "ContainerMemoryHigh", "container": name},
         "annotations": {}, "startsAt": "2026-11-28T10:00:00Z",
         "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": f"f{i}"}
        for i, name in enumerate(["db", "web"])
    ]  # fmt: skip
    body = {"version": "4", "groupKey": "g", "status": "firing", "receiver": "r",
            "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
            "externalURL": "http://127.0.0.1:9093", "alerts": alerts}  # fmt: skip
    done = run("simulate", "--config", str(path), "-", stdin=json.dumps(body).encode())
    assert done.returncode == 0, done.stderr
    db, web = (json.loads(line) for line in done.stdout.splitlines())
    assert (db["runs"], db["reason"], db["rendered_target"]) == (False, "target_not_allowed", "db")
    assert db["steps"] == [] and db["playbook"] == "restart-web"
    assert (web["runs"], web["reason"], web["target"]) == (True, None, "web")
