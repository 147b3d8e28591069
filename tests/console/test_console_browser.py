"""The console in a real browser, against a real served remediator acting on a real container."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from tests.console.browser import browser, click_and_confirm, screenshot, sign_in
from tests.realservices import ContainerFactory
from tests.serving import Served
from tests.waiting import wait_for

__all__ = ["browser"]
ALERTS = "/api/v1/recovery/alerts"
HOSTILE = "<script>window.pwned=1</script><img src=x onerror=window.pwned=2>"


def alert(fingerprint: str, alertname: str, container: str, **annotations: str) -> dict[str, Any]:
    return {
        "version": "4", "groupKey": fingerprint, "status": "firing", "receiver": "remediator",
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": alertname, "container": container, "severity": "warning"},
            "annotations": {"summary": f"{alertname} on {container}", **annotations},
            "startsAt": "2026-11-28T10:00:00Z",
            "generatorURL": "http://127.0.0.1:9090/graph?g0.expr=up",
            "fingerprint": fingerprint,
        }],
    }  # fmt: skip


def book(name: str, alertname: str, target: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name, "match": [f'alertname="{alertname}"'], "target": target,
        "steps": [{"action": "docker.restart", "stop_timeout": 1}],
        "cooldown": "0s", "retry": {"max_attempts": 1}, **extra,
    }  # fmt: skip


@pytest.fixture
def tokens(tokens: dict[str, str]) -> dict[str, str]:
    """The shared roles plus an approver (a named token: role ``approver`` has no variable)."""
    return {**tokens, "approver": secrets.token_urlsafe(24)}


@pytest.fixture
def served(
    tmp_path: Path, tokens: dict[str, str], container_factory: ContainerFactory
) -> Iterator[tuple[Served, Any]]:
    web = container_factory(("sleep", "3600"), init=True)
    cfg = {
        "targets": [
            {"name": "web", "type": "docker_container", "container": web.name},
            {"name": "ghost", "type": "docker_container", "container": "remediator-no-such-1"},
        ],
        "playbooks": [
            book("restart-web", "WebDown", "web"),
            book(
                "approved-restart", "WebNeedsApproval", "web", approval={"approvers": ["approver"]}
            ),
            book("restart-ghost", "GhostDown", "ghost"),
        ],
        "circuit_breaker": {"failure_threshold": 1, "reset_timeout": "1h"},
        "alertmanager": {"url": "http://127.0.0.1:9093"},
        "health": {"enabled": False},
    }
    server = Served(tmp_path, cfg, tokens)
    server.start()
    try:
        yield server, web
    finally:
        server.stop()


def post(server: Served, body: dict[str, Any]) -> None:
    answer = httpx.post(server.url + ALERTS, json=body, headers=server.headers("alertmanager"))
    assert answer.status_code == 200, answer.text


def page_has(driver: webdriver.Chrome, url: str, text: str) -> bool:
    driver.get(url)
    return text in driver.page_source


def test_an_admin_sees_a_real_restart_approves_resets_a_breaker_and_pauses(
    browser: webdriver.Chrome, served: tuple[Served, Any], tokens: dict[str, str]
) -> None:
    server, web = served
    started = web.attrs["State"]["StartedAt"]
    base = server.url
    post(server, alert("fa01", "WebDown", "web"))
    sign_in(browser, base, tokens["admin"])
    wait_for(lambda: page_has(browser, base + "/console/incidents/fa01", "recovery:succeeded"),
         what="the restart in the timeline")  # fmt: skip
    assert "docker.restart" in browser.page_source
    href = browser.find_element(By.ID, "prometheus").get_attribute("href")
    assert href is not None and href.startswith("http://127.0.0.1:9090/graph")
    web.reload()
    assert web.attrs["State"]["StartedAt"] != started
    screenshot(browser, "timeline")

    # a breaker opened by a failing restart, and an approval pending
    restarted = web.attrs["State"]["StartedAt"]
    post(server, alert("fa03", "GhostDown", "ghost"))
    wait_for(lambda: page_has(browser, base + "/console/", "reset-ghost"), what="the open breaker")
    post(server, alert("fa02", "WebNeedsApproval", "web"))

    # the approver: approve/deny on the approval, no breaker reset, no pause; approving runs it
    sign_in(browser, base, tokens["approver"])
    wait_for(lambda: page_has(browser, base + "/console/", "approved-restart"), what="the approval")
    button = wait_for(
        lambda: browser.find_elements(By.CSS_SELECTOR, "[id^=approve-]"), what="button"
    )
    assert browser.find_elements(By.CSS_SELECTOR, "[id^=deny-]")
    assert "ghost" in browser.find_element(By.ID, "breakers").text
    for forbidden in ("[id^=reset-]", "[id^=lift-]", "#pause", "#resume"):
        assert browser.find_elements(By.CSS_SELECTOR, forbidden) == [], forbidden
    screenshot(browser, "now")
    click_and_confirm(browser, button[0].get_attribute("id") or "", reason="looks right")
    wait_for(lambda: page_has(browser, base + "/console/incidents/fa02", "recovery:succeeded"),
         what="the approved restart")  # fmt: skip
    web.reload()
    assert web.attrs["State"]["StartedAt"] != restarted
    decided = httpx.get(base + "/api/v1/recovery/events", params={"type": "recovery:approved"},
                        headers=server.headers("viewer")).json()["events"]  # fmt: skip
    assert [e["actor"] for e in decided] == ["approver"]

    # the admin resets the breaker from the console
    sign_in(browser, base, tokens["admin"])
    browser.get(base + "/console/")
    click_and_confirm(browser, "reset-ghost")
    assert "reset-ghost" not in browser.page_source
    browser.get(base + "/console/history?playbook=restart-web")
    screenshot(browser, "history")
    browser.get(base + "/console/targets")
    screenshot(browser, "targets")

    # the kill switch
    browser.get(base + "/console/")
    click_and_confirm(browser, "pause", reason="maintenance")
    assert "PAUSED" in browser.find_element(By.ID, "switch").text
    click_and_confirm(browser, "resume")
    assert "running" in browser.find_element(By.ID, "switch").text
    kinds = httpx.get(base + "/api/v1/recovery/events", params={"type": "recovery:paused"},
                      headers=server.headers("viewer")).json()["events"]  # fmt: skip
    assert [(e["actor"], e["details"]["reason"]) for e in kinds] == [("env-admin", "maintenance")]


def test_a_viewer_sees_no_buttons_a_forged_post_is_403_and_a_script_annotation_is_text(
    browser: webdriver.Chrome, served: tuple[Served, Any], tokens: dict[str, str]
) -> None:
    server, _ = served
    base = server.url
    post(server, alert("fb01", "WebNeedsApproval", "web", description=HOSTILE))
    post(server, {**alert("fb02", "Bad" + HOSTILE, "web")})
    browser.get_log("browser")  # type: ignore[no-untyped-call]  # drop what came before
    sign_in(browser, base, tokens["viewer"])
    wait_for(lambda: page_has(browser, base + "/console/", "approved-restart"), what="the approval")
    assert browser.find_elements(By.CSS_SELECTOR, "button.action") == []
    wait_for(lambda: page_has(browser, base + "/console/incidents/fb02", "Bad&lt;script&gt;"),
         what="the hostile alert")  # fmt: skip
    time.sleep(0.3)
    assert browser.execute_script("return window.pwned === undefined") is True
    logged = browser.get_log("browser")  # type: ignore[no-untyped-call]
    problems = [e for e in logged if e["level"] == "SEVERE"]
    assert problems == []
    # a forged POST with the viewer's own session cookie and CSRF token
    cookie = {c["name"]: c["value"] for c in browser.get_cookies()}
    browser.get(base + "/console/")
    csrf = browser.find_element(By.NAME, "csrf").get_attribute("value")
    forged = httpx.post(base + "/console/pause", data={"csrf": csrf, "confirm": "yes"},
                        cookies=cookie, follow_redirects=False)  # fmt: skip
    assert forged.status_code == 403
    no_csrf = httpx.post(base + "/console/pause", data={"confirm": "yes"}, cookies=cookie)
    assert no_csrf.status_code == 403
