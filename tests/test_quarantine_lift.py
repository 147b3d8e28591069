"""Lifting a quarantine: the API (real Docker: the paused container is unpaused), the CLI on
both store backends, and two replicas on one PostgreSQL database."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import httpx2 as httpx
import pytest
import yaml

from remediator import cli
from remediator.audit.events import Event
from remediator.clock import iso
from remediator.config import model as config_mod
from remediator.config.auth import Authenticator
from remediator.store import EventQuery
from tests.inprocess import InProcess, start
from tests.realservices import ContainerFactory
from tests.serving import Served
from tests.store_helpers import opened, store_url
from tests.waiting import wait_for

__all__ = ["store_url"]  # the fixture
API = "/api/v1/recovery"


def payload(fingerprint: str, target: str) -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": "g",
        "status": "firing",
        "receiver": "remediator",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "TargetCompromised", "target": target},
                "annotations": {"summary": "doing damage"},
                "startsAt": iso(1_800_000_000.0),
                "fingerprint": fingerprint,
            }
        ],
    }


ISOLATE = {
    "name": "isolate",
    "match": ['alertname="TargetCompromised"'],
    "target": "{{ labels.target }}",
    "steps": [{"action": "quarantine", "pause": True}],
    "cooldown": "0s",
    "retry": {"max_attempts": 1},
}


def gauge(metrics: str, target: str) -> str:
    prefix = f'remediator_quarantined{{target="{target}"}} '
    [line] = [line for line in metrics.splitlines() if line.startswith(prefix)]
    return line.removeprefix(prefix)


# -- the API, with a real Docker container ------------------------------------------------------


@pytest.fixture
def served(
    tmp_path: Path, tokens: dict[str, str], container_factory: ContainerFactory
) -> Iterator[tuple[Served, Any]]:
    web = container_factory(("sleep", "3600"), init=True)
    config = {
        "targets": [{"name": "web", "type": "docker_container", "container": web.name}],
        "playbooks": [ISOLATE],
        "health": {"enabled": False},
    }
    server = Served(tmp_path, config, tokens)
    server.start()
    try:
        yield server, web
    finally:
        server.stop()


def test_an_admin_lifts_a_quarantine_and_the_paused_container_runs_again(
    served: tuple[Served, Any], docker_client: docker.DockerClient
) -> None:
    server, web = served

    def call(method: str, path: str, role: str, **kw: Any) -> httpx.Response:
        return httpx.request(method, server.url + path, headers=server.headers(role), **kw)

    def events(kind: str) -> list[dict[str, Any]]:
        answer = call("GET", f"{API}/events", "viewer", params={"type": kind})
        found: list[dict[str, Any]] = answer.json()["events"]
        return found

    def paused() -> bool:
        state: bool = docker_client.containers.get(web.id).attrs["State"]["Paused"]
        return state

    assert call("POST", f"{API}/alerts", "alertmanager", json=payload("q1", "web")).is_success
    wait_for(lambda: len(events("recovery:quarantined")) == 1, what="the quarantine")
    wait_for(paused, what="the container paused")
    listed = call("GET", f"{API}/quarantine", "viewer").json()["quarantined"]
    assert [(q["target"], q["reason"], q["paused"]) for q in listed] == [
        ("web", "playbook isolate", True)
    ]
    assert gauge(httpx.get(server.url + "/metrics").text, "web") == "1.0"

    lift = f"{API}/quarantine/web"
    assert call("DELETE", lift, "viewer", json={"reason": "x"}).status_code == 403
    no_reason = call("DELETE", lift, "admin", json={"reason": " "})
    assert no_reason.status_code == 422, no_reason.text
    assert call("DELETE", lift, "admin").status_code == 400  # no body: the reason is required
    assert paused()

    answer = call("DELETE", lift, "admin", json={"reason": "image rebuilt"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["target"] == "web" and body["lifted"] is True and body["unpaused"] is True
    assert body["quarantine_reason"] == "playbook isolate"
    assert not paused()
    assert docker_client.containers.get(web.id).attrs["State"]["Running"]
    [lifted] = events("recovery:quarantine_lifted")
    assert lifted["actor"] == "env-admin" and lifted["target"] == "web"
    assert lifted["details"]["reason"] == "image rebuilt"
    unpaused = [e for e in events("recovery:action") if e["action"] == "docker.unpause"]
    assert [(e["outcome"], e["actor"]) for e in unpaused] == [("success", "env-admin")]
    assert call("GET", f"{API}/quarantine", "viewer").json() == {"quarantined": []}
    assert gauge(httpx.get(server.url + "/metrics").text, "web") == "0.0"

    again = call("DELETE", lift, "admin", json={"reason": "twice"})
    assert again.status_code == 404 and again.json()["error"]["code"] == "NOT_QUARANTINED"
    # Released: the next alert is acted on again (quarantined again, not blocked).
    assert call("POST", f"{API}/alerts", "alertmanager", json=payload("q2", "web")).is_success
    wait_for(lambda: len(events("recovery:quarantined")) == 2, what="the second quarantine")
    assert not [e for e in events("recovery:skipped") if e["outcome"] == "quarantined"]


# -- the CLI, on both backends -----------------------------------------------------------------


def test_the_cli_lists_and_lifts_a_quarantine_in_the_configured_store(
    store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "remediator.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "store": {"url": store_url},
                "targets": [{"name": "api", "type": "http", "base_url": "http://127.0.0.1:9"}],
            }
        )
    )

    async def quarantine() -> None:
        async with opened(store_url) as store:
            await store.set_quarantine("api", reason="playbook isolate", now=1.0e9, events=[])

    async def recorded() -> list[Event]:
        async with opened(store_url) as store:
            return await store.events(EventQuery(type="recovery:quarantine_lifted"))

    import asyncio

    asyncio.run(quarantine())
    assert cli.main(["quarantine", "list", "--config", str(config)]) == 0
    assert capsys.readouterr().out == f"api\t{iso(1.0e9)}\tplaybook isolate\n"
    with pytest.raises(SystemExit):  # --reason is required
        cli.main(["quarantine", "lift", "api", "--config", str(config)])
    capsys.readouterr()
    lift = ["quarantine", "lift", "api", "--reason", "fixed by hand", "--config", str(config)]
    assert cli.main(lift) == 0
    assert capsys.readouterr().out == "api: quarantine lifted\n"
    [event] = asyncio.run(recorded())
    assert event.actor.startswith("cli:") and event.details["reason"] == "fixed by hand"
    assert cli.main(lift) == 1
    assert "not quarantined" in capsys.readouterr().err
    assert cli.main(["quarantine", "list", "--config", str(config)]) == 0
    assert capsys.readouterr().out == ""


# -- two replicas on one PostgreSQL database ---------------------------------------------------


class Replica(InProcess):
    def alert(self, body: dict[str, Any]) -> None:
        assert self.call("POST", f"{API}/alerts", "alertmanager", json=body).status_code == 200
        wait_for(lambda: self.run(self.rt.store.pending_count) == 0, what="the worker")

    def events(self, kind: str) -> list[Event]:
        found: list[Event] = self.run(self.rt.store.events, EventQuery(type=kind))
        return found


@pytest.mark.postgres
def test_a_quarantine_is_lifted_on_one_replica_for_both(
    pg_database: str, authenticator: Authenticator, headers: Callable[[str], dict[str, str]]
) -> None:
    cfg = config_mod.parse(
        {
            "store": {"url": pg_database},
            "health": {"enabled": False},
            "targets": [{"name": "api", "type": "http", "base_url": "http://127.0.0.1:9"}],
            "playbooks": [ISOLATE],
        },
        env={},
    )
    with contextlib.ExitStack() as stack:
        a, b = (
            start(stack, cfg, authenticator=authenticator, headers=headers, kind=Replica)
            for _ in range(2)
        )
        a.alert(payload("r1", "api"))
        assert len(a.events("recovery:quarantined")) == 1
        for replica in (a, b):  # b did not quarantine it: it reads the store
            assert gauge(replica.call("GET", "/metrics").text, "api") == "1.0"
        assert [q["target"] for q in b.call("GET", f"{API}/quarantine", "viewer").json()["quarantined"]] == ["api"]  # fmt: skip
        lifted = b.call("DELETE", f"{API}/quarantine/api", json={"reason": "fixed"})
        assert lifted.status_code == 200 and lifted.json()["unpaused"] is None
        missing = a.call("DELETE", f"{API}/quarantine/api", json={"reason": "late"})
        assert missing.status_code == 404
        for replica in (a, b):
            assert gauge(replica.call("GET", "/metrics").text, "api") == "0.0"
            assert replica.call("GET", f"{API}/quarantine", "viewer").json() == {"quarantined": []}
        assert len(a.events("recovery:quarantine_lifted")) == 1
        a.alert(payload("r2", "api"))  # released on a as well: quarantined again
        assert len(a.events("recovery:quarantined")) == 2
