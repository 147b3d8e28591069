"""Profiling the remediator process under a benchmark's load with py-spy.

``python -m bench profile [--py-spy PATH]`` runs the intake benchmark (new alerts, 128
connections) and the storm with ``py-spy record --nonblocking --threads --format raw`` attached
to the remediator process for the measured part, then prints the top functions by own time
(leaf frames) and by inclusive time, and the share of each thread. py-spy is not a dependency of
the project: install it in a throwaway venv (``python3 -m venv /tmp/bench-tools &&
/tmp/bench-tools/bin/pip install py-spy``) and pass ``--py-spy``, or have it on PATH.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.procs import BenchError
from bench.table import Table

# Frames every sample of a thread passes through: not informative in the inclusive ranking.
_ENTRY_POINTS = (
    "remediator/cli.py",
    "remediator/__main__.py",
    "remediator/http/server.py",
    "_loop (",
)
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]*)(?::\d+)?\)$")


def find_py_spy(given: str | None) -> str:
    candidates = [given] if given else []
    candidates += [shutil.which("py-spy") or "", str(Path(sys.executable).parent / "py-spy")]
    candidates.append("/tmp/bench-tools/bin/py-spy")
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    raise BenchError(
        "py-spy not found: python3 -m venv /tmp/bench-tools && /tmp/bench-tools/bin/pip install "
        "py-spy, then pass --py-spy /tmp/bench-tools/bin/py-spy"
    )


class PySpy:
    """Record one process's stacks into ``outdir``/LABEL.txt while a ``with`` block runs."""

    def __init__(
        self, binary: str, outdir: Path, rate: int = 100, *, gil: bool = False, idle: bool = False
    ) -> None:
        self.binary = binary
        self.outdir = outdir
        self.rate = rate
        self.gil = gil  # sample only the thread holding the GIL
        self.idle = idle  # also sample threads that wait (wall-clock view)
        self.files: dict[str, Path] = {}

    @contextmanager
    def record(self, pid: int, label: str) -> Iterator[object]:
        self.outdir.mkdir(parents=True, exist_ok=True)
        out = self.outdir / f"{label}.txt"
        log = self.outdir / f"{label}.log"
        with log.open("wb") as handle:
            proc = subprocess.Popen(
                [
                    self.binary,
                    "record",
                    "--pid",
                    str(pid),
                    "--output",
                    str(out),
                    "--format",
                    "raw",
                    "--rate",
                    str(self.rate),
                    "--duration",
                    "300",
                    "--nonblocking",
                    "--threads",
                    *(["--gil"] if self.gil else []),
                    *(["--idle"] if self.idle else []),
                ],
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
            )
        time.sleep(0.5)  # attached
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
        if not out.exists():
            raise BenchError(f"py-spy wrote no profile:\n{log.read_text(errors='replace')}")
        self.files[label] = out


@dataclass
class Profile:
    samples: int
    own: Counter[str]
    inclusive: Counter[str]
    threads: Counter[str]


def _frame(text: str) -> str:
    """``func (path/to/file.py:123)`` -> ``func (file.py)``; paths shortened to the package."""
    match = _FRAME.match(text)
    if match is None:
        return text
    path = match.group("file")
    for marker in ("/site-packages/", "/lib/python3.11/", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match.group('func')} ({path})"


def analyse(raw: Path) -> Profile:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        parts = stack.split(";")
        thread = parts[0].split(": ", 1)[-1].split(" (")[0]
        frames = [_frame(p) for p in parts[1:]]
        total += count
        threads[thread] += count
        if frames:
            own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    return Profile(total, own, inclusive, threads)


def tables(label: str, profile: Profile, top: int = 15) -> list[Table]:
    def pct(n: int) -> str:
        return f"{100 * n / profile.samples:.1f}%" if profile.samples else "0%"

    out = []
    t = Table(
        f"Profile {label}: threads ({profile.samples:,} samples, idle excluded)",
        ["thread", "samples", "share"],
    )
    for name, n in profile.threads.most_common():
        t.add(name, f"{n:,}", pct(n))
    out.append(t)
    t = Table(f"Profile {label}: top {top} by own time", ["function (file)", "own", "share"])
    for name, n in profile.own.most_common(top):
        t.add(name, f"{n:,}", pct(n))
    out.append(t)
    t = Table(
        f"Profile {label}: top {top} by inclusive time (remediator's own frames)",
        ["function (file)", "inclusive", "share"],
    )
    shown = 0
    for name, n in profile.inclusive.most_common():
        if "remediator/" in name and not any(entry in name for entry in _ENTRY_POINTS):
            t.add(name, f"{n:,}", pct(n))
            shown += 1
            if shown >= top:
                break
    out.append(t)
    return out
