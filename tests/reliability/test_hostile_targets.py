"""A forged target label against a playbook's ``targets:`` allow-list, on a real Docker engine.

Two containers are registered: ``web`` (labels ``role: web``) and ``db`` (``role: db``). The
web playbook's target is ``{{ labels.container }}`` and its allow-list is ``role: web``. An
alert that says ``container="db"`` renders a registered name, so only the allow-list stands
between it and a database restart. Expected: the db container is not restarted (its
``StartedAt`` and the engine's own "start" events are unchanged), the alert is skipped and
escalated as ``target_not_allowed`` with a message naming the playbook and its list, the dry
run and a manual trigger refuse it too; the same alert naming ``web`` restarts web once.
"""

from __future__ import annotations

from typing import Any

import docker
import httpx2 as httpx

from tests.realservices import ContainerFactory
from tests.reliability.conftest import Figures, Serve
from tests.reliability.support import ALERTS, FastServed, alert, payload
from tests.test_engine_docker import StartCounter
from tests.waiting import wait_for

PREFIX = "/api/v1/recovery"
PLAYBOOK = "restart-web"


def config(web: Any, db: Any) -> dict[str, Any]:
    return {
        "health": {"enabled": False},
        "targets": [
            {"name": "web", "type": "docker_container", "container": web.name,
             "labels": {"role": "web"}},
            {"name": "db", "type": "docker_container", "container": db.name,
             "labels": {"role": "db"}},
        ],
        "playbooks": [
            {"name": PLAYBOOK, "match": ['alertname="ContainerMemoryHigh"'],
             "target": "{{ labels.container }}", "targets": {"labels": {"role": "web"}},
             "steps": [{"action": "docker.restart", "stop_timeout": 1}],
             "cooldown": "0s", "retry": {"max_attempts": 1}},
        ],
    }  # fmt: skip


def memory_alert(fingerprint: str, container: str) -> dict[str, Any]:
    return alert(fingerprint, "ContainerMemoryHigh", labels={"container": container})


def events(served: FastServed, kind: str) -> list[dict[str, Any]]:
    answer = httpx.get(served.url + f"{PREFIX}/events", params={"type": kind, "limit": 1000},
                       headers=served.headers("viewer"))  # fmt: skip
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()["events"]
    return found


def post(served: FastServed, path: str, body: dict[str, Any], role: str) -> httpx.Response:
    return httpx.post(served.url + path, json=body, headers=served.headers(role), timeout=10)


def test_a_forged_label_cannot_make_a_web_playbook_restart_the_db_container(
    serve: Serve,
    container_factory: ContainerFactory,
    docker_client: docker.DockerClient,
    figures: Figures,
) -> None:
    web = container_factory(("sleep", "3600"), init=True)
    db = container_factory(("sleep", "3600"), init=True)
    db_started, web_started = db.attrs["State"]["StartedAt"], web.attrs["State"]["StartedAt"]
    db_starts, web_starts = StartCounter(docker_client, db.id), StartCounter(docker_client, web.id)
    served = serve(config(web, db))

    # The dry run shows the refusal before anything is sent for real.
    traced = post(served, f"{PREFIX}/test", payload([memory_alert("f0", "db")]), "admin")
    assert traced.status_code == 200, traced.text
    [trace] = traced.json()["traces"]
    assert (trace["runs"], trace["reason"], trace["would_run"]) == (
        False,
        "target_not_allowed",
        False,
    )
    assert trace["playbook"] == PLAYBOOK and trace["rendered_target"] == "db"
    # A manual trigger of the web playbook on db is refused the same way, naming the list.
    manual = post(served, f"{PREFIX}/trigger", {"target": "db", "playbook": PLAYBOOK}, "admin")
    assert manual.status_code == 422, manual.text
    assert "allow-list" in manual.text and "role=web" in manual.text

    assert post(served, ALERTS, payload([memory_alert("f1", "db")]), "alertmanager").is_success
    wait_for(
        lambda: len(events(served, "recovery:escalated")) == 1, timeout=20, what="the escalation"
    )
    [skipped] = events(served, "recovery:skipped")
    [escalated] = events(served, "recovery:escalated")
    for event in (skipped, escalated):
        assert event["outcome"] == "target_not_allowed"
        assert event["details"]["reason"] == "target_not_allowed"
        assert event["message"] == (
            f"target 'db' is not on the allow-list of '{PLAYBOOK}' (labels role=web); refused"
        )

    assert post(served, ALERTS, payload([memory_alert("f2", "web")]), "alertmanager").is_success
    wait_for(
        lambda: len(events(served, "recovery:action")) == 1, timeout=30, what="the web restart"
    )
    [action] = events(served, "recovery:action")
    assert (action["target"], action["outcome"]) == ("web", "success")

    db.reload()
    web.reload()
    assert db.attrs["State"]["StartedAt"] == db_started and db.attrs["State"]["Running"]
    assert web.attrs["State"]["StartedAt"] != web_started
    assert db_starts.count() == 0 and web_starts.count() == 1
    metrics = httpx.get(served.url + "/metrics").text
    assert 'remediator_guard_blocks_total{reason="target_not_allowed"} 1.0' in metrics
    assert 'remediator_escalations_total{reason="target_not_allowed"} 1.0' in metrics
    figures(forged_alerts=1, db_restarts=db_starts.count(), web_restarts=web_starts.count())
