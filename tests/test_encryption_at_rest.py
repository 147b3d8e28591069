"""Encryption at rest: with ``audit.encryption_key_env`` set, no alert text is stored readable.

A canary string goes into an alert's alertname, labels, annotations, generator URL, receiver and
group key; a remediation runs with Slack (tests/slackapi.py), email (tests/smtpserver.py) and a
webhook configured. The raw bytes of the SQLite file and its WAL, and every PostgreSQL table
copied out as text, hold no canary; the events read back, the HTTP API and every notification
still show it.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography.fernet import Fernet
from psycopg import sql
from starlette.testclient import TestClient

from remediator.alerts import Alert
from remediator.clock import iso
from remediator.config import model as config_mod
from remediator.config.auth import Authenticator, Principal
from remediator.http.app import create_app
from remediator.runtime import Runtime
from remediator.store.sqlite import sqlite_path
from tests.conftest import ALERTS, EVENTS
from tests.engine_harness import EngineHarness
from tests.slackapi import SlackAPI
from tests.smtpserver import SMTPServer
from tests.store_helpers import store_url
from tests.test_notifier_webhook import Server, server
from tests.test_outbox import deliver, slack, smtp
from tests.test_outbox import sections as outbox_sections

__all__ = ["server", "slack", "smtp", "store_url"]  # fixtures

KEY_ENV = "REMEDIATOR_TEST_AUDIT_KEY"
# Dots are outside the url-safe base64 alphabet of Fernet tokens: a hit is always a leak.
CANARY = "cnry.4711.zebra"
ALERTNAME = f"ContainerMemoryHigh.{CANARY}"


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    value = Fernet.generate_key().decode()
    monkeypatch.setenv(KEY_ENV, value)
    return value


def canary_alert(status: str = "firing") -> Alert:
    return Alert.model_validate(
        {
            "status": status,
            "labels": {
                "alertname": ALERTNAME,
                "severity": "warning",
                "container": "web",
                "note": f"label {CANARY}",
            },
            "annotations": {
                "summary": f"summary {CANARY}",
                "description": f"description {CANARY}",
                "runbook_url": f"https://runbooks.example.test/{CANARY}",
            },
            "startsAt": iso(1_800_000_000.0),
            "endsAt": iso(1_800_000_600.0) if status == "resolved" else "0001-01-01T00:00:00Z",
            "generatorURL": f"http://prometheus.example.test/graph?g0.expr={CANARY}",
            "fingerprint": "c4a7a1e5c4a7a1e5",
        }
    )


def sections(url: str, slack: SlackAPI, smtp: SMTPServer, hooks: Server) -> dict[str, Any]:
    """test_outbox's configuration, on ``url``, encrypted, with a webhook, for the canary."""
    data = outbox_sections(
        slack,
        smtp,
        playbook={"match": ['alertname=~"ContainerMemoryHigh.*"']},
        store={"url": url},
        audit={"encryption_key_env": KEY_ENV},
    )
    data["notifications"]["webhooks"] = [{"name": "hook", "url": hooks.url("/hook")}]
    return data


def stored_bytes(url: str) -> bytes:
    """Everything the store keeps at rest: the SQLite file, its WAL and shared memory, or each
    PostgreSQL table copied out as text."""
    if url.startswith("sqlite"):
        path = sqlite_path(url)
        files = sorted(path.parent.glob(f"{path.name}*"))
        assert path in files
        return b"".join(f.read_bytes() for f in files)
    out = bytearray()
    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
        ).fetchall()
        assert {"inbox", "outbox", "events", "episodes", "slack_threads"} <= {t[0] for t in tables}
        for (table,) in tables:
            copy_sql = sql.SQL("COPY {} TO STDOUT").format(sql.Identifier(table))
            with conn.cursor().copy(copy_sql) as copy:
                for block in copy:
                    out += bytes(block)
    return bytes(out)


def leaks(data: bytes) -> int:
    """How many readable copies of the canary ``data`` holds."""
    return data.count(CANARY.encode())


