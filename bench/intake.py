"""Benchmark 1: intake throughput and latency of ``POST /api/v1/recovery/alerts``.

remediator (durable ack: the alerts are committed to SQLite, WAL + ``synchronous=FULL``, before
the 200) against the bare baseline app (reads the body, answers 200), both served the same way,
loaded by wrk with the same payload, connections and duration. Two payloads: "new" (a fresh
fingerprint per request, so every request stores a new alert and queues it for the worker, which
runs meanwhile) and "duplicates" (the same alert every time: stored once, then recorded as a
duplicate). Each remediator cell runs on a fresh process and store.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bench import payloads, wrk
from bench.procs import (
    ALERTS_PATH,
    Baseline,
    Remediator,
    Workdir,
    bench_config,
    describe_problems,
    uvicorn_impl,
)
from bench.table import Table, machine, ms

TARGETS: Final = [f"bench-{i:02d}" for i in range(wrk.CONTAINERS)]
MODES: Final = ("new", "duplicates")
Profiler = Callable[[int, str], AbstractContextManager[object]]


@dataclass(frozen=True)
class Settings:
    connections: tuple[int, ...] = (32, 128)
    seconds: float = 6.0
    warmup: float = 1.0
    threads: int = 2
    modes: tuple[str, ...] = MODES
    keep: bool = False
    profiler: Profiler | None = None


@dataclass(frozen=True)
class Cell:
    mode: str
    connections: int
    baseline: wrk.WrkResult
    remediator: wrk.WrkResult
    stored: int  # inbox rows after the run
    pending: int  # of which not yet decided by the worker
    acked: int  # requests wrk counted as answered (warm-up and run)
    problems: dict[str, int]


def _lua_for(workdir: Workdir, name: str, token: str, mode: str, space: int) -> Path:
    """The wrk script; for new alerts, each script (``space``) has fingerprints of its own."""
    if mode == "new":
        body, vary = payloads.marked_template(), True
    else:
        body, vary = payloads.single(payloads.fingerprint(0xDD, 1), "bench-00").decode(), False
    return wrk.script(
        workdir.path / f"{name}-{mode}-{space}.lua",
        url_path=ALERTS_PATH,
        body=body,
        token=token,
        vary=vary,
        space=space,
    )


def measure(settings: Settings) -> list[Cell]:
    binary = wrk.ensure_wrk()

    def load(pid: int, url: str, lua: Path, conns: int, seconds: float) -> wrk.WrkResult:
        return wrk.run(
            binary,
            url,
            lua,
            connections=conns,
            seconds=seconds,
            threads=settings.threads,
            server_pid=pid,
        )

    cells: list[Cell] = []
    with Workdir("intake", keep=settings.keep) as wd, Baseline(wd.sub("baseline")) as base:
        base_url = base.url + ALERTS_PATH
        for mode in settings.modes:
            for conns in settings.connections:
                load(base.pid, base_url, _lua_for(wd, "b", "-", mode, 1), conns, settings.warmup)
                b = load(
                    base.pid, base_url, _lua_for(wd, "b", "-", mode, 2), conns, settings.seconds
                )
                rem = Remediator(
                    wd.sub(f"remediator-{mode}-{conns}"), bench_config(targets=TARGETS)
                )
                with rem:
                    name, token = f"r{conns}", rem.intake_token
                    warm = load(
                        rem.pid,
                        rem.alerts_url,
                        _lua_for(wd, name, token, mode, 1),
                        conns,
                        settings.warmup,
                    )
                    lua = _lua_for(wd, name, token, mode, 2)
                    profiler = settings.profiler
                    with profiler(rem.pid, f"intake-{mode}-{conns}") if profiler else nullcontext():
                        r = load(rem.pid, rem.alerts_url, lua, conns, settings.seconds)
                    stored = rem.query("SELECT count(*) FROM inbox")[0][0]
                    pending = rem.query("SELECT count(*) FROM inbox WHERE state = 'pending'")[0][0]
                acked = warm.requests + r.requests
                cells.append(
                    Cell(mode, conns, b, r, int(stored), int(pending), acked, rem.problems())
                )
    return cells


def table(cells: list[Cell], settings: Settings) -> Table:
    t = Table(
        "Intake: POST /api/v1/recovery/alerts, remediator (durable ack) vs bare Starlette",
        [
            "payload",
            "conns",
            "baseline req/s",
            "remediator req/s",
            "ratio",
            "baseline p50 / p99",
            "remediator p50 / p99",
            "errors b / r",
            "server CPU b / r",
            "wrk CPU b / r",
        ],
    )
    for c in cells:
        b, r = c.baseline, c.remediator
        t.add(
            c.mode,
            str(c.connections),
            f"{b.rps:,.0f}",
            f"{r.rps:,.0f}",
            f"{r.rps / b.rps:.2f}" if b.rps else "n/a",
            f"{ms(b.p50)} / {ms(b.p99)}",
            f"{ms(r.p50)} / {ms(r.p99)}",
            f"{b.errors} / {r.errors}",
            f"{_pct(b.server_cpu, b.seconds)} / {_pct(r.server_cpu, r.seconds)}",
            f"{_pct(b.client_cpu, b.seconds)} / {_pct(r.client_cpu, r.seconds)}",
        )
    t.note(machine())
    t.note(f"server: {uvicorn_impl()}; same settings for both (remediator.http.server.serve)")
    t.note(
        f"load: wrk, {settings.threads} threads, {settings.seconds:.0f}s per cell after a "
        f"{settings.warmup:.0f}s warm-up, all on 127.0.0.1; payload: fixture firing_single.json "
        "(1 alert, ~1.3 kB) with a container label"
    )
    t.note(
        "ratio = remediator req/s / baseline req/s (target >= 0.70); CPU in % of one core over "
        "the run (server: all its threads; wrk: the client, the bound on what the load "
        "generator costs)"
    )
    for c in cells:
        if c.problems:
            t.note(describe_problems(f"{c.mode}, {c.connections} conns: remediator", c.problems))
        if c.mode == "new":
            t.note(
                f"new, {c.connections} conns: {c.stored:,} distinct alerts stored for {c.acked:,} "
                f"answered requests (warm-up included), {c.pending:,} still pending for the "
                "worker when the run ended (the worker shares the process)"
            )
    return t


def _pct(cpu: float, seconds: float) -> str:
    return f"{100 * cpu / seconds:.0f}%" if seconds > 0 else "n/a"


def run(settings: Settings | None = None) -> list[Table]:
    settings = settings or Settings()
    cells = measure(settings)
    return [table(cells, settings)]
