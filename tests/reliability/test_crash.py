"""kill -9 at random points during a storm, many times (``REMEDIATOR_CRASH_KILLS``, default 50).

Two clients behave like Alertmanager: each owns its fingerprints, sends notifications (new
alerts, repeats, resolves, re-fires that open new episodes, immediate duplicate re-sends) and
retries each one until it gets a 2xx. Meanwhile the served process is killed with SIGKILL at
random moments — while serving, while remediating, and sometimes while still starting up — and
started again. At the end (one clean start, leases expired, SIGTERM):

* every alert that got a 2xx is in the store, and each fingerprint's episodes are exactly the
  ones its client created;
* no remediation ran twice for one (playbook, fingerprint, episode): at most one
  ``recovery:started`` and one ``recovery:action`` per key, and the real effect — SIGRTMIN
  received by a counting process — is between the succeeded remediations and the succeeded
  plus interrupted ones;
* nothing is left ``running``, no inbox item is left pending, and the audit chain verifies.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from remediator.audit.recording import Recording
from remediator.engine import verifier as audit
from tests.reliability.conftest import Counters, Figures, Serve
from tests.reliability.support import ALERTS, BASE_TS, FastServed, alert, db_rows, payload
from tests.waiting import wait_for

KILLS = int(os.environ.get("REMEDIATOR_CRASH_KILLS", "50"))
SEED = int(os.environ.get("REMEDIATOR_CRASH_SEED", str(int(time.time()))))
TARGETS = ("app-a", "app-b")
ALERTNAME = "CrashStorm"


@dataclass
class FingerprintState:
    app: str
    episodes: list[tuple[float, float | None]] = field(default_factory=list)  # (starts, ends)

    @property
    def firing(self) -> bool:
        return bool(self.episodes) and self.episodes[-1][1] is None


class AlertmanagerLike(threading.Thread):
    """Sends notifications about its own fingerprints; retries each until a 2xx, in order."""

    def __init__(self, served: FastServed, prefix: str, seed: int, stop: threading.Event) -> None:
        super().__init__(name=f"sender-{prefix}", daemon=True)
        self.served = served
        self.prefix = prefix
        self.rng = random.Random(seed)
        self.stop = stop
        self.state: dict[str, FingerprintState] = {}
        self.clock = BASE_TS + (1_000_000 if prefix == "b" else 0)
        self.acked: set[tuple[str, str, float]] = set()  # (fingerprint, status, startsAt)
        self.created = 0
        self.requests = 0
        self.answered_2xx = 0
        self.alerts_acked = 0
        self.error: BaseException | None = None

    def tick(self) -> float:
        self.clock += 1.0
        return self.clock

    def notification(self) -> tuple[list[dict[str, Any]], dict[str, FingerprintState]]:
        """The next alerts, and the fingerprint states they lead to (applied once acked)."""
        alerts: list[dict[str, Any]] = []
        after: dict[str, FingerprintState] = {}
        for _ in range(self.rng.randint(1, 4)):
            known = [fp for fp in self.state if fp not in after]
            if not known or self.rng.random() < 0.3:
                self.created += 1
                fp = f"{self.prefix}{self.created:015x}"
                st = FingerprintState(self.rng.choice(TARGETS), [(self.tick(), None)])
            else:
                fp = self.rng.choice(known)
                old = self.state[fp]
                st = FingerprintState(old.app, list(old.episodes))
                starts, _ = st.episodes[-1]
                roll = self.rng.random()
                if old.firing and roll < 0.3:
                    st.episodes[-1] = (starts, self.tick())  # resolves
                elif not old.firing and roll < 0.5:
                    st.episodes.append((self.tick(), None))  # fires again: a new episode
            after[fp] = st
            starts, ends = st.episodes[-1]
            alerts.append(
                alert(
                    fp,
                    ALERTNAME,
                    status="firing" if ends is None else "resolved",
                    starts=starts,
                    ends=ends,
                    labels={"app": st.app},
                )
            )
        return alerts, after

    def deliver(self, client: httpx.Client, body: dict[str, Any]) -> None:
        while True:
            self.requests += 1
            try:
                answer = client.post(
                    self.served.url + ALERTS, json=body, headers=self.served.headers("alertmanager")
                )
                if 200 <= answer.status_code < 300:
                    self.answered_2xx += 1
                    return
                assert answer.status_code >= 500, answer.text  # never a final 4xx
            except httpx.HTTPError:
                pass
            time.sleep(0.02)

    def run(self) -> None:
        try:
            with httpx.Client(timeout=5) as client:
                while not self.stop.is_set():
                    alerts, after = self.notification()
                    body = payload(alerts, group_key=f"{{}}:{{sender={self.prefix}}}")
                    self.deliver(client, body)
                    self.state.update(after)
                    self.alerts_acked += len(alerts)
                    for a in alerts:
                        fp, st = a["fingerprint"], after[a["fingerprint"]]
                        self.acked.add((fp, a["status"], st.episodes[-1][0]))
                    if self.rng.random() < 0.15:  # an immediate duplicate, as from an HA peer
                        self.deliver(client, body)
                        self.alerts_acked += len(alerts)
                    time.sleep(self.rng.uniform(0, 0.03))
        except BaseException as exc:  # reported by the test
            self.error = exc


def config(pidfiles: dict[str, Path]) -> dict[str, Any]:
    return {
        "health": {"enabled": False},
        # Every receipt recorded (not one duplicate per minute): the check below finds every
        # acknowledged alert state among the intake events.
        "audit": {"duplicate_interval": "0s"},
        "worker": {"lease": "2s", "poll_interval": "200ms"},
        "targets": [
            {"name": name, "type": "process", "pidfile": str(pidfile)}
            for name, pidfile in pidfiles.items()
        ],
        "playbooks": [
            {
                "name": "nudge",
                "match": [f'alertname="{ALERTNAME}"'],
                "target": "{{ labels.app }}",
                "steps": [{"action": "process.signal", "signal": "SIGRTMIN", "timeout": "5s"}],
                "cooldown": "0s",
                "max_per_window": None,
                "retry": {"max_attempts": 1},
            }
        ],
    }


@pytest.mark.timeout(max(300, 3 * KILLS))
def test_kill_9_at_random_points_loses_nothing_acknowledged_and_repeats_nothing(
    serve: Serve, counters: Counters, figures: Figures
) -> None:
    figures(seed=SEED)  # first, so that a failure can be replayed
    counted = {name: counters(name) for name in TARGETS}
    served = serve(config({name: c.pidfile for name, c in counted.items()}), start=False)
    rng = random.Random(SEED)
    stop = threading.Event()
    senders = [AlertmanagerLike(served, p, SEED + i, stop) for i, p in enumerate("ab")]
    pids: set[int] = set()
    served.start()
    assert served.pid is not None
    pids.add(served.pid)
    for sender in senders:
        sender.start()
    began = time.monotonic()
    kills = startup_kills = 0
    while kills < KILLS:
        if served.pid is None:
            if rng.random() < 0.1:  # killed again while still starting up
                pids.add(served.spawn())
                time.sleep(rng.uniform(0.0, 0.4))
                served.kill9()
                kills += 1
                startup_kills += 1
                continue
            served.start()
            assert served.pid is not None
            pids.add(served.pid)
        time.sleep(rng.uniform(0.05, 0.8))
        served.kill9()
        kills += 1
    storm = time.monotonic() - began
    served.start()
    assert served.pid is not None
    pids.add(served.pid)
    stop.set()
    for sender in senders:
        sender.join(60)
        assert not sender.is_alive(), "a sender did not finish its last delivery"
        assert sender.error is None, repr(sender.error)
    db = served.db_path

    def settled() -> bool:
        [(pending,)] = db_rows(db, "SELECT count(*) FROM inbox WHERE state = 'pending'")
        [(running,)] = db_rows(db, "SELECT count(*) FROM remediations WHERE state = 'running'")
        return bool(pending == 0 and running == 0)

    wait_for(
        settled,
        timeout=60,
        what="every stored alert to be handled after the last restart",
        every=0.2,
    )
    assert served.terminate() == 0
    check_store(db, senders, {n: c.senders() for n, c in counted.items()}, pids, figures)
    figures(
        kills=KILLS,
        kills_during_startup=startup_kills,
        storm_seconds=round(storm, 1),
    )


def check_store(
    db: Path,
    senders: list[AlertmanagerLike],
    signalled: dict[str, list[int]],
    pids: set[int],
    figures: Figures,
) -> None:
    # 1. Every acknowledged alert is stored: its intake event, its inbox row, its episodes.
    intake: set[tuple[str, str, float]] = set()
    for fp, status, details in db_rows(
        db,
        "SELECT fingerprint, status, details FROM events "
        "WHERE type IN ('alert:received', 'alert:resolved', 'alert:duplicate')",
    ):
        intake.add((fp, status, float(json.loads(details)["starts_at"])))
    acked = set().union(*(s.acked for s in senders))
    lost = acked - intake
    assert not lost, f"{len(lost)} acknowledged alerts lost, e.g. {sorted(lost)[:3]}"
    inbox = {(fp, status) for fp, status in db_rows(db, "SELECT fingerprint, status FROM inbox")}
    assert {(fp, status) for fp, status, _ in acked} <= inbox
    stored: dict[str, list[tuple[float, float | None]]] = {}
    for fp, starts, resolved in db_rows(
        db, "SELECT fingerprint, starts_at, resolved_at FROM episodes ORDER BY id"
    ):
        stored.setdefault(fp, []).append((starts, resolved))
    expected = {fp: st.episodes for s in senders for fp, st in s.state.items()}
    assert stored == expected
    [(left,)] = db_rows(db, "SELECT count(*) FROM inbox WHERE state != 'done'")
    assert left == 0

    # 2. At most one remediation per (playbook, fingerprint, episode), none left running.
    rows = db_rows(db, "SELECT playbook, fingerprint, episode_id, target, state FROM remediations")
    keys = Counter((p, fp, ep) for p, fp, ep, _, _ in rows)
    assert max(keys.values(), default=1) == 1
    states = Counter(state for *_, state in rows)
    assert states["running"] == 0, states
    assert set(states) <= {"succeeded", "interrupted"}, states
    for kind in ("recovery:started", "recovery:action"):
        per_key = Counter(
            (playbook, fp, json.loads(details)["episode"])
            for playbook, fp, details in db_rows(
                db, "SELECT playbook, fingerprint, details FROM events WHERE type = ?", (kind,)
            )
        )
        assert max(per_key.values(), default=1) == 1, f"{kind} twice for one remediation"
    [(actions,)] = db_rows(db, "SELECT count(*) FROM events WHERE type = 'recovery:action'")
    assert actions == states["succeeded"]
    [(recorded,)] = db_rows(
        db, "SELECT count(*) FROM events WHERE type = 'recovery:failed' AND outcome = 'interrupted'"
    )
    assert recorded == states["interrupted"]

    # 3. The real effect: SIGRTMIN counted by each target's process, sent by remediator only.
    signals = 0
    for target in TARGETS:
        senders_of = signalled[target]
        assert set(senders_of) <= pids
        done = sum(1 for r in rows if r[3] == target and r[4] == "succeeded")
        cut = sum(1 for r in rows if r[3] == target and r[4] == "interrupted")
        assert done <= len(senders_of) <= done + cut, (target, done, cut, len(senders_of))
        signals += len(senders_of)

    # 4. The audit chain survived every kill.
    verdict = audit.verify(db, Recording())
    assert verdict.ok, verdict.line()

    figures(
        requests=sum(s.requests for s in senders),
        requests_2xx=sum(s.answered_2xx for s in senders),
        alerts_acknowledged=sum(s.alerts_acked for s in senders),
        distinct_alerts_acknowledged=len(acked),
        distinct_alerts_stored=len(acked & intake),
        lost=len(lost),
        episodes=sum(len(v) for v in stored.values()),
        remediations=len(rows),
        succeeded=states["succeeded"],
        interrupted=states["interrupted"],
        duplicate_actions=sum(v - 1 for v in keys.values()),
        signals_received=signals,
        audit_records=verdict.checked,
    )
