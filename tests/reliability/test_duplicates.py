"""A storm of duplicates, as from an Alertmanager HA group of three peers: every peer sends the
same notifications, concurrently and again after random delays, grouped differently; a real
served process acts exactly once per (fingerprint, episode).

Each peer keeps its own order (as one Alertmanager does) and the peers race each other. The
scenario runs in three phases — firing, resolved, firing again (a new episode) — and a phase
starts once every peer has finished the previous one. (A peer's resolve delayed past another
peer's re-fire is the separate case of ``test_properties.py::test_a_late_resolve_from_a_peer_*``.)
The real effect is counted: SIGRTMIN received by a process, one per action.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx2 as httpx

from tests.reliability.conftest import Counters, Figures, Serve
from tests.reliability.support import ALERTS, BASE_TS, FastServed, alert, payload
from tests.waiting import wait_for

FINGERPRINTS = 24
REFIRED = 8
PEERS = 3


def fingerprint(i: int) -> str:
    return f"{0xA0000 + i:016x}"


def firing(i: int, episode: int) -> dict[str, Any]:
    return alert(fingerprint(i), "HAStorm", starts=BASE_TS + 1000 * episode, labels={"n": str(i)})


def resolved(i: int, episode: int) -> dict[str, Any]:
    starts = BASE_TS + 1000 * episode
    return alert(
        fingerprint(i),
        "HAStorm",
        status="resolved",
        starts=starts,
        ends=starts + 500,
        labels={"n": str(i)},
    )


def groupings(alerts: list[dict[str, Any]], rng: random.Random) -> list[list[dict[str, Any]]]:
    """The same alerts cut into notifications differently (peers' groups differ in timing)."""
    size = rng.choice([1, 4, 8, len(alerts)])
    return [alerts[i : i + size] for i in range(0, len(alerts), size)]


class Peers:
    def __init__(self, served: FastServed, seed: int) -> None:
        self.served = served
        self.rng = random.Random(seed)
        self.requests = 0
        self.lock = threading.Lock()

    def send(self, client: httpx.Client, body: dict[str, Any]) -> None:
        answer = client.post(
            self.served.url + ALERTS, json=body, headers=self.served.headers("alertmanager")
        )
        assert answer.status_code == 200, answer.text
        with self.lock:
            self.requests += 1

    def phase(
        self, alerts: list[dict[str, Any]], stale: list[dict[str, Any]] | None = None
    ) -> None:
        """Every peer sends ``alerts`` at the same moment, then again after random
        delays, three more times; ``stale`` (the previous phase's alerts) are re-sent in between."""
        barrier = threading.Barrier(PEERS)
        errors: list[BaseException] = []
        plans = [
            (groupings(alerts, self.rng), random.Random(self.rng.random())) for _ in range(PEERS)
        ]

        def peer(groups: list[list[dict[str, Any]]], rng: random.Random) -> None:
            try:
                with httpx.Client(timeout=10) as client:
                    barrier.wait(10)
                    for group in groups:
                        self.send(client, payload(group))
                    for _ in range(3):
                        time.sleep(rng.uniform(0.05, 0.5))
                        if stale and rng.random() < 0.5:
                            self.send(client, payload(stale))
                        for group in rng.sample(groups, len(groups)):
                            self.send(client, payload(group))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=peer, args=plan) for plan in plans]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors


def test_three_peers_sending_the_same_notifications_give_one_action_per_episode(
    serve: Serve, counters: Counters, figures: Figures
) -> None:
    app = counters("app")
    served = serve(
        {
            "health": {"enabled": False},
            "worker": {"poll_interval": "200ms"},
            "targets": [{"name": "app", "type": "process", "pidfile": str(app.pidfile)}],
            "playbooks": [
                {
                    "name": "nudge",
                    "match": ['alertname="HAStorm"'],
                    "target": "app",
                    "steps": [{"action": "process.signal", "signal": "SIGRTMIN"}],
                    "cooldown": "0s",
                    "max_per_window": None,
                    "retry": {"max_attempts": 1},
                }
            ],
        }
    )
    peers = Peers(served, seed=5)

    def settled(n: int) -> Callable[[], bool]:
        return lambda: app.count() >= n

    first = [firing(i, 0) for i in range(FINGERPRINTS)]
    peers.phase(first)
    wait_for(settled(FINGERPRINTS), timeout=30, what="one action per fingerprint")
    peers.phase([resolved(i, 0) for i in range(REFIRED)], stale=first[:REFIRED])
    again = [firing(i, 1) for i in range(REFIRED)]
    peers.phase(again)
    expected = FINGERPRINTS + REFIRED
    wait_for(settled(expected), timeout=30, what="one action per new episode")
    time.sleep(1.0)  # a second action for any episode would happen now
    assert app.count() == expected
    assert set(app.senders()) == {served.pid}
    actions = served.events("recovery:action")
    assert len(actions) == expected
    keys = {(e["fingerprint"], e["details"]["episode"]) for e in actions}
    assert len(keys) == expected
    duplicates = len(served.events("alert:duplicate"))
    figures(
        peers=PEERS,
        requests=peers.requests,
        episodes=expected,
        actions=len(actions),
        signals_received=app.count(),
        recorded_duplicates=duplicates,
    )
