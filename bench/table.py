"""A small fixed-width table printer for the benchmark reports."""

from __future__ import annotations

import math
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class Table:
    """A titled table: a header row, rows of cells, and notes printed under it.

    Cells are strings; a cell that looks like a number is right-aligned, any other is
    left-aligned."""

    title: str
    header: Sequence[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: str) -> None:
        if len(cells) != len(self.header):
            raise ValueError(f"row has {len(cells)} cells, the header {len(self.header)}")
        self.rows.append(list(cells))

    def note(self, line: str) -> None:
        self.notes.append(line)

    def render(self) -> str:
        widths = [len(h) for h in self.header]
        for row in self.rows:
            for i, cell in enumerate(row):
                widths[i] = max(widths[i], len(cell))

        def line(cells: Sequence[str]) -> str:
            out = []
            for i, cell in enumerate(cells):
                out.append(cell.rjust(widths[i]) if _numeric(cell) else cell.ljust(widths[i]))
            return "| " + " | ".join(out) + " |"

        rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
        parts = [f"### {self.title}", "", line(self.header), rule]
        parts += [line(row) for row in self.rows]
        if self.notes:
            parts.append("")
            parts += [f"- {n}" for n in self.notes]
        return "\n".join(parts)


def _numeric(cell: str) -> bool:
    text = cell.strip().rstrip("%x").removesuffix(" ms").removesuffix(" s").removesuffix(" MB")
    text = text.replace(",", "").lstrip("<>=~+-")
    try:
        float(text)
    except ValueError:
        return False
    return True


def machine() -> str:
    """One line: cores (``os.cpu_count()``), Python, OS, and how busy the machine is."""
    one, five, _ = os.getloadavg()
    return (
        f"machine: {os.cpu_count()} cores (os.cpu_count()), Python {platform.python_version()} "
        f"({sys.implementation.name}), {platform.system()} {platform.release()}; "
        f"load average {one:.1f} (1 min) / {five:.1f} (5 min), a busy loop got "
        f"{cpu_share():.0%} of a core when this table was printed"
    )


def cpu_share(seconds: float = 0.3) -> float:
    """The fraction of one core a busy loop gets now (1.0 on an idle machine): other work on
    the same cores shows here."""
    wall, cpu = time.monotonic(), time.process_time()
    while time.monotonic() - wall < seconds:
        pass
    return (time.process_time() - cpu) / (time.monotonic() - wall)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}" if base > 0 else "n/a"


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0..100) of a non-empty sequence."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(pct / 100 * len(ordered))))
    return ordered[rank - 1]
