"""A served remediator, real actions, real Slack stand-in and SMTP: providers down during 50
remediations, the service killed (-9) and restarted meanwhile; afterwards every notification
arrives exactly once, and no configured secret appears anywhere: not a password, a token, a
header value (of a target or an ``http.call`` step), nor a webhook URL's path or query (the INFO
log is written while webhook notifications are sent)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from tests.hookserver import serving
from tests.serving import Served
from tests.slackapi import SlackAPI
from tests.smtpserver import SMTPServer
from tests.waiting import wait_for

N = 50
SLACK_ENV = "REMEDIATOR_TEST_SLACK_TOKEN"
REDIS_PASSWORD = "s3cr3t-redis-pass-9f2c"  # a test secret that must never leak
HOOK_PATH, HOOK_QUERY = "s3cr3t-hook-path-41d0", "s3cr3t-hook-query-7e3b"  # the webhook URL's
TARGET_HEADER, STEP_HEADER = "s3cr3t-target-hdr-c2a9", "s3cr3t-step-hdr-8b51"  # neutral names


@pytest.fixture
def sleeper(tmp_path: Path) -> Iterator[Path]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    pidfile = tmp_path / "app.pid"
    pidfile.write_text(str(proc.pid))
    yield pidfile
    proc.kill()
    proc.wait(10)


def alert(i: int) -> dict[str, Any]:
    return {
        "status": "firing",
        "labels": {"alertname": "AppStuck", "instance": "app", "severity": "warning", "n": str(i)},
        "annotations": {"summary": "app stuck"},
        "startsAt": "2026-11-28T10:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://127.0.0.1:9090/graph",
        "fingerprint": f"{i:016x}",
    }


def payload(alerts: list[dict[str, Any]]) -> dict[str, Any]:
    return {"version": "4", "groupKey": "g", "status": "firing", "receiver": "remediator",
            "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
            "externalURL": "http://127.0.0.1:9093", "alerts": alerts}  # fmt: skip


def events(served: Served, kind: str | None = None) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"limit": 1000}
    if kind:
        params["type"] = kind
    found: list[dict[str, Any]] = []
    while True:
        page = httpx.get(served.url + "/api/v1/recovery/events", params=params,
                         headers=served.headers("viewer")).json()  # fmt: skip
        found += page["events"]
        if page["next_before"] is None:
            return found
        params["before"] = page["next_before"]


def test_outage_kill_restart_every_notification_once_and_no_secret_leaks(
    tmp_path: Path, tokens: dict[str, str], sleeper: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with SlackAPI() as slack, SMTPServer() as smtp, serving() as hook:
        monkeypatch.setenv(SLACK_ENV, slack.token)
        config = {
            "health": {"enabled": False},
            "targets": [
                {"name": "app", "type": "process", "pidfile": str(sleeper)},
                {"name": "cache", "type": "redis", "url": f"redis://:{REDIS_PASSWORD}@127.0.0.1:1/0"},
                {"name": "api", "type": "http", "base_url": hook.url,
                 "headers": {"X-Custom-Auth": TARGET_HEADER}},
            ],
            "playbooks": [
                {"name": "nudge", "match": ['alertname="AppStuck"'], "target": "app",
                 "steps": [{"action": "process.signal", "signal": "SIGCONT"}],
                 "cooldown": "0s", "max_per_window": None, "retry": {"max_attempts": 1}},
                {"name": "flush", "match": ['alertname="CacheFull"'], "target": "cache",
                 "steps": [{"action": "redis.flushdb", "timeout": "3s"}],
                 "cooldown": "0s", "retry": {"max_attempts": 1}},
                {"name": "call-api", "match": ['alertname="ApiDown"'], "target": "api",
                 "steps": [{"action": "http.call", "path": "/admin",
                            "headers": {"X-Request-Source": STEP_HEADER}}]},
            ],
            "notifications": {
                "webhooks": [{"name": "ops", "url": f"{hook.url}/hooks/{HOOK_PATH}?key={HOOK_QUERY}"}],
                "slack": {"api_url": slack.url, "token_env": SLACK_ENV, "channel": "#ops", "pace": "0s"},
                "email": smtp.email_config().model_dump(mode="json"),
            },
        }  # fmt: skip
        served = Served(tmp_path, config, tokens)
        slack.down()
        smtp.down()
        served.start()
        try:
            for start in range(0, N, 10):
                batch = [alert(i) for i in range(start, start + 10)]
                answer = httpx.post(served.url + "/api/v1/recovery/alerts", json=payload(batch),
                                    headers=served.headers("alertmanager"))  # fmt: skip
                assert answer.status_code == 200
            cache = dict(alert(999), labels={"alertname": "CacheFull", "severity": "critical"})
            httpx.post(served.url + "/api/v1/recovery/alerts", json=payload([cache]),
                       headers=served.headers("alertmanager"))  # fmt: skip
            wait_for(
                lambda: len(events(served, "recovery:succeeded")) == N,
                timeout=60,
                what="50 remediations",
            )
            wait_for(
                lambda: len(events(served, "recovery:failed")) == 1,
                timeout=30,
                what="the redis failure",
            )
            served.kill9()
            served.start()
            assert slack.messages == [] and smtp.messages == []
            slack.up()
            smtp.up()

            def top() -> list[Any]:
                return [
                    m for m in slack.messages if m.method == "chat.postMessage" and not m.thread_ts
                ]

            wait_for(
                lambda: len(smtp.messages) >= N + 2 and len(top()) >= N + 1,
                timeout=90,
                what="every notification",
            )
            time.sleep(2)  # anything sent twice would arrive now
            # 50 recovered, 1 failed and its escalation (no levels: every channel, once).
            subjects = sorted(m.message["Subject"].split("]")[0] for m in smtp.messages)
            assert subjects == ["[ESCALATED"] + ["[FAILED"] + ["[RECOVERED"] * N
            assert len({m.message["Message-ID"] for m in smtp.messages}) == N + 2
            assert len(top()) == N + 1
            incidents = [m for m in slack.messages if m.method == "chat.update"]
            assert len({m.ts for m in incidents}) == N + 1
            metrics = httpx.get(served.url + "/metrics").text
            assert any(path.startswith("/hooks/") for path in hook.paths)  # webhooks were sent
            admin = served.headers("admin")
            shown = httpx.get(served.url + "/api/v1/recovery/configuration", headers=admin).text
            dry = httpx.post(served.url + "/api/v1/recovery/test", headers=admin,
                             json={"target": "api", "playbook": "call-api"}).text  # fmt: skip
            # No secret anywhere: events, log, Slack, email, metrics, configuration, dry run.
            blobs = [
                json.dumps(events(served)),
                served.log(),
                (tmp_path / "remediator.log").read_text(errors="replace"),
                json.dumps([[m.text, m.blocks] for m in slack.messages]),
                "\n".join(m.message.as_string() for m in smtp.messages),
                metrics,
                shown,
                dry,
            ]
            for secret in (*tokens.values(), slack.token, REDIS_PASSWORD, HOOK_PATH, HOOK_QUERY,
                           TARGET_HEADER, STEP_HEADER):  # fmt: skip
                for blob in blobs:
                    assert secret not in blob
        finally:
            served.stop()
