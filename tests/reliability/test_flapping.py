"""Flapping: an alert that fires and resolves every few seconds. Actions are bounded by the
playbook's ``cooldown`` and ``max_per_window``, exactly.

Compressed time: the in-process engine (real SQLite store, fake actions) with an injected
clock runs hours of flapping in a second, and the number of actions must equal what a
reference model of the two guards allows — and, for the main case, the closed form
``count * ceil(duration / window)``. A shorter run through a real served process with a real
action checks the same guards on wall-clock time, from the recorded remediations.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.engine_harness import EngineHarness, alert
from tests.reliability.conftest import Counters, Figures, Serve
from tests.reliability.support import alert as wire_alert
from tests.reliability.support import db_rows, payload
from tests.waiting import wait_for


@dataclass(frozen=True)
class Flap:
    firing: float  # seconds an episode fires
    quiet: float  # seconds between a resolve and the next firing
    duration: float  # how long the flapping lasts
    cooldown: float
    count: int  # max_per_window.count
    window: float

    @property
    def period(self) -> float:
        return self.firing + self.quiet


def allowed(flap: Flap) -> tuple[int, int, int]:
    """The reference model: (actions, cooldown blocks, max_per_window blocks) when every
    episode is decided at the moment it starts firing."""
    started: list[float] = []
    cooldowns = windows = 0
    t = 0.0
    while t < flap.duration:
        if started and t - started[-1] < flap.cooldown:
            cooldowns += 1
        elif sum(1 for s in started if s > t - flap.window) >= flap.count:
            windows += 1
        else:
            started.append(t)
        t += flap.period
    return len(started), cooldowns, windows


CASES = {
    # 20 s firing, 10 s quiet for 3 h; at most 3 restarts per hour, 5 min apart.
    "hourly-limit": Flap(20, 10, 3 * 3600, cooldown=300, count=3, window=3600),
    # Fast flapping (2 s + 3 s) for 15 min; the cooldown binds, the window does not.
    "cooldown-bound": Flap(2, 3, 900, cooldown=60, count=100, window=3600),
    # Both bind: 10-minute windows of 4, 45 s apart, flapping every 15 s for 1 h.
    "both": Flap(5, 10, 3600, cooldown=45, count=4, window=600),
}


@pytest.mark.parametrize("name", list(CASES))
def test_hours_of_flapping_act_exactly_as_often_as_cooldown_and_window_allow(
    tmp_path: Path, name: str, figures: Figures
) -> None:
    flap = CASES[name]
    sections: dict[str, Any] = {
        "targets": [{"name": "web", "type": "docker_container"}],
        "playbooks": [
            {
                "name": "restart",
                "match": ['alertname="ContainerMemoryHigh"'],
                "target": "{{ labels.container }}",
                "steps": [{"action": "docker.restart"}],
                "cooldown": flap.cooldown,
                "max_per_window": {"count": flap.count, "window": flap.window},
                "retry": {"max_attempts": 1},
            }
        ],
    }

    async def main() -> tuple[int, list[str], int]:
        h = await EngineHarness.create(tmp_path, sections)
        try:
            begin = h.clock.now()
            episodes = 0
            while h.clock.now() - begin < flap.duration:
                start = h.clock.now()
                await h.send(alert("flappy", container="web", starts=start))
                await h.drain()
                h.clock.advance(flap.firing)
                end = h.clock.now()
                await h.send(
                    alert("flappy", container="web", status="resolved", starts=start, ends=end)
                )
                await h.drain()
                h.clock.advance(flap.quiet)
                episodes += 1
            return h.recorder.count(), await h.reasons(), episodes
        finally:
            await h.close()

    actions, reasons, episodes = asyncio.run(main())
    expected, cooldowns, windows = allowed(flap)
    assert actions == expected
    assert reasons.count("cooldown") == cooldowns
    assert reasons.count("max_per_window") == windows
    assert actions + cooldowns + windows == episodes
    if flap.cooldown * flap.count <= flap.window:
        assert actions == flap.count * math.ceil(flap.duration / flap.window)
    else:
        assert actions == math.ceil(
            flap.duration / (flap.period * math.ceil(flap.cooldown / flap.period))
        )
    figures(
        simulated_hours=round(flap.duration / 3600, 2),
        episodes=episodes,
        actions=actions,
        blocked_by_cooldown=cooldowns,
        blocked_by_max_per_window=windows,
    )


def test_a_real_process_flapping_for_a_while_respects_cooldown_and_window(
    serve: Serve, counters: Counters, figures: Figures
) -> None:
    app = counters("app")
    cooldown, count, window = 1.0, 3, 5.0
    served = serve(
        {
            "health": {"enabled": False},
            "worker": {"poll_interval": "100ms"},
            "targets": [{"name": "app", "type": "process", "pidfile": str(app.pidfile)}],
            "playbooks": [
                {
                    "name": "nudge",
                    "match": ['alertname="Flappy"'],
                    "target": "app",
                    "steps": [{"action": "process.signal", "signal": "SIGRTMIN"}],
                    "cooldown": cooldown,
                    "max_per_window": {"count": count, "window": window},
                    "retry": {"max_attempts": 1},
                }
            ],
        }
    )
    began = time.time()
    episodes = 0
    while time.time() - began < 8.0:
        start = time.time()
        assert served.post(payload([wire_alert("f1a99e", "Flappy", starts=start)])) == 200
        time.sleep(0.25)
        end = time.time()
        resolved = wire_alert("f1a99e", "Flappy", status="resolved", starts=start, ends=end)
        assert served.post(payload([resolved])) == 200
        time.sleep(0.15)
        episodes += 1
    elapsed = time.time() - began
    db = served.db_path

    def idle() -> bool:
        [(pending,)] = db_rows(db, "SELECT count(*) FROM inbox WHERE state = 'pending'")
        return bool(pending == 0)

    wait_for(idle, timeout=30, what="every alert to be handled")
    starts = [
        s
        for (s,) in db_rows(
            db, "SELECT started_at FROM remediations WHERE state = 'succeeded' ORDER BY started_at"
        )
    ]
    assert app.count() == len(starts)
    assert all(b - a >= cooldown for a, b in itertools.pairwise(starts))
    for i, t in enumerate(starts):
        assert sum(1 for s in starts[:i] if s > t - window) < count
    assert len(starts) <= count * math.ceil(elapsed / window)
    assert len(starts) > count  # it did act, in more than one window
    blocked = dict(
        db_rows(
            db, "SELECT reason, count(*) FROM remediations WHERE state = 'blocked' GROUP BY reason"
        )
    )
    figures(
        seconds=round(elapsed, 1),
        episodes=episodes,
        actions=len(starts),
        bound=count * math.ceil(elapsed / window),
        blocked=blocked,
    )
