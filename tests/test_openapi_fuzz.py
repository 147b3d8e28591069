"""Schemathesis against the OpenAPI document, through the ASGI app in process.

Every operation gets ``REMEDIATOR_FUZZ_EXAMPLES`` (default 100) generated requests, valid and
invalid ones, as admin (the intake as alertmanager). Checked: no 5xx, every answer conforms to
the documented schema, status code and content type, and invalid input is never accepted.

The app cannot touch anything outside: fake actions, fake health checks, a fake clock (so a
generated ``verify.health`` step with a long ``within`` never waits), a fresh store, the health
monitor off. Generated configurations keep the restart-only sections of the running one, so
valid ones really are applied (and their targets are only ever checked by the fake checks).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import schemathesis
from schemathesis import Case
from schemathesis.config import SchemathesisConfig
from schemathesis.python import asgi
from starlette.applications import Starlette

from remediator.checks.base import CheckResult
from remediator.clients import Clients
from remediator.clock import FakeClock
from remediator.config import model as config_mod
from remediator.config.auth import Authenticator, Principal
from remediator.config.model import RESTART_ONLY
from remediator.config.targets import Target
from remediator.http.app import create_app
from remediator.http.endpoints import document
from remediator.http.ratelimit import RateLimiter
from remediator.plugins import Plugins
from remediator.runtime import Runtime
from tests.engine_harness import Recorder, fake_registry

EXAMPLES = int(os.environ.get("REMEDIATOR_FUZZ_EXAMPLES", "100"))
TOKENS = {"alertmanager": "fuzz-alertmanager-token", "admin": "fuzz-admin-token-0123"}
SCHEMA_PATH = "/api/v1/recovery/openapi.json"
TYPES = ("docker_container", "docker_service", "redis", "postgres", "http", "process")


class FakeCheck:
    """A health check that never leaves the process."""

    target_type: ClassVar[str] = "any"

    async def check(self, target: Target, clients: Clients, *, timeout: float) -> CheckResult:
        return CheckResult(True, "fake check")


class Fuzz:
    def __init__(self, app: Starlette, runtime: list[Runtime], document: dict[str, Any]) -> None:
        self.app = app
        self.holder = runtime
        self.document = document  # the running configuration at start, as JSON

    @property
    def runtime(self) -> Runtime:
        return self.holder[0]


def build(tmp: Path) -> Fuzz:
    cfg = config_mod.parse(
        {
            "store": {"url": f"sqlite:///{tmp}/fuzz.db"},
            "health": {"enabled": False},
            "targets": [
                {"name": "web", "type": "docker_container"},
                {"name": "cache", "type": "redis", "url": "redis://:pw-fuzz@127.0.0.1:1/0"},
            ],
            "playbooks": [
                {
                    "name": "restart-web",
                    "match": ['alertname=~".+"'],
                    "target": "web",
                    "steps": [{"action": "docker.restart"}],
                    "retry": {"max_attempts": 1},
                }
            ],
        },
        env={},
    )
    holder: list[Runtime] = []

    def ready(rt: Runtime) -> None:
        rt.limiter = RateLimiter(rate=1e6, burst=10**6)
        holder.append(rt)

    authenticator = Authenticator([(Principal(r, r), t) for r, t in TOKENS.items()])  # type: ignore[arg-type]
    app = create_app(
        cfg,
        authenticator=authenticator,
        clock=FakeClock(),
        actions=fake_registry(Recorder()),
        plugins=Plugins(checks={kind: FakeCheck() for kind in TYPES}),
        on_runtime=ready,
    )
    return Fuzz(app, holder, cfg.model_dump(mode="json"))


SETTINGS = {
    "generation": {
        "mode": "all",
        "max-examples": EXAMPLES,
        "database": "none",
        "with-security-parameters": False,
    },
    "phases": {"stateful": {"enabled": False}},
    "checks": {
        "enabled": False,
        "not_a_server_error": {"enabled": True},
        "status_code_conformance": {"enabled": True},
        "content_type_conformance": {"enabled": True},
        "response_schema_conformance": {"enabled": True},
        "negative_data_rejection": {"enabled": True},
    },
    "suppress-health-check": ["all"],
}


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzz]:
    yield build(tmp_path_factory.mktemp("fuzz"))
    asgi.shutdown_lifespans()


schema = schemathesis.openapi.from_dict(document(), config=SchemathesisConfig.from_dict(SETTINGS))


def keep_restart_only(case: Case[Any], fuzz: Fuzz) -> None:
    """A valid generated configuration keeps the running restart-only sections (else it is
    refused before anything interesting happens)."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or not isinstance(case.body, dict):
        return
    for name in RESTART_ONLY:
        case.body[name] = fuzz.document[name]


@schema.parametrize()
def test_the_api_keeps_its_contract(case: Case[Any], fuzz: Fuzz) -> None:
    role = "alertmanager" if case.path.endswith("/alerts") else "admin"
    if case.method == "PUT" and case.path.endswith("/configuration"):
        keep_restart_only(case, fuzz)
    case.call_and_validate(app=fuzz.app, headers={"Authorization": f"Bearer {TOKENS[role]}"})


def test_the_document_is_valid_openapi() -> None:
    schemathesis.openapi.from_dict(document()).validate()
    ids = [entry["operationId"] for item in document()["paths"].values() for entry in item.values()]
    assert len(ids) == len(set(ids))
