"""Hostile alert text in silences: label values are attacker-controlled, so a silence matches
only their literal value (regex metacharacters, newlines), one too large to match literally is
not made, and an Alertmanager that is down never slows the webhook or stops a remediation."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from remediator.engine.silences import MAX_VALUE
from tests.alertmanager import Alertmanager
from tests.serving import free_port
from tests.silencing import amtool, playbook, started
from tests.waiting import wait_for

pytestmark = pytest.mark.prometheus

HOSTILE = {
    "alertname": "ContainerMemoryHigh",
    "pod": ".*",
    "job": "api|web",
    "instance": "host-1\nalertname=~.*\n}",
    "note": '"quoted" \\ back{slash} [x] $ ^',
}


@pytest.fixture
def am(tmp_path: Path, alertmanager_bin: str) -> Iterator[Alertmanager]:
    server = Alertmanager(alertmanager_bin, tmp_path / "am")
    yield server
    server.stop()


def live(am: Alertmanager) -> list[dict[str, Any]]:
    """Alertmanager's silences that are not expired."""
    answer = httpx.get(f"{am.url}/api/v2/silences", timeout=5)
    assert answer.status_code == 200, answer.text
    return [s for s in answer.json() if s["status"]["state"] != "expired"]


def _am_alert(labels: dict[str, str]) -> dict[str, Any]:
    return {"labels": labels, "startsAt": datetime.now(UTC).isoformat()}


def test_a_silence_matches_only_the_literal_hostile_label_values(
    tmp_path: Path, am: Alertmanager, amtool_bin: str
) -> None:
    with started(tmp_path, url=am.url, books=[playbook({"enabled": True})]) as rig:
        rig.hold()
        assert rig.post(HOSTILE).status_code == 200
        [made] = wait_for(lambda: amtool(amtool_bin, am.url), what="the silence")
        assert {m["name"]: m["value"] for m in made["matchers"]} == HOSTILE
        assert not any(m["isRegex"] for m in made["matchers"])
        assert "\n" not in made["comment"] and ".*" not in made["comment"]
        # The alert itself is silenced; alerts that the values would match as regexes are not.
        others = [
            {**HOSTILE, "pod": "api-7d9f"},
            {**HOSTILE, "job": "api"},
            {**HOSTILE, "instance": "host-1"},
        ]
        am.post([_am_alert(HOSTILE), *(_am_alert(o) for o in others)])

        def states() -> list[tuple[dict[str, str], str]]:
            return [(a["labels"], a["status"]["state"]) for a in am.alerts()]

        found = wait_for(lambda: states() if len(states()) == 4 else None, what="the alerts")
        silenced = [labels for labels, state in found if state == "suppressed"]
        assert silenced == [HOSTILE]
        rig.release()


def test_a_label_value_too_large_to_match_literally_is_not_silenced(
    tmp_path: Path, am: Alertmanager
) -> None:
    huge = {"alertname": "ContainerMemoryHigh", "container": "web", "blob": "x" * (MAX_VALUE + 1)}
    with started(tmp_path, url=am.url, books=[playbook({"enabled": True})]) as rig:
        rig.hold()
        assert rig.post(huge).status_code == 200
        wait_for(lambda: rig.recorder.count() == 1, what="the remediation to run")
        assert rig.run(rig.rt.silencer.run_once)  # type: ignore[union-attr]
        assert live(am) == [] and rig.events("recovery:silence_created") == []
        rig.release()
        wait_for(lambda: [r.state for r in rig.remediations()] == ["succeeded"], what="the end")
        rig.hold()
        # a value within the limit is silenced whole, and literally
        large = {**huge, "blob": "y" * MAX_VALUE}
        assert rig.post(large, fingerprint="f2").status_code == 200
        wait_for(lambda: rig.events("recovery:silence_created"), what="the silence")
        [made] = live(am)
        assert {m["name"]: m["value"] for m in made["matchers"]}["blob"] == "y" * MAX_VALUE
        rig.release()


def test_an_alertmanager_that_is_down_never_slows_the_webhook_or_stops_the_remediation(
    tmp_path: Path,
) -> None:
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with started(tmp_path, url=down, books=[playbook({"enabled": True})]) as rig:
        rig.hold()
        started_at = time.monotonic()
        answer = rig.post({"alertname": "ContainerMemoryHigh", "container": "web"})
        assert answer.status_code == 200 and time.monotonic() - started_at < 1.0
        wait_for(lambda: rig.recorder.count() == 1, what="the remediation to run")
        failed = 'remediator_silence_requests_total{operation="create",outcome="failure"}'
        wait_for(lambda: rig.metric(failed) >= 2, what="a retried create")
        rig.release()
        wait_for(lambda: [r.state for r in rig.remediations()] == ["succeeded"], what="the end")
        assert rig.events("recovery:silence_created") == []
        assert rig.metric("remediator_silences_active") == 0
