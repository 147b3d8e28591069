"""Shared fixtures: configurations, tokens, an in-process app client, a served subprocess."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from remediator.config import model as config_mod
from remediator.config.auth import Authenticator, Principal
from remediator.http.app import create_app
from remediator.runtime import Runtime

pytest_plugins = [
    "tests.realservices",
    "tests.slackapi",
    "tests.smtpserver",
    "tests.dockerd",
    "tests.sshhost",
]

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "alertmanager"
ALERTS = "/api/v1/recovery/alerts"
EVENTS = "/api/v1/recovery/events"
HEALTH = "/api/v1/recovery/health"


def fixture_payload(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def fixture_names() -> list[str]:
    names = sorted(p.name for p in FIXTURES.glob("*.json"))
    assert names, f"no Alertmanager fixtures found in {FIXTURES}"
    return names


@pytest.fixture
def tokens() -> dict[str, str]:
    return {role: secrets.token_urlsafe(24) for role in ("alertmanager", "viewer", "admin")}


@pytest.fixture
def authenticator(tokens: dict[str, str]) -> Authenticator:
    return Authenticator([(Principal(role, role), tok) for role, tok in tokens.items()])  # type: ignore[arg-type]


@pytest.fixture
def headers(tokens: dict[str, str]) -> Callable[[str], dict[str, str]]:
    def make(role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens[role]}"}

    return make


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., config_mod.Config]:
    def make(**sections: Any) -> config_mod.Config:
        data: dict[str, Any] = {"store": {"url": f"sqlite:///{tmp_path}/remediator.db"}}
        data.update(sections)
        return config_mod.parse(data, env={})

    return make


class AppHarness:
    """An in-process app with its runtime, driven through Starlette's TestClient."""

    def __init__(self, client: TestClient, holder: list[Runtime]) -> None:
        self.client = client
        self._holder = holder

    @property
    def runtime(self) -> Runtime:
        return self._holder[0]


@pytest.fixture
def harness(
    make_config: Callable[..., config_mod.Config], authenticator: Authenticator
) -> Iterator[AppHarness]:
    holder: list[Runtime] = []
    app = create_app(make_config(), authenticator=authenticator, on_runtime=holder.append)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield AppHarness(client, holder)
