"""Alertmanager silences while remediating (issue #15): made in a real Alertmanager 0.25, read
back with ``amtool silence query``, expired when their reason ends and after a restart."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from remediator.alerts import Episode
from remediator.config import model as config_mod
from remediator.config.playbooks import PlaybookSpec
from remediator.engine.silences import Snapshot, silence_labels, wanted
from remediator.errors import ConfigError
from remediator.store.records import Remediation
from tests.alertmanager import Alertmanager
from tests.silencing import LABELS, LINK, amtool, playbook, started
from tests.waiting import wait_for

pytestmark = pytest.mark.prometheus
APPROVING = playbook({"enabled": True}, approval={"approvers": ["alice"], "ttl": "10m"})


@pytest.fixture
def am(tmp_path: Path, alertmanager_bin: str) -> Iterator[Alertmanager]:
    server = Alertmanager(alertmanager_bin, tmp_path / "am")
    yield server
    server.stop()


def ours(amtool_bin: str, am: Alertmanager, *args: str) -> list[dict[str, Any]]:
    return [s for s in amtool(amtool_bin, am.url, *args) if s["createdBy"] == "remediator"]


def matchers(silence: dict[str, Any]) -> dict[str, str]:
    for m in silence["matchers"]:
        assert (m["isRegex"], m.get("isEqual", True)) == (False, True)
    return {m["name"]: m["value"] for m in silence["matchers"]}


def test_a_running_remediation_is_silenced_until_it_ends(
    tmp_path: Path, am: Alertmanager, amtool_bin: str
) -> None:
    silence = {"enabled": True, "matchers": ["alertname", "container"], "duration_cap": "1h"}
    with started(tmp_path, url=am.url, books=[playbook(silence)]) as rig:
        rig.hold()
        assert rig.post(LABELS).status_code == 200
        [made] = wait_for(lambda: ours(amtool_bin, am), what="the silence")
        assert matchers(made) == {"alertname": "ContainerMemoryHigh", "container": "web"}
        assert "[remediator:remediation:1]" in made["comment"]
        assert "playbook restart on web" in made["comment"]
        assert f"{LINK}/api/v1/recovery/events?fingerprint=f1" in made["comment"]
        [created] = rig.events("recovery:silence_created")
        assert created.details["silence"] == made["id"]
        assert (created.playbook, created.target) == ("restart", "web")
        assert rig.metric("remediator_silences_active") == 1
        assert [r.state for r in rig.remediations()] == ["running"]

        rig.release()
        wait_for(lambda: not ours(amtool_bin, am), what="the silence to be expired")
        [gone] = ours(amtool_bin, am, "--expired")
        assert gone["id"] == made["id"]
        [expired] = rig.events("recovery:silence_expired")
        assert expired.details == {"silence": made["id"], "key": "remediation:1", "reason": "ended"}
        assert [r.state for r in rig.remediations()] == ["succeeded"]
        assert rig.metric("remediator_silences_active") == 0


def test_an_approval_wait_is_silenced_on_every_label_and_expires_when_the_alert_resolves(
    tmp_path: Path, am: Alertmanager, amtool_bin: str
) -> None:
    with started(tmp_path, url=am.url, books=[APPROVING]) as rig:
        assert rig.post(LABELS).status_code == 200
        [made] = wait_for(lambda: ours(amtool_bin, am), what="the silence")
        assert matchers(made) == LABELS  # the default: every label of the alert
        assert [r.state for r in rig.remediations()] == ["awaiting_approval"]

        assert rig.post(LABELS, status="resolved").status_code == 200
        wait_for(lambda: not ours(amtool_bin, am), what="the silence to be expired on recovery")
        assert [s["id"] for s in ours(amtool_bin, am, "--expired")] == [made["id"]]
        assert rig.events("recovery:silence_expired")[0].details["reason"] == "ended"
        assert rig.recorder.count() == 0


def test_a_quarantined_target_stays_silenced_until_the_quarantine_is_lifted(
    tmp_path: Path, am: Alertmanager, amtool_bin: str
) -> None:
    book = playbook({"enabled": True}, steps=[{"action": "quarantine"}])
    with started(tmp_path, url=am.url, books=[book]) as rig:
        assert rig.post(LABELS).status_code == 200

        def quarantine_silence() -> list[dict[str, Any]]:
            return [
                s for s in ours(amtool_bin, am) if "[remediator:quarantine:web:" in s["comment"]
            ]

        [made] = wait_for(quarantine_silence, what="the quarantine's silence")
        assert matchers(made) == LABELS
        assert "target web is quarantined" in made["comment"]
        wait_for(lambda: rig.remediations()[0].state == "succeeded", what="the remediation to end")
        rig.run(rig.rt.silencer.run_once)  # type: ignore[union-attr]
        assert [s["id"] for s in ours(amtool_bin, am)] == [made["id"]]  # still quarantined

        lifted = rig.call("DELETE", "/quarantine/web", json={"reason": "fixed by hand"})
        assert lifted.status_code == 200, lifted.text
        wait_for(lambda: not ours(amtool_bin, am), what="the silence to be expired on the lift")
        assert made["id"] in [s["id"] for s in ours(amtool_bin, am, "--expired")]


def test_a_restart_expires_the_silences_remediator_no_longer_handles(
    tmp_path: Path, am: Alertmanager, amtool_bin: str
) -> None:
    with started(tmp_path, url=am.url, books=[APPROVING]) as rig:
        assert rig.post(LABELS).status_code == 200
        [made] = wait_for(lambda: ours(amtool_bin, am), what="the silence")
    # Someone else's silence, and one of remediator's with no marker: neither is touched.
    theirs = am.silence({"alertname": "Other"})
    unmarked = {
        "matchers": [{"name": "alertname", "value": "Mine", "isRegex": False, "isEqual": True}],
        "startsAt": datetime.now(UTC).isoformat(),
        "endsAt": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
        "createdBy": "remediator",
        "comment": "made by hand under remediator's name",
    }
    answer = httpx.post(f"{am.url}/api/v2/silences", json=unmarked, timeout=5)
    assert answer.status_code == 200, answer.text
    kept = {theirs, answer.json()["silenceID"]}
    # The next remediator starts on a fresh database (the old one lost): nothing it handles
    # names the silence any more.
    with started(tmp_path, url=am.url, books=[APPROVING], db="new.db") as rig:
        wait_for(
            lambda: rig.events("recovery:silence_expired"), what="the stale silence to be expired"
        )
        [stale] = rig.events("recovery:silence_expired")
        assert stale.details == {"silence": made["id"], "key": "remediation:1", "reason": "stale"}
        assert {s["id"] for s in amtool(amtool_bin, am.url)} == kept


def test_a_restart_after_a_crash_expires_the_silence_of_the_interrupted_run(
    tmp_path: Path, am: Alertmanager, amtool_bin: str
) -> None:
    with started(tmp_path, url=am.url, books=[playbook({"enabled": True})]) as rig:
        rig.hold()
        assert rig.post(LABELS).status_code == 200
        [made] = wait_for(lambda: ours(amtool_bin, am), what="the silence")
        rig.run(rig.rt.silencer.stop)  # type: ignore[union-attr]
        # stopped while running: the next start-up marks the run interrupted
        rig.run(rig.rt.worker.stop, 0.1)
    with started(tmp_path, url=am.url, books=[playbook({"enabled": True})]) as rig:
        wait_for(lambda: not ours(amtool_bin, am), what="the silence to be expired")
        [expired] = rig.events("recovery:silence_expired")
        assert expired.details["silence"] == made["id"]
        assert expired.details["reason"] == "ended"


def test_a_playbook_that_silences_needs_an_alertmanager() -> None:
    with pytest.raises(ConfigError, match=r"playbooks\[0\]\.silence: set silences.url"):
        config_mod.parse(
            {
                "targets": [{"name": "web", "type": "docker_container", "container": "web"}],
                "playbooks": [playbook({"enabled": True})],
            },
            env={},
        )


def test_silence_labels_are_the_listed_ones_or_none_when_they_cannot_match_literally() -> None:
    spec = PlaybookSpec.model_validate(playbook({"matchers": ["a", "gone"]})).silence
    assert spec is not None
    assert silence_labels(spec, {"a": "1", "b": "2"}) == {"a": "1", "gone": ""}
    assert silence_labels(spec, {"b": "2"}) is None  # would match every alert without a and gone
    assert silence_labels(spec, {"a": "x" * 4097}) is None  # too large to match literally


def test_only_open_episodes_of_opted_in_playbooks_are_wanted() -> None:
    books = [
        PlaybookSpec.model_validate(playbook({"enabled": True})),
        PlaybookSpec.model_validate(playbook(None, name="quiet")),
    ]

    def rem(rid: int, name: str, state: str, episode: int) -> Remediation:
        return Remediation(rid, name, f"f{rid}", episode, "web", state, "", 1.0, None, 0)

    snapshot = Snapshot(
        remediations=[rem(1, "restart", "running", 1), rem(2, "quiet", "running", 2),
                      rem(3, "restart", "awaiting_approval", 9)],
        episodes=[Episode(1, "f1", 1.0, None),
                  Episode(2, "f2", 1.0, None)],
        quarantined=[],
        history={},
        labels={f"f{i}": {"alertname": "A"} for i in (1, 2, 3)},
    )  # fmt: skip
    assert list(wanted(snapshot, books)) == ["remediation:1"]
    assert wanted(snapshot, books, dry_run=True) == {}  # safety.dry_run touches nothing
    dry = [PlaybookSpec.model_validate(playbook({"enabled": True}, dry_run=True))]
    assert wanted(snapshot, dry) == {}
