"""The served process runs on uvloop and httptools (dependencies) and says so at start-up."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.conftest import fixture_payload
from tests.serving import Served

ALERTS = "/api/v1/recovery/alerts"


@pytest.fixture
def served(tmp_path: Path, tokens: dict[str, str]) -> Iterator[Served]:
    server = Served(tmp_path, {}, tokens)
    yield server
    server.stop()


def serving_line(server: Served) -> dict[str, object]:
    """The start-up log line that names the event loop and the HTTP parser."""
    for line in server.log_path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("msg") == "serving":
                assert isinstance(record, dict)
                return record
    raise AssertionError(f"no 'serving' line in the log:\n{server.log()}")


def stored_fingerprints(server: Served) -> set[str]:
    db = sqlite3.connect(f"file:{server.workdir / 'remediator.db'}?mode=ro", uri=True)
    try:
        return {row[0] for row in db.execute("SELECT fingerprint FROM inbox")}
    finally:
        db.close()


def test_the_webhook_is_served_on_uvloop_and_httptools(served: Served) -> None:
    served.start()
    payload = fixture_payload("firing_single.json")
    payload["alerts"][0]["fingerprint"] = "00000000feedf00d"
    answer = httpx.post(served.url + ALERTS, json=payload, headers=served.headers("alertmanager"))
    assert answer.status_code == 200
    assert answer.json() == {"received": 1, "new": 1, "duplicates": 0, "truncated": 0}
    assert served.terminate() == 0
    line = serving_line(served)
    assert (line["loop"], line["http"]) == ("uvloop", "httptools")
    assert "00000000feedf00d" in stored_fingerprints(served)
