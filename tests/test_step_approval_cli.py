"""``remediator approvals`` on an approval of a single step (issue #15), against a real served
remediator whose target is a real HTTP server: the first step's call is made at once, the
second's only after the CLI approved it, and the first is never made again."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from tests.hookserver import Hook
from tests.serving import Served
from tests.test_approvals_cli import ALICE_ENV, P, cli, fire, hook, open_approvals
from tests.waiting import wait_for

__all__ = ["hook"]  # the fixture


@pytest.fixture
def served(
    tmp_path: Path, tokens: dict[str, str], hook: Hook, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Served]:
    alice = secrets.token_urlsafe(24)
    monkeypatch.setenv(ALICE_ENV, alice)
    second = {"action": "http.call", "path": "/restart",
              "approval": {"approvers": ["alice"], "ttl": "10m"}}  # fmt: skip
    config = {
        "health": {"enabled": False},
        "auth": {"tokens": [{"name": "alice", "role": "approver", "token_env": ALICE_ENV}]},
        "targets": [{"name": "api", "type": "http", "base_url": hook.url}],
        "playbooks": [
            {
                "name": "restart-api",
                "match": ['alertname="ApiDown"'],
                "target": "api",
                "steps": [{"action": "http.call", "path": "/drain"}, second],
                "cooldown": "0s",
                "retry": {"max_attempts": 1},
            }
        ],
    }
    server = Served(tmp_path, config, {**tokens, "alice": alice})
    server.start()
    yield server
    server.stop()


def test_the_cli_approves_a_step_and_the_server_runs_only_that_step_and_after(
    served: Served, hook: Hook
) -> None:
    fire(served)

    [waiting] = wait_for(lambda: open_approvals(served), what="the step's approval request")
    assert waiting["step"] == 1
    assert hook.paths == ["/drain"]  # the step before it ran; the run waits
    listed = cli(served, "viewer", "list", "--state", "open")
    assert listed.returncode == 0, listed.stderr
    assert f"{waiting['id']}  open       restart-api steps[1]  on api" in listed.stdout
    approved = cli(served, "alice", "approve", str(waiting["id"]), "--reason", "go")
    assert approved.returncode == 0, approved.stderr
    wait_for(lambda: hook.paths == ["/drain", "/restart"], what="the approved step's call")

    def succeeded() -> list[Any]:
        answer = httpx.get(
            served.url + P + "/events?type=recovery:succeeded", headers=served.headers("viewer")
        )
        return list(answer.json()["events"])

    wait_for(succeeded, what="the run's success")
    assert hook.paths == ["/drain", "/restart"]
