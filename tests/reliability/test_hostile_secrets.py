"""A stolen admin token cannot move a secret, and no secret is shown anywhere (issue #18, 5-6).

Attack 1: with the admin token, read the configuration (secrets shown as ``***``) and send it
back with a target's ``base_url`` (or ``backup_url``, a Redis URL's host, a webhook's host, or a
playbook's target) moved to a listener the attacker runs, the ``***`` left in place. Expected:
422 ``SECRET_DESTINATION_CHANGED`` naming the field, nothing changed, and the listener receives
nothing while the target's health checks and its playbook keep running (with the real secrets,
at the real target). Sending the document back with its destinations unchanged still keeps the
secrets.

Attack 2: look for the secrets an admin cannot read in the configuration: header values whose
names do not look secret (of targets and of ``http.call`` steps), a webhook URL's path and query.
Expected: none of them in ``GET /configuration``, a dry run, ``remediator simulate``, the events
or the INFO log written while webhook notifications are sent.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx

from tests.hookserver import Hook, serving
from tests.reliability.conftest import Figures, Serve
from tests.reliability.support import FastServed, alert
from tests.reliability.support import payload as webhook
from tests.waiting import wait_for

API = "/api/v1/recovery"
BEARER = "sekritBearer-7d1e4a"  # the target's Authorization header
CUSTOM = "sekritCustom-93b0c2"  # a custom auth header whose name does not look secret
STEP = "sekritStep-5f6a18"  # an http.call step's header value, neutral name
REDIS_PW = "sekritRedis-0c4d77"
HOOK_PATH = "sekritHookPath-2b9e"
HOOK_QUERY = "sekritHookQuery-81aa"
SECRETS = (BEARER, CUSTOM, STEP, REDIS_PW, HOOK_PATH, HOOK_QUERY)


def configuration(legit: Hook) -> dict[str, Any]:
    return {
        "health": {"enabled": True},
        "targets": [
            {"name": "api", "type": "http", "base_url": legit.url, "health_path": "/health",
             "check_interval": "1s",
             "headers": {"Authorization": f"Bearer {BEARER}", "X-Custom-Auth": CUSTOM}},
            {"name": "cache", "type": "redis", "url": f"redis://:{REDIS_PW}@127.0.0.1:1/0",
             "check_interval": "1h"},
        ],
        "playbooks": [
            {"name": "call-api", "match": ['alertname="ApiDown"'], "target": "api",
             "steps": [{"action": "http.call", "path": "/admin/restart",
                        "headers": {"X-Request-Source": STEP}}],
             "cooldown": "0s", "retry": {"max_attempts": 1}},
        ],
        "notifications": {
            "webhooks": [{"name": "ops", "url": f"{legit.url}/hooks/{HOOK_PATH}?key={HOOK_QUERY}"}]
        },
    }  # fmt: skip


def request(served: FastServed, method: str, path: str, **kw: Any) -> httpx.Response:
    return httpx.request(method, served.url + API + path, headers=served.headers("admin"),
                         timeout=10, **kw)  # fmt: skip


def document(served: FastServed) -> dict[str, Any]:
    answer = request(served, "GET", "/configuration")
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()["configuration"]
    return found


def trigger(served: FastServed) -> None:
    answer = request(served, "POST", "/trigger", json={"target": "api", "playbook": "call-api",
                                                        "force": True, "reason": "test"})  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert answer.json()["ok"] is True, answer.text


def calls(hook: Hook, path: str) -> list[dict[str, str]]:
    with hook.lock:
        return [h for p, h in zip(hook.paths, hook.headers, strict=True) if p.startswith(path)]


def test_a_redacted_secret_does_not_follow_a_moved_target(serve: Serve, figures: Figures) -> None:
    with serving() as legit, serving() as attacker:
        served = serve(configuration(legit))
        base = document(served)
        assert base["targets"][0]["headers"] == {"Authorization": "***", "X-Custom-Auth": "***"}

        def moved(change: Any) -> dict[str, Any]:
            doc: dict[str, Any] = json.loads(json.dumps(base))
            change(doc)
            return doc

        def elsewhere(doc: dict[str, Any]) -> None:
            doc["targets"].append({"name": "elsewhere", "type": "http", "base_url": attacker.url})
            doc["playbooks"][0]["target"] = "elsewhere"

        def templated(doc: dict[str, Any]) -> None:
            doc["targets"].append({"name": "elsewhere", "type": "http", "base_url": attacker.url})
            doc["playbooks"][0]["target"] = "{{ labels.service }}"

        attacks = [
            (lambda d: d["targets"][0].update(base_url=attacker.url), "targets[0].base_url"),
            (lambda d: d["targets"][0].update(backup_url=attacker.url), "targets[0].backup_url"),
            (lambda d: d["targets"][1].update(url="redis://***@127.0.0.1:2/0"), "targets[1].url"),
            (elsewhere, "playbooks[0].target"),
            (templated, "playbooks[0].target"),
            (lambda d: d["notifications"]["webhooks"][0].update(url=attacker.url + "/***"),
             "notifications.webhooks[0].url"),
        ]  # fmt: skip
        for change, field in attacks:
            answer = request(served, "PUT", "/configuration", json=moved(change))
            assert answer.status_code == 422, answer.text
            error = answer.json()["error"]
            assert error["code"] == "SECRET_DESTINATION_CHANGED", error
            assert error["details"][0].startswith(field + ":"), error
            assert not any(secret in answer.text for secret in SECRETS)
        assert request(served, "GET", "/configuration").json()["version"] == 1

        # The target keeps working, with its real secrets, at its real address only.
        checks = len(calls(legit, "/health"))
        trigger(served)
        wait_for(
            lambda: len(calls(legit, "/health")) > checks + 1,
            timeout=10,
            what="two more health checks",
        )
        [restart] = calls(legit, "/admin/restart")
        assert restart["Authorization"] == f"Bearer {BEARER}"
        assert restart["X-Custom-Auth"] == CUSTOM and restart["X-Request-Source"] == STEP
        assert calls(legit, "/health")[-1]["Authorization"] == f"Bearer {BEARER}"

        # Unchanged destinations: the document read with GET still keeps every secret.
        kept = moved(lambda d: d["playbooks"][0].update(cooldown="1s"))
        answer = request(served, "PUT", "/configuration", json=kept)
        assert answer.status_code == 200, answer.text
        assert answer.json()["version"] == 2
        trigger(served)
        again = calls(legit, "/admin/restart")[-1]
        assert (again["Authorization"], again["X-Custom-Auth"], again["X-Request-Source"]) == (
            f"Bearer {BEARER}", CUSTOM, STEP,
        )  # fmt: skip

        # A new destination with the secret given again (not ***) is an ordinary change.
        def given_again(doc: dict[str, Any]) -> None:
            doc["targets"][0].update(base_url=attacker.url, headers={"Authorization": "Bearer new"})
            doc["playbooks"][0]["steps"][0]["headers"] = {"X-Request-Source": "new"}

        fresh = moved(given_again)
        assert request(served, "PUT", "/configuration", json=fresh).status_code == 200
        trigger(served)
        [sent] = calls(attacker, "/admin/restart")
        assert sent["Authorization"] == "Bearer new" and "X-Custom-Auth" not in sent
        assert sent["X-Request-Source"] == "new"
        with attacker.lock:
            received = json.dumps(attacker.headers) + json.dumps(attacker.paths)
        assert not any(secret in received for secret in (BEARER, CUSTOM, REDIS_PW, HOOK_PATH))
        figures(attacks_refused=len(attacks), secrets_received_by_attacker=0)


def test_no_header_value_or_webhook_path_is_shown_anywhere(
    serve: Serve, figures: Figures, tmp_path: Path
) -> None:
    with serving() as legit:
        served = serve(configuration(legit))
        shown = request(served, "GET", "/configuration")
        config = shown.json()["configuration"]
        assert config["targets"][0]["headers"] == {"Authorization": "***", "X-Custom-Auth": "***"}
        assert config["playbooks"][0]["steps"][0]["headers"] == {"X-Request-Source": "***"}
        assert config["notifications"]["webhooks"][0]["url"] == f"{legit.url}/***"
        dry = request(served, "POST", "/test", json={"target": "api", "playbook": "call-api"})
        assert dry.status_code == 200, dry.text
        assert dry.json()["traces"][0]["steps"][0]["headers"] == {"X-Request-Source": "***"}

        # Webhook notifications are sent (and logged at INFO) while a remediation runs.
        trigger(served)
        wait_for(
            lambda: len(calls(legit, "/hooks/")) >= 2, timeout=10, what="webhook notifications"
        )
        time.sleep(0.5)  # the log lines of the last delivery
        events = served.events()
        log = served.log_path.read_text(errors="replace")
        assert '"level": "info"' in log

        payload = tmp_path / "payload.json"
        payload.write_text(json.dumps(webhook([alert("0123456789abcdef", "ApiDown")])))
        simulated = subprocess.run(
            [sys.executable, "-m", "remediator", "simulate", "--config", str(served.config_path),
             str(payload)], capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        assert json.loads(simulated.stdout)["steps"][0]["headers"] == {"X-Request-Source": "***"}

        blobs = {
            "configuration": shown.text,
            "dry run": dry.text,
            "events": json.dumps(events),
            "log": log,
            "simulate": simulated.stdout + simulated.stderr,
        }
        for name, blob in blobs.items():
            for secret in SECRETS:
                assert secret not in blob, f"{secret} in the {name}"
        figures(places_checked=len(blobs), secrets=len(SECRETS), leaks=0)
