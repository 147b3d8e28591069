"""The console over plain HTTP: sign-in, cookies, headers, roles, CSRF, confirmation, escaping."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from remediator.audit.events import Event
from remediator.engine.guards import PAUSE_FLAG
from remediator.store import EventQuery
from tests.console.consoleapp import ROLES, served, sign_in, tokens


@pytest.mark.parametrize("role", ROLES)
def test_each_role_signs_in_with_its_token_and_sees_now(tmp_path: Path, role: str) -> None:
    with served(tmp_path) as (client, _):
        sign_in(client, role)
        page = client.get("/console/")
        assert f"{role} ({role})" in page.text
        actions = 'class="action"' in page.text
        assert actions is (role == "admin")  # pause is an admin action; nothing awaits approval


def test_the_session_cookie_is_httponly_and_strict_and_pages_carry_a_strict_csp(
    tmp_path: Path,
) -> None:
    with served(tmp_path) as (client, _):
        form = client.get("/console/login")
        csp = form.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        assert form.headers["x-frame-options"] == "DENY"
        csrf = form.text.split('name="csrf" value="')[1].split('"')[0]
        answer = client.post("/console/login", data={"csrf": csrf, "token": tokens()["viewer"]})
        cookie = answer.headers["set-cookie"]
        assert "remediator_console=" in cookie
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert "Secure" not in cookie  # plain http here


def test_without_a_session_pages_redirect_to_sign_in_and_bad_tokens_are_refused(
    tmp_path: Path,
) -> None:
    with served(tmp_path) as (client, _):
        assert client.get("/console/").headers["location"] == "/console/login"
        form = client.get("/console/login")
        csrf = form.text.split('name="csrf" value="')[1].split('"')[0]
        for token in ("wrong-token-0123456789", tokens()["alertmanager"]):
            assert (
                client.post("/console/login", data={"csrf": csrf, "token": token}).status_code
                == 401
            )
        forged = client.post("/console/login", data={"csrf": "x", "token": tokens()["admin"]})
        assert forged.status_code == 403
        client.cookies.set("remediator_console", "forged.cookie.value")
        assert client.get("/console/").status_code == 303


def test_a_viewer_gets_403_on_a_forged_action_post(tmp_path: Path) -> None:
    with served(tmp_path) as (client, rt):
        csrf = sign_in(client, "viewer")
        answer = client.post("/console/pause", data={"csrf": csrf, "confirm": "yes"})
        assert answer.status_code == 403
        assert asyncio.run(rt.store.flag(PAUSE_FLAG)) in (None, "0")


def test_a_post_without_the_csrf_token_is_refused(tmp_path: Path) -> None:
    with served(tmp_path) as (client, rt):
        sign_in(client, "admin")
        answer = client.post("/console/pause", data={"confirm": "yes"})
        assert answer.status_code == 403
        assert "CSRF" in answer.text
        assert (
            client.post("/console/pause", data={"confirm": "yes", "csrf": "wrong"}).status_code
            == 403
        )
        assert asyncio.run(rt.store.flag(PAUSE_FLAG)) in (None, "0")


def test_pause_asks_for_confirmation_then_pauses_with_the_actor_and_resume_resumes(
    tmp_path: Path,
) -> None:
    with served(tmp_path) as (client, rt):
        csrf = sign_in(client, "admin")
        ask = client.post("/console/pause", data={"csrf": csrf})
        assert ask.status_code == 200 and 'name="confirm" value="yes"' in ask.text
        assert rt.store is not None
        done = client.post("/console/pause", data={"csrf": csrf, "confirm": "yes", "reason": "3am"})
        assert done.status_code == 303
        assert "PAUSED" in client.get("/console/").text
        client.post("/console/resume", data={"csrf": csrf, "confirm": "yes"})
        found = asyncio.run(rt.store.events(EventQuery(type="recovery:paused")))
        assert [(e.actor, e.details["reason"]) for e in found] == [("admin", "3am")]
        assert "running" in client.get("/console/").text


def test_reset_breaker_goes_through_the_api_code_and_is_recorded(tmp_path: Path) -> None:
    with served(tmp_path) as (client, rt):
        csrf = sign_in(client, "admin")
        answer = client.post("/console/breakers/web/reset", data={"csrf": csrf, "confirm": "yes"})
        assert answer.status_code == 303
        found = asyncio.run(rt.store.events(EventQuery(type="circuit:closed")))
        assert [e.actor for e in found] == ["admin"]
        missing = client.post("/console/breakers/nope/reset", data={"csrf": csrf, "confirm": "yes"})
        assert missing.status_code == 404


def test_an_approver_may_decide_but_not_pause(tmp_path: Path) -> None:
    with served(tmp_path) as (client, _):
        csrf = sign_in(client, "approver")
        assert (
            client.post("/console/pause", data={"csrf": csrf, "confirm": "yes"}).status_code == 403
        )
        unknown = client.post(
            "/console/approvals/99/approve", data={"csrf": csrf, "confirm": "yes"}
        )
        assert unknown.status_code == 404


HOSTILE = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">'


def test_alert_text_renders_as_text_on_every_page(tmp_path: Path) -> None:
    with served(tmp_path) as (client, rt):
        event = Event(
            type="alert:received", time=1.0, target=HOSTILE, playbook=HOSTILE, alertname=HOSTILE,
            fingerprint="fp<script>", message=HOSTILE, outcome=HOSTILE,
            details={"generator_url": "javascript:alert(1)"},
        )  # fmt: skip
        asyncio.run(rt.store.append([event]))
        sign_in(client, "viewer")
        for path in ("/console/", "/console/history", "/console/incidents/fp%3Cscript%3E"):
            page = client.get(path)
            assert page.status_code == 200, path
            assert "<script>" not in page.text and 'onerror="' not in page.text, path
            assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in page.text, path
        incident = client.get("/console/incidents/fp%3Cscript%3E").text
        assert "javascript:" in incident and 'href="javascript:' not in incident


def test_history_shows_the_mttr_and_success_rate_of_statistics_for_the_filter(
    tmp_path: Path,
) -> None:
    with served(tmp_path) as (client, rt):
        t = rt.clock.now()
        events = [
            Event(type="service:recovered", time=t - 60, fingerprint=f"r{i}", playbook=book,
                  target="web", duration=float(d))
            for i, (book, d) in enumerate([("a", 10), ("a", 30), ("b", 90)])
        ] + [
            Event(type="recovery:succeeded", time=t - 50, fingerprint="r0", playbook="a"),
            Event(type="recovery:succeeded", time=t - 50, fingerprint="r1", playbook="a"),
            Event(type="recovery:failed", time=t - 50, fingerprint="r2", playbook="a"),
        ]  # fmt: skip
        asyncio.run(rt.store.append(events))
        api = client.get(
            "/api/v1/recovery/statistics",
            params={"window": "1h"},
            headers={"Authorization": f"Bearer {tokens()['viewer']}"},
        ).json()
        sign_in(client, "viewer")
        page = client.get("/console/history", params={"window": "1h", "playbook": "a"}).text
        mttr = api["mttr"]["by_playbook"]["a"]
        assert f'<td id="mttr-mean">{mttr["mean"]}</td>' in page
        assert f'<td id="mttr-count">{mttr["count"]}</td>' in page
        assert f'<td id="success-rate">{api["success_rate"]["by_playbook"]["a"]}</td>' in page
        overall = client.get("/console/history", params={"window": "1h"}).text
        assert f'<td id="mttr-mean">{api["mttr"]["mean"]}</td>' in overall
        assert f'<td id="success-rate">{api["success_rate"]["overall"]}</td>' in overall


def test_now_lists_the_open_incidents_with_a_link_to_their_timeline(tmp_path: Path) -> None:
    with served(tmp_path) as (client, rt):
        payload = {
            "version": "4", "groupKey": "g", "status": "firing", "receiver": "r",
            "alerts": [{"status": "firing", "labels": {"alertname": "Unrelated"},
                        "startsAt": "2026-11-28T10:00:00Z", "fingerprint": "open1"}],
        }  # fmt: skip
        auth = {"Authorization": f"Bearer {tokens()['alertmanager']}"}
        assert client.post("/api/v1/recovery/alerts", json=payload, headers=auth).status_code == 200
        sign_in(client, "viewer")
        assert asyncio.run(rt.store.open_episodes())
        page = client.get("/console/").text
        assert '<a href="/console/incidents/open1">open1</a>' in page
        assert "2026-11-28T10:00:00" in page


def test_targets_shows_each_targets_latest_remediation_events(tmp_path: Path) -> None:
    with served(tmp_path) as (client, rt):
        event = Event(type="recovery:succeeded", time=5.0, target="web", playbook="restart-web",
                      outcome="success", fingerprint="t1")  # fmt: skip
        asyncio.run(rt.store.append([event]))
        sign_in(client, "viewer")
        page = client.get("/console/targets").text
        assert "recovery:succeeded restart-web" in page
        assert '<a href="/console/incidents/t1">incident</a>' in page


def test_the_timeline_shows_each_events_details_and_links_alertmanager_to_its_alert(
    tmp_path: Path,
) -> None:
    with served(tmp_path, {"alertmanager": {"url": "http://127.0.0.1:9093"}}) as (client, rt):
        events = [
            Event(type="recovery:action", time=time.time(), target="web", playbook="p",
                  alertname='Mem"High', fingerprint="d1", outcome="failure",
                  details={"attempt": 2, "backoff_seconds": 4.0, "reason": "x" * 500}),
            Event(type="recovery:resolved", time=time.time(), alertname='Mem"High',
                  fingerprint="d1", details={"time_to_recovery_seconds": 12.5}),
        ]  # fmt: skip
        asyncio.run(rt.store.append(events))
        sign_in(client, "viewer")
        page = client.get("/console/incidents/d1").text
        assert "<b>attempt</b> 2" in page and "<b>backoff_seconds</b> 4.0" in page
        assert "<b>time_to_recovery_seconds</b> 12.5" in page
        assert "x" * 200 + "…" in page and "x" * 201 not in page
        assert (
            'href="http://127.0.0.1:9093/#/alerts?filter=%7Balertname%3D%22Mem%5C%22High%22%7D"'
            in page
        )
