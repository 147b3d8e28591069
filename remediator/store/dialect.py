"""What differs between the two SQL dialects the store speaks (SQLite, PostgreSQL).

Statements are written once, with ``?`` placeholders (see remediator/store/ops.py); a
:class:`Dialect` spells them for its backend. Both backends accept ``ON CONFLICT ... DO
NOTHING / DO UPDATE`` and ``RETURNING`` (SQLite 3.35+), so those are written one way.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Final


@dataclass(frozen=True)
class Dialect:
    name: str  # "sqlite" | "postgresql"
    placeholder: str  # "?" | "%s"
    for_update: str  # "" | " FOR UPDATE": lock the rows read (SQLite's single writer needs none)
    skip_locked: str  # "" | " FOR UPDATE SKIP LOCKED": claim rows no other writer holds

    def sql(self, text: str) -> str:
        """``text`` (written with ``?``) in this dialect's paramstyle."""
        return text if self.placeholder == "?" else _percent(text)


@lru_cache(maxsize=1024)
def _percent(text: str) -> str:
    """psycopg's paramstyle: ``%`` doubled (a literal), ``?`` → ``%s``."""
    return text.replace("%", "%%").replace("?", "%s")


SQLITE: Final = Dialect(name="sqlite", placeholder="?", for_update="", skip_locked="")
POSTGRES: Final = Dialect(
    name="postgresql",
    placeholder="%s",
    for_update=" FOR UPDATE",
    skip_locked=" FOR UPDATE SKIP LOCKED",
)