def mail_text(smtp: SMTPServer) -> str:
    texts = []
    for mail in smtp.messages:
        texts.append(str(mail.message["Subject"]))
        for part in mail.message.walk():
            if part.get_content_maintype() == "text":
                texts.append(str(part.get_content()))
    return "\n".join(texts)


def test_no_alert_text_is_readable_at_rest_yet_events_and_notifications_show_it(
    tmp_path: Path, store_url: str, key: str, slack: SlackAPI, smtp: SMTPServer, server: Server
) -> None:
    async def main() -> bytes:
        h = await EngineHarness.create(tmp_path, sections(store_url, slack, smtp, server))
        try:
            for status in ("firing", "resolved"):
                await h.rt.store.ingest(
                    [canary_alert(status)],
                    received_at=h.clock.now(),
                    receiver=f"receiver-{CANARY}",
                    group_key=f'{{}}:{{note="{CANARY}"}}',
                )
                await h.drain()
                await deliver(h)
            assert h.recorder.calls == [("docker.restart", "web", False)]
            events = await h.events()
            assert {"alert:received", "alert:resolved", "recovery:action"} <= {
                e.type for e in events
            }
            assert all(e.alertname == ALERTNAME for e in events if e.fingerprint)
            received = next(e for e in events if e.type == "alert:received")
            assert received.actor == f"alertmanager:receiver-{CANARY}"
            assert CANARY in repr([e.as_dict() for e in events])
            item = await h.rt.store.latest_alert("c4a7a1e5c4a7a1e5")
            assert item is not None and item.labels["note"] == f"label {CANARY}"
            assert item.annotations["summary"] == f"summary {CANARY}"
            assert CANARY in item.generator_url
            assert len(await h.events("notification:sent")) >= 3
            return stored_bytes(store_url)  # the store still open: the WAL too
        finally:
            await h.rt.outbox.stop()
            await h.close()

    while_open = asyncio.run(main())
    assert any(CANARY in m.text or CANARY in repr(m.blocks) for m in slack.messages)
    assert CANARY in mail_text(smtp)
    assert any(CANARY.encode() in seen.body for seen in server.seen)
    assert leaks(while_open) == 0
    assert leaks(stored_bytes(store_url)) == 0
    assert b"enc:" in while_open  # sealed, not merely absent


def test_the_events_api_shows_sealed_alert_text_that_the_store_does_not(
    store_url: str, key: str, tokens: dict[str, str]
) -> None:
    """Through the HTTP intake and the events API of a whole app."""
    cfg = config_mod.parse(
        {
            "store": {"url": store_url},
            "health": {"enabled": False},
            "audit": {"encryption_key_env": KEY_ENV},
        },
        env={},
    )
    auth = Authenticator(
        [(Principal(r, r), t) for r, t in tokens.items()]  # type: ignore[arg-type]
    )
    holder: list[Runtime] = []
    app = create_app(cfg, authenticator=auth, on_runtime=holder.append)
    alert = canary_alert().model_dump(mode="json", by_alias=True)
    body = {
        "version": "4",
        "groupKey": f'{{}}:{{note="{CANARY}"}}',
        "status": "firing",
        "receiver": "remediator",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example.test",
        "alerts": [alert],
    }
    with TestClient(app, raise_server_exceptions=False) as client:
        answer = client.post(
            ALERTS, json=body, headers={"Authorization": f"Bearer {tokens['alertmanager']}"}
        )
        assert answer.status_code == 200, answer.text
        started = time.monotonic()
        while True:  # the worker's claim chains the arrival; polled within the API's rate limit
            shown = client.get(
                EVENTS,
                params={"type": "alert:received"},
                headers={"Authorization": f"Bearer {tokens['viewer']}"},
            )
            assert shown.status_code == 200
            if shown.json()["events"] or time.monotonic() - started > 10.0:
                break
            time.sleep(0.15)
        print(f"arrival chained after {time.monotonic() - started:.3f} s")
        [event] = shown.json()["events"]
        assert event["alertname"] == ALERTNAME
        assert leaks(stored_bytes(store_url)) == 0
    assert leaks(stored_bytes(store_url)) == 0
