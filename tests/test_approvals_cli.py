"""``remediator approvals list|approve|deny`` (issue #15) against a real served remediator: the
CLI talks to its HTTP API; an approval runs the playbook there, recorded with channel ``cli``."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from tests.hookserver import Hook, serving
from tests.serving import Served
from tests.waiting import wait_for

P = "/api/v1/recovery"
ALICE_ENV = "TEST_APPROVALS_CLI_ALICE"


@pytest.fixture
def hook() -> Iterator[Hook]:
    with serving() as h:
        yield h


@pytest.fixture
def served(
    tmp_path: Path, tokens: dict[str, str], hook: Hook, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Served]:
    alice = secrets.token_urlsafe(24)
    monkeypatch.setenv(ALICE_ENV, alice)
    config = {
        "health": {"enabled": False},
        "auth": {"tokens": [{"name": "alice", "role": "approver", "token_env": ALICE_ENV}]},
        "targets": [{"name": "api", "type": "http", "base_url": hook.url}],
        "playbooks": [
            {
                "name": "restart-api",
                "match": ['alertname="ApiDown"'],
                "target": "api",
                "steps": [{"action": "http.call", "path": "/restart"}],
                "cooldown": "0s",
                "retry": {"max_attempts": 1},
                "approval": {"approvers": ["alice"], "ttl": "10m"},
            }
        ],
    }
    server = Served(tmp_path, config, {**tokens, "alice": alice})
    server.start()
    yield server
    server.stop()


def cli(served: Served, role: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REMEDIATOR_")}
    env["REMEDIATOR_TOKEN"] = served.tokens[role]
    return subprocess.run(
        [sys.executable, "-m", "remediator", "approvals", *args, "--url", served.url],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def fire(served: Served) -> None:
    alert = {
        "status": "firing",
        "labels": {"alertname": "ApiDown", "severity": "critical"},
        "annotations": {},
        "startsAt": "2026-01-01T00:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "fingerprint": "cli1",
    }
    payload = {"version": "4", "status": "firing", "receiver": "r", "groupKey": "g",
               "alerts": [alert]}  # fmt: skip
    answer = httpx.post(
        served.url + P + "/alerts", json=payload, headers=served.headers("alertmanager")
    )
    assert answer.status_code == 200, answer.text


def open_approvals(served: Served) -> list[Any]:
    """The open approvals, as a viewer reads them from the served API."""
    answer = httpx.get(served.url + P + "/approvals?state=open", headers=served.headers("viewer"))
    return list(answer.json()["approvals"])


def test_the_cli_lists_approves_once_and_the_playbook_runs_on_the_server(
    served: Served, hook: Hook
) -> None:
    fire(served)

    [waiting] = wait_for(lambda: open_approvals(served), what="the approval request")
    rid = waiting["id"]
    listed = cli(served, "viewer", "list", "--state", "open")
    assert listed.returncode == 0, listed.stderr
    assert f"{rid}  open" in listed.stdout and "restart-api  on api" in listed.stdout
    assert hook.paths == []  # nothing ran before the approval

    # a viewer may list but not decide
    refused = cli(served, "viewer", "approve", str(rid))
    assert refused.returncode == 1 and "HTTP 403" in refused.stderr

    approved = cli(served, "alice", "approve", str(rid), "--reason", "checked the dashboard")
    assert approved.returncode == 0, approved.stderr
    assert "approved" in approved.stdout and "alice via cli" in approved.stdout
    wait_for(lambda: hook.paths == ["/restart"], what="the approved playbook's call")

    events = httpx.get(
        served.url + P + "/events?type=recovery:approved", headers=served.headers("viewer")
    ).json()["events"]
    [event] = events
    assert event["actor"] == "alice" and event["details"]["channel"] == "cli"
    assert event["details"]["reason"] == "checked the dashboard"

    # decided once: denying it now is a 409, and nothing more runs
    again = cli(served, "alice", "deny", str(rid))
    assert again.returncode == 1 and "HTTP 409" in again.stderr
    assert hook.paths == ["/restart"]
