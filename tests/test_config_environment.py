"""Configuration from the environment: ``REMEDIATOR_SECTION__KEY`` per key (over the file, over
the defaults) and ``${VAR:-default}`` in the file."""

from __future__ import annotations

import secrets
from pathlib import Path

import httpx2 as httpx
import pytest
import yaml

from remediator import cli
from remediator.config.model import load, parse
from remediator.errors import ConfigError
from tests.serving import Served, free_port

FILE = {
    "server": {"port": 9100, "host": "127.0.0.1"},
    "notifications": {"slack": {"webhook_url": "http://127.0.0.1:1/hook", "channel": "#file"}},
    "worker": {"concurrency": 3},
}


def test_a_variable_sets_its_key_over_the_file_and_the_file_over_the_default() -> None:
    env = {
        "REMEDIATOR_SERVER__PORT": "9096",  # over the file
        "remediator_notifications__slack__channel": "#env",  # any case, three levels down
        "REMEDIATOR_AUDIT__RETENTION": "7d",  # over the default
        "REMEDIATOR_BUILTIN_PATTERNS": "false",
        "REMEDIATOR_CONFIG": "/elsewhere.yml",  # names no key: left alone
        "REMEDIATOR_ADMIN_TOKEN": "x" * 32,
    }
    cfg = parse(FILE, env)
    assert cfg.server.port == 9096
    assert cfg.server.host == "127.0.0.1"  # the file's, no variable
    slack = cfg.notifications.slack
    assert slack is not None and slack.channel == "#env"
    assert slack.webhook_url == "http://127.0.0.1:1/hook"  # its sibling kept
    assert cfg.worker.concurrency == 3
    assert cfg.audit.retention == 7 * 86400
    assert cfg.builtin_patterns is False
    assert parse(FILE, {}).server.port == 9100


def test_a_top_level_key_can_be_given_whole_as_json() -> None:
    env = {"REMEDIATOR_TARGETS": '[{"name": "web", "type": "docker_container"}]'}
    cfg = parse({}, env)
    assert [t.name for t in cfg.targets] == ["web"]
    with pytest.raises(ConfigError) as bad:
        parse({}, {"REMEDIATOR_TARGETS": "web"})
    assert bad.value.problems == ["REMEDIATOR_TARGETS: not valid JSON"]


def test_a_bad_value_from_a_variable_is_a_problem_that_names_the_variable() -> None:
    with pytest.raises(ConfigError) as bad:
        parse(FILE, {"REMEDIATOR_SERVER__PORT": "ninety", "REMEDIATOR_SERVER__PROT": "1"})
    problems = bad.value.problems
    assert any(
        p.startswith("server.port: ") and p.endswith("(from REMEDIATOR_SERVER__PORT)")
        for p in problems
    ), problems
    assert any(p.endswith("(from REMEDIATOR_SERVER__PROT)") for p in problems), problems


def test_a_default_in_the_file_applies_when_the_variable_is_unset_or_empty(
    tmp_path: Path,
) -> None:
    path = tmp_path / "r.yml"
    path.write_text(
        "server: {port: '${PORT:-9200}', host: '${HOST:-127.0.0.1}'}\n"
        "store: {url: 'sqlite:///${DATA:-data}/r.db'}\n"
    )
    unset = load(path, {})
    assert (unset.server.port, unset.server.host) == (9200, "127.0.0.1")
    assert unset.store.url == "sqlite:///data/r.db"
    given = load(path, {"PORT": "9300", "HOST": "", "DATA": "/var/lib/r"})
    assert (given.server.port, given.server.host) == (9300, "127.0.0.1")
    assert given.store.url == "sqlite:////var/lib/r/r.db"
    path.write_text("store: {url: '${NOPE}'}\n")  # without a default, still a problem
    with pytest.raises(ConfigError) as bad:
        load(path, {})
    assert bad.value.problems == ["store.url: environment variable NOPE is not set"]


def test_check_config_applies_the_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "r.yml"
    path.write_text(yaml.safe_dump(FILE))
    monkeypatch.setenv("REMEDIATOR_SERVER__PORT", "70000")
    assert cli.main(["check-config", str(path)]) == 1
    err = capsys.readouterr().err
    assert "server.port: " in err and "(from REMEDIATOR_SERVER__PORT)" in err


class _EnvServed(Served):
    def __init__(self, workdir: Path, extra: dict[str, str]) -> None:
        tokens = {role: secrets.token_urlsafe(24) for role in ("alertmanager", "viewer", "admin")}
        super().__init__(workdir, {}, tokens)
        self.extra = extra

    def env(self) -> dict[str, str]:
        return {**super().env(), **self.extra}


def test_serve_listens_on_the_port_its_variable_sets(tmp_path: Path) -> None:
    port = free_port()
    served = _EnvServed(tmp_path, {"REMEDIATOR_SERVER__PORT": str(port)})
    file_port = served.port
    served.url = f"http://127.0.0.1:{port}"
    try:
        served.start()
        answer = httpx.get(f"{served.url}/api/v1/recovery/health", timeout=5)
        assert answer.status_code == 200
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{file_port}/api/v1/recovery/health", timeout=1)
    finally:
        served.stop()
