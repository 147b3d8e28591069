"""Episodes (the firing periods of alerts) as the engine reads them — both backends.

Intake writes them (remediator/store/inbox.py); the guards mark which target each one is
about (remediator/store/guards.py).
"""

from __future__ import annotations

from remediator.alerts import Episode
from remediator.store.ops import Dialect, Driven, Op, all_, one

COLUMNS = "id, fingerprint, starts_at, resolved_at"


def find(d: Dialect, *, episode_id: int) -> Op[Episode | None]:
    row = yield one(f"SELECT {COLUMNS} FROM episodes WHERE id = ?", episode_id)  # noqa: S608
    return Episode(*row) if row else None


def still_open(d: Dialect) -> Op[list[Episode]]:
    rows = yield all_(
        f"SELECT {COLUMNS} FROM episodes WHERE resolved_at IS NULL ORDER BY id"  # noqa: S608
    )
    return [Episode(*row) for row in rows]


class EpisodeOps(Driven):
    async def episode(self, episode_id: int) -> Episode | None:
        return await self._peek_op(find, episode_id=episode_id)  # by primary key

    async def open_episodes(self) -> list[Episode]:
        """Every episode still firing."""
        return await self._read_op(still_open)
