"""Hostile alert text through the webhook, then every console page that shows it: rendered as
text, no link to anything but http(s)."""

from __future__ import annotations

import re
import time
from pathlib import Path

from remediator.clock import iso
from tests.console.consoleapp import served, sign_in, tokens

SCRIPT = "<script>window.pwned=1</script>"
ATTR = '"><img src=x onerror=window.pwned=2>'
HOSTILE = SCRIPT + ATTR


def test_hostile_alert_text_is_escaped_in_every_console_field(tmp_path: Path) -> None:
    payload = {
        "version": "4", "groupKey": HOSTILE, "status": "firing", "receiver": HOSTILE,
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "Bad" + HOSTILE, "container": HOSTILE, "severity": HOSTILE},
            "annotations": {"summary": HOSTILE, "description": HOSTILE, "runbook_url": "javascript:x"},
            "startsAt": iso(1_800_000_000.0),
            "generatorURL": "javascript:window.pwned=3",
            "fingerprint": "hostile",
        }],
    }  # fmt: skip
    with served(tmp_path) as (client, rt):
        auth = {"Authorization": f"Bearer {tokens()['alertmanager']}"}
        assert client.post("/api/v1/recovery/alerts", json=payload, headers=auth).status_code == 200
        sign_in(client, "viewer")
        deadline = time.monotonic() + 10
        page = client.get("/console/incidents/hostile")
        while "Bad&lt;script&gt;" not in page.text and time.monotonic() < deadline:
            rt.worker.wake()
            time.sleep(0.05)
            page = client.get("/console/incidents/hostile")
        assert "Bad&lt;script&gt;" in page.text
        for path in (
            "/console/",
            "/console/history",
            "/console/incidents/hostile",
            "/console/targets",
        ):
            text = client.get(path).text
            assert "<script>" not in text and "<img" not in text, path
            assert 'href="javascript:' not in text, path
            inert = re.sub(r"<code>javascript:window.pwned=3</code>", "", text)
            inert = re.sub(r"</b> javascript:[^<]*</span>", "", inert)  # details: plain text
            assert "javascript:" not in inert, path
        assert 'href="javascript:' not in page.text
