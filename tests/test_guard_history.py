"""The guards' read does not grow with a target's history (issue 19).

Dry runs and refusals are remediations that never count toward the cooldown, so a target that
has had many of them must not make the cooldown's "last counted start" walk them all: on the
1,000 new alerts/s benchmark every alert's guard read got slower as the run went on. The work
of the read is counted in SQLite virtual-machine steps (a progress handler), not timed.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from remediator.store.guards import snapshot
from remediator.store.ops import SQLITE
from remediator.store.records import BLOCKED, DRY_RUN, SUCCEEDED, GuardSnapshot
from remediator.store.sqlite_writer import connect_reader, drive
from tests.store_helpers import opened

TARGET, PLAYBOOK = "web-1", "restart-web"
STEPS_PER_TICK = 10


def _history(path: Path, *, uncounted: int) -> None:
    """One counted (succeeded) start of the playbook on the target at t=500, then ``uncounted``
    later dry runs and refusals of it, plus as many remediations of another target."""

    async def make() -> None:
        async with opened(f"sqlite:///{path}"):
            pass  # the schema

    asyncio.run(make())
    rows = [(SUCCEEDED, 500.0)] + [
        (DRY_RUN if i % 2 else BLOCKED, 1000.0 + i) for i in range(uncounted)
    ]
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT INTO remediations (playbook, fingerprint, episode_id, target, state, "
            "started_at) VALUES (?, ?, ?, ?, ?, ?)",
            [(PLAYBOOK, f"fp-{i}", i, TARGET, state, at) for i, (state, at) in enumerate(rows)]
            + [(PLAYBOOK, f"other-{i}", i, "web-2", DRY_RUN, 1.0 + i) for i in range(uncounted)],
        )


def _read(path: Path) -> tuple[GuardSnapshot, int]:
    """The guards' snapshot of the target, and the VM steps it took (in STEPS_PER_TICK)."""
    conn = connect_reader(path)
    ticks = 0

    def tick() -> int:
        nonlocal ticks
        ticks += 1
        return 0

    try:
        conn.set_progress_handler(tick, STEPS_PER_TICK)
        op = snapshot(
            SQLITE, target=TARGET, playbook=PLAYBOOK, flag="kill_switch", peers=None,
            since=None, episode_id=None,
        )  # fmt: skip
        found = drive(op, conn, write=False)
        conn.set_progress_handler(None, 0)
    finally:
        conn.close()
    return found, ticks


def test_the_cooldown_read_does_not_walk_a_targets_dry_runs_and_blocked_runs(
    tmp_path: Path,
) -> None:
    _history(tmp_path / "short.db", uncounted=10)
    _history(tmp_path / "long.db", uncounted=5000)
    short, short_steps = _read(tmp_path / "short.db")
    long, long_steps = _read(tmp_path / "long.db")
    # Same answer: the last counted start is the succeeded one, whatever came after it.
    assert short.last_started == long.last_started == 500.0
    # Same work: 500 times the history, at most a few more steps (index depth), not 500x.
    assert long_steps <= short_steps * 2, (short_steps, long_steps)
