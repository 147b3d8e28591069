"""Configuration: seed defaults, durations, env expansion, problem lines, check-config."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from remediator.config import model as config_mod
from remediator.config.auth import load_credentials
from remediator.config.durations import parse_duration
from remediator.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_seed_defaults() -> None:
    cfg = config_mod.parse({}, env={})
    assert cfg.circuit_breaker.model_dump() == {
        "enabled": True,
        "failure_threshold": 5,
        "reset_timeout": 60.0,
        "half_open_requests": 3,
    }
    sh = cfg.self_healing
    assert (sh.memory_threshold, sh.disk_threshold, sh.cpu_threshold) == (85, 90, 80)
    assert (sh.response_time_threshold, sh.error_rate_threshold, sh.check_interval) == (
        5.0,
        5,
        30.0,
    )
    assert cfg.server.port == 9095 and cfg.server.max_body_bytes == 4 * 1024 * 1024
    assert cfg.store.url == "sqlite:///data/remediator.db"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("250ms", 0.25),
        (12, 12.0),
        ("2d", 172800.0),
    ],
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "5", "5 m", "m5", "-1s", True, "1h junk"])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_problems_name_their_field_paths() -> None:
    data = {
        "targets": [{"name": "web", "type": "docker_container"}, {"name": "x", "type": "dockr"}],
        "playbooks": [
            {"name": "a", "target": "web", "steps": [{"action": "docker.restart"}]},
            {"name": "b", "target": "nowhere", "steps": [{"action": "docker.restart"}]},
            {
                "name": "c",
                "target": "{{ labels.container }}",
                "steps": [{"action": "docker.restrat"}],
            },
        ],
        "circuit_breaker": {"reset_timeout": "soon"},
    }
    with pytest.raises(ConfigError) as caught:
        config_mod.parse(data, env={})
    problems = caught.value.problems
    assert "playbooks[2].steps[0].action: unknown action 'docker.restrat'" in problems
    assert "targets[1].type: unknown target type 'dockr'" in problems
    assert any(p.startswith("circuit_breaker.reset_timeout: not a duration") for p in problems)


def test_cross_references_are_checked() -> None:
    data = {
        "targets": [{"name": "web", "type": "docker_container"}],
        "playbooks": [
            {
                "name": "b",
                "target": "nowhere",
                "pattern": "nope",
                "steps": [{"action": "docker.start"}],
            }
        ],
    }
    with pytest.raises(ConfigError) as caught:
        config_mod.parse(data, env={})
    assert caught.value.problems == [
        "playbooks[0].pattern: unknown pattern or category 'nope'",
        "playbooks[0].target: unknown target 'nowhere'",
    ]


def test_env_expansion_and_missing_variables() -> None:
    cfg = config_mod.parse({"store": {"url": "sqlite:///${DIR}/x.db"}}, env={"DIR": "/tmp/r"})
    assert cfg.store.url == "sqlite:////tmp/r/x.db"
    with pytest.raises(ConfigError) as caught:
        config_mod.parse({"store": {"url": "${NOPE}"}}, env={})
    assert caught.value.problems == ["store.url: environment variable NOPE is not set"]


def test_unknown_keys_are_rejected() -> None:
    with pytest.raises(ConfigError) as caught:
        config_mod.parse({"server": {"prot": 1}}, env={})
    assert caught.value.problems[0].startswith("server.prot:")


def test_tokens_from_files_env_and_role_variables(tmp_path: Path) -> None:
    (tmp_path / "a.token").write_text("a" * 32 + "\n")
    (tmp_path / "a.token").chmod(0o600)  # a token file others may read is refused
    cfg = config_mod.parse(
        {
            "auth": {
                "tokens": [
                    {"name": "am", "role": "alertmanager", "token_file": str(tmp_path / "a.token")},
                    {"name": "ops", "role": "viewer", "token_env": "OPS_TOKEN"},
                ]
            }
        },
        env={},
    )
    creds = load_credentials(
        cfg.auth, env={"OPS_TOKEN": "v" * 20, "REMEDIATOR_ADMIN_TOKEN": "z" * 20}
    )
    assert [(p.name, p.role, t) for p, t in creds] == [
        ("am", "alertmanager", "a" * 32),
        ("ops", "viewer", "v" * 20),
        ("env-admin", "admin", "z" * 20),
    ]
    with pytest.raises(ConfigError) as caught:
        load_credentials(cfg.auth, env={"REMEDIATOR_ADMIN_TOKEN": "short"})
    assert "auth.tokens[1].token_env: OPS_TOKEN is not set" in caught.value.problems
    assert "REMEDIATOR_ADMIN_TOKEN: token is shorter than 16 characters" in caught.value.problems


def _check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "remediator", "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_check_config_accepts_the_example() -> None:
    done = _check_config(ROOT / "deploy" / "remediator.yml")
    assert done.returncode == 0, done.stderr


def test_check_config_prints_one_line_per_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "targets: [{name: web, type: docker_container}]\n"
        "playbooks:\n"
        "  - {name: a, target: web, steps: [{action: docker.restart}]}\n"
        "  - {name: b, target: web, steps: [{action: docker.restart}]}\n"
        "  - {name: c, target: web, steps: [{action: docker.restrat}]}\n"
        "server: {port: 99999}\n"
    )
    done = _check_config(bad)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert "playbooks[2].steps[0].action: unknown action 'docker.restrat'" in lines
    assert any(line.startswith("server.port:") for line in lines)
    assert len(lines) == 2


def test_check_config_reports_yaml_errors_and_missing_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("server: {port: [\n")
    done = _check_config(bad)
    assert done.returncode == 1 and "invalid YAML at line" in done.stderr
    assert _check_config(tmp_path / "missing.yml").returncode == 1
