"""Every endpoint for every role, against one table of what each role may do."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from remediator.clock import FakeClock, iso
from remediator.config import model as config_mod
from remediator.config.auth import Authenticator
from remediator.http.app import create_app
from remediator.http.endpoints import OPERATIONS
from remediator.http.ratelimit import RateLimiter
from remediator.plugins import Plugins
from remediator.runtime import Runtime
from tests.engine_harness import Recorder, fake_registry

API = "/api/v1/recovery"
ROLES = ("anonymous", "alertmanager", "viewer", "admin")
ALERTS = {
    "version": "4",
    "groupKey": "g",
    "status": "firing",
    "receiver": "r",
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "Unrelated"},
            "startsAt": iso(1_800_000_000.0),
            "fingerprint": "f1",
        }
    ],
}
PATTERN = {"id": "cache_full", "pattern": "CacheFull", "category": "memory"}

# (method, path as documented, request, {role: expected}) where expected is a status class:
# "2xx", "401", "403", or "4xx" (a validation or not-found answer: the role was allowed).
PUBLIC = dict.fromkeys(ROLES, "2xx")
INTAKE = {"anonymous": "401", "alertmanager": "2xx", "viewer": "403", "admin": "2xx"}
READ = {"anonymous": "401", "alertmanager": "403", "viewer": "2xx", "admin": "2xx"}
ADMIN = {"anonymous": "401", "alertmanager": "403", "viewer": "403", "admin": "2xx"}
ADMIN_4XX = {**ADMIN, "admin": "4xx"}
Row = tuple[str, str, str, dict[str, Any], dict[str, str]]
TABLE: list[Row] = [
    ("POST", "/alerts", "/alerts", {"json": ALERTS}, INTAKE),
    ("POST", "/alerts", "/alerts", {"json": {"version": "3"}}, {**INTAKE, "alertmanager": "4xx", "admin": "4xx"}),
    ("GET", "/health", "/health", {}, PUBLIC),
    ("GET", "/openapi.json", "/openapi.json", {}, PUBLIC),
    ("GET", "/events", "/events", {"params": {"limit": 5}}, READ),
    ("GET", "/events", "/events", {"params": {"limit": 0}}, {**READ, "viewer": "4xx", "admin": "4xx"}),
    ("GET", "/circuit-breakers", "/circuit-breakers", {}, READ),
    ("GET", "/statistics", "/statistics", {"params": {"window": "1h"}}, READ),
    ("GET", "/targets/{name}", "/targets/web", {}, READ),
    ("GET", "/quarantine", "/quarantine", {}, READ),
    ("GET", "/alerts/poisoned", "/alerts/poisoned", {}, READ),
    ("DELETE", "/quarantine/{target}", "/quarantine/web", {"json": {"reason": "roles test"}}, ADMIN_4XX),
    ("POST", "/circuit-breakers/{service}/reset", "/circuit-breakers/web/reset", {}, ADMIN),
    ("POST", "/circuit-breakers/{service}/reset", "/circuit-breakers/nope/reset", {}, ADMIN_4XX),
    ("POST", "/trigger", "/trigger", {"json": {"target": "web", "action": "docker.restart", "dry_run": True}}, ADMIN),
    ("POST", "/trigger", "/trigger", {"json": {"target": "web"}}, ADMIN_4XX),
    ("POST", "/test", "/test", {"json": ALERTS}, ADMIN),
    ("POST", "/test", "/test", {"json": {"target": "web", "action": "docker.restart"}}, ADMIN),
    ("GET", "/configuration", "/configuration", {}, ADMIN),
    ("PUT", "/configuration", "/configuration", {"json": {"targets": "none"}}, ADMIN_4XX),
    ("GET", "/patterns", "/patterns", {}, ADMIN),
    ("POST", "/patterns", "/patterns", {"json": PATTERN}, ADMIN),
    ("DELETE", "/patterns/{id}", "/patterns/unknown", {}, ADMIN_4XX),
    ("DELETE", "/patterns", "/patterns", {"params": {"id": "unknown"}}, ADMIN_4XX),
    ("POST", "/pause", "/pause", {"json": {"reason": "roles test"}}, ADMIN),
    ("POST", "/resume", "/resume", {}, ADMIN),
    ("GET", "/approvals", "/approvals", {}, READ),
    ("POST", "/approvals/{id}/approve", "/approvals/1/approve", {}, ADMIN_4XX),
    ("POST", "/approvals/{id}/deny", "/approvals/1/deny", {}, ADMIN_4XX),
    ("POST", "/slack/interactions", "/slack/interactions", {}, dict.fromkeys(ROLES, "401")),
    ("GET", "/approvals/{id}/email/{decision}", "/approvals/1/email/approve?token=x", {},
     dict.fromkeys(ROLES, "401")),  # a signed link (none is valid: no link key configured)
    ("POST", "/approvals/{id}/email/{decision}", "/approvals/1/email/approve",
     {"data": {"token": "x"}}, dict.fromkeys(ROLES, "401")),
    ("GET", "/metrics", "/metrics", {}, PUBLIC),
    ("GET", "/-/healthy", "/-/healthy", {}, PUBLIC),
    ("GET", "/-/ready", "/-/ready", {}, PUBLIC),
    ("POST", "/-/reload", "/-/reload", {}, ADMIN_4XX),  # 409: started without a file
]  # fmt: skip


def documented(path: str) -> str:
    return path if path == "/metrics" or path.startswith("/-/") else API + path


@pytest.fixture
def client(tmp_path: Path, authenticator: Authenticator) -> Iterator[tuple[TestClient, Runtime]]:
    cfg = config_mod.parse(
        {
            "store": {"url": f"sqlite:///{tmp_path}/roles.db"},
            "health": {"enabled": False},
            "targets": [{"name": "web", "type": "docker_container"}],
        },
        env={},
    )
    holder: list[Runtime] = []
    app = create_app(
        cfg, authenticator=authenticator, clock=FakeClock(), actions=fake_registry(Recorder()),
        plugins=Plugins(), on_runtime=holder.append,
    )  # fmt: skip
    with TestClient(app, raise_server_exceptions=False) as test_client:
        holder[0].limiter = RateLimiter(rate=1000, burst=1000)
        yield test_client, holder[0]


def status_class(code: int) -> str:
    if code in (401, 403):
        return str(code)
    return f"{code // 100}xx" if code < 400 else "4xx" if code < 500 else str(code)


def test_the_table_covers_every_endpoint() -> None:
    in_table = {(method, documented(path)) for method, path, *_ in TABLE}
    assert in_table == {(op.method, op.path) for op in OPERATIONS}
    for *_, expected in TABLE:
        assert set(expected) == set(ROLES)


@pytest.mark.parametrize(("method", "template", "path", "request_kw", "expected"), TABLE)
def test_every_endpoint_for_every_role(
    client: tuple[TestClient, Runtime],
    headers: Callable[[str], dict[str, str]],
    method: str,
    template: str,
    path: str,
    request_kw: dict[str, Any],
    expected: dict[str, str],
) -> None:
    test_client, _ = client
    got = {}
    for role in ROLES:
        auth = headers(role) if role != "anonymous" else {}
        answer = test_client.request(method, documented(path), headers=auth, **request_kw)
        got[role] = status_class(answer.status_code)
        if answer.status_code >= 400 and path != "/metrics":
            assert set(answer.json()) == {"error"}, answer.text
            assert {"code", "message"} <= set(answer.json()["error"])
        if answer.status_code == 401:
            assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert got == expected


def test_a_wrong_token_is_401_and_basic_auth_works(
    client: tuple[TestClient, Runtime], tokens: dict[str, str]
) -> None:
    test_client, _ = client
    wrong = test_client.get(
        f"{API}/circuit-breakers", headers={"Authorization": "Bearer " + "x" * 32}
    )
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "UNAUTHORIZED"
    basic = base64.b64encode(f"anyone:{tokens['viewer']}".encode()).decode()
    ok = test_client.get(f"{API}/circuit-breakers", headers={"Authorization": f"Basic {basic}"})
    assert ok.status_code == 200
    # A wrong token on the public health endpoint is not an error: the minimal answer.
    health = test_client.get(f"{API}/health", headers={"Authorization": "Bearer nope"})
    assert health.status_code == 200 and "detail" not in health.json()


# --- the console (remediator/http/console/): every page for every role --------------------------

CONSOLE_ROLES = ("none", "viewer", "approver", "admin")
C_READ = {"none": "303", "viewer": "200", "approver": "200", "admin": "200"}
C_APPROVE = {"none": "303", "viewer": "403", "approver": "404", "admin": "404"}
C_ADMIN = {"none": "303", "viewer": "403", "approver": "403", "admin": "303"}
# (method, path as in remediator.http.console.PAGES, path asked, {role: status})
CONSOLE_TABLE: list[tuple[str, str, str, dict[str, str]]] = [
    ("GET", "/", "/console/", C_READ),
    ("GET", "/login", "/console/login", dict.fromkeys(CONSOLE_ROLES, "200")),
    ("POST", "/login", "/console/login", dict.fromkeys(CONSOLE_ROLES, "403")),  # no login CSRF
    ("GET", "/history", "/console/history", C_READ),
    ("GET", "/targets", "/console/targets", C_READ),
    ("GET", "/incidents/{fingerprint:path}", "/console/incidents/f1", C_READ),
    ("POST", "/approvals/{id}/approve", "/console/approvals/1/approve", C_APPROVE),
    ("POST", "/approvals/{id}/deny", "/console/approvals/1/deny", C_APPROVE),
    ("POST", "/breakers/{service}/reset", "/console/breakers/web/reset", C_ADMIN),
    ("POST", "/quarantine/{target}/lift", "/console/quarantine/web/lift", {**C_ADMIN, "admin": "404"}),
    ("POST", "/pause", "/console/pause", C_ADMIN),
    ("POST", "/resume", "/console/resume", C_ADMIN),
    ("POST", "/logout", "/console/logout", {**dict.fromkeys(CONSOLE_ROLES, "303"), "none": "403"}),  # last
]  # fmt: skip


def test_the_console_table_covers_every_console_page() -> None:
    from remediator.http.console import PAGES

    assert {(m, p) for m, p, *_ in CONSOLE_TABLE} == {(m, p) for m, p, _ in PAGES}
    text = (Path(__file__).resolve().parents[1] / "docs" / "api.md").read_text(encoding="utf-8")
    for method, path, _ in PAGES:
        assert f"{method} /console{path.replace(':path', '')}" in text


@pytest.mark.parametrize("role", CONSOLE_ROLES)
def test_every_console_page_for_every_role(tmp_path: Path, role: str) -> None:
    from tests.console.consoleapp import served, sign_in

    with served(tmp_path) as (client, _):
        csrf = sign_in(client, role) if role != "none" else ""
        for method, _, path, expected in CONSOLE_TABLE:
            data = {"csrf": csrf, "confirm": "yes", "reason": "roles test"}
            answer = client.get(path) if method == "GET" else client.post(path, data=data)
            assert str(answer.status_code) == expected[role], (method, path, role)
