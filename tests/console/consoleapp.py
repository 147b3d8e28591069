"""A console served in process (Starlette's TestClient) with one token per role, signed in."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from remediator.clock import FakeClock
from remediator.config import model as config_mod
from remediator.config.auth import Authenticator, Principal
from remediator.http.app import create_app
from remediator.http.ratelimit import RateLimiter
from remediator.plugins import Plugins
from remediator.runtime import Runtime
from tests.engine_harness import Recorder, fake_registry

ROLES = ("viewer", "approver", "admin")
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def tokens() -> dict[str, str]:
    return {role: f"{role}-console-token-0123456789" for role in (*ROLES, "alertmanager")}


@contextmanager
def served(
    tmp_path: Path, extra: dict[str, Any] | None = None
) -> Iterator[tuple[TestClient, Runtime]]:
    cfg = config_mod.parse(
        {
            "store": {"url": f"sqlite:///{tmp_path}/console.db"},
            "health": {"enabled": False},
            "targets": [{"name": "web", "type": "docker_container"}],
            **(extra or {}),
        },
        env={},
    )
    auth = Authenticator([(Principal(role, role), tok) for role, tok in tokens().items()])  # type: ignore[arg-type]
    holder: list[Runtime] = []
    app = create_app(
        cfg, authenticator=auth, clock=FakeClock(), actions=fake_registry(Recorder()),
        plugins=Plugins(), on_runtime=holder.append,
    )  # fmt: skip
    with TestClient(app, raise_server_exceptions=True, follow_redirects=False) as client:
        holder[0].limiter = RateLimiter(rate=1000, burst=1000)
        yield client, holder[0]


def sign_in(client: TestClient, role: str) -> str:
    """Sign ``client`` in as ``role``; the session's CSRF token."""
    form = client.get("/console/login")
    csrf = CSRF.search(form.text)
    assert csrf is not None
    answer = client.post("/console/login", data={"csrf": csrf.group(1), "token": tokens()[role]})
    assert answer.status_code == 303, answer.text
    page = client.get("/console/")
    assert page.status_code == 200
    found = CSRF.search(page.text)
    assert found is not None
    return found.group(1)
