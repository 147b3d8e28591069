"""Benchmark 3: decision latency — from the 2xx of a single-alert webhook to the first action.

For each sample, a new alert on one of the probe targets is POSTed; the client notes the wall
time it read the 2xx. remediator records ``recovery:started`` (its decision to run, after the
guards) and one ``recovery:action`` per step whose ``time`` is when the step ended and
``duration`` how long it ran, so the first action call began at ``time - duration``. Both come
from the same host clock (``time.time()``), read from the SQLite file read-only after the run.

Baseline: the same samples on an otherwise idle remediator. Measured: the same with a background
load of 100 notifications per second (new alerts on other targets, full engine path), sent by
``bench/loadgen.py`` in its own process; then with 1,000 new alerts per second for 30 s (the
samples spread over the 30 s), where nothing may be left pending when the sampling ends.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Final

import aiohttp

from bench import payloads
from bench.procs import (
    ROOT,
    BenchError,
    Remediator,
    Workdir,
    bench_config,
    describe_problems,
    uvicorn_impl,
)
from bench.table import Table, machine, ms, percentile

PROBES: Final = [f"probe-{i}" for i in range(10)]
BACKGROUND_TARGETS: Final = [f"bench-{i:02d}" for i in range(50)]
SAMPLE_SPACE: Final = 0x77
TARGET_P99: Final = 0.010  # idle and under the background rate
HEAVY_TARGET_P99: Final = 0.050  # under the heavy rate


@dataclass(frozen=True)
class Settings:
    samples: int = 200
    spacing: float = 0.03  # seconds between samples
    rate: float = 100.0  # background notifications per second
    heavy_rate: float = 1000.0  # the heavy row's notifications per second (0: no heavy row)
    heavy_seconds: float = 30.0  # how long the heavy row samples
    keep: bool = False


@dataclass
class Sample:
    fingerprint: str
    sent: float
    acked: float
    status: int
    started: float | None = None  # recovery:started
    action: float | None = None  # the first action call began


@dataclass
class Scenario:
    name: str
    samples: list[Sample]
    rate: float = 0.0  # background notifications per second
    target: float = TARGET_P99
    background: dict[str, float] = field(default_factory=dict)
    pending_after: int = 0
    problems: dict[str, int] = field(default_factory=dict)

    def values(self, what: str) -> list[float]:
        out = []
        for s in self.samples:
            if what == "ack":
                out.append(s.acked - s.sent)
            elif what == "started" and s.started is not None:
                out.append(s.started - s.acked)
            elif what == "action" and s.action is not None:
                out.append(s.action - s.acked)
        return out


async def take_samples(rem: Remediator, settings: Settings, count: int) -> list[Sample]:
    headers = {"Authorization": f"Bearer {rem.intake_token}", "Content-Type": "application/json"}
    samples = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
        for i in range(count):
            fp = payloads.fingerprint(SAMPLE_SPACE, i)
            body = payloads.single(fp, PROBES[i % len(PROBES)])
            sent = time.time()
            async with session.post(rem.alerts_url, data=body, headers=headers) as answer:
                acked = time.time()
                status = answer.status
                await answer.read()
            samples.append(Sample(fp, sent, acked, status))
            await asyncio.sleep(settings.spacing)
    return samples


def collect(rem: Remediator, samples: list[Sample], timeout: float = 30.0) -> None:
    """Fill in each sample's event times once every sample has its action recorded."""
    by_fp = {s.fingerprint: s for s in samples}
    prefix = f"{SAMPLE_SPACE:02x}%"
    deadline = time.monotonic() + timeout
    while True:
        rows = rem.query(
            "SELECT fingerprint, type, time, duration FROM events "
            "WHERE type IN ('recovery:started', 'recovery:action') AND fingerprint LIKE ?",
            (prefix,),
        )
        for sample in samples:
            sample.started = sample.action = None
        for fp, kind, at, duration in rows:
            found = by_fp.get(fp)
            if found is None:
                continue
            if kind == "recovery:started":
                found.started = at if found.started is None else min(found.started, at)
            else:
                began = at - (duration or 0.0)
                found.action = began if found.action is None else min(found.action, began)
        if all(s.action is not None for s in samples) or time.monotonic() > deadline:
            return
        time.sleep(0.2)


def scenario(
    wd: Workdir, name: str, settings: Settings, *, rate: float, count: int, target: float
) -> Scenario:
    """``count`` samples on a fresh remediator, with ``rate`` background notifications per
    second (0: none)."""
    config = bench_config(targets=BACKGROUND_TARGETS + PROBES)
    with Remediator(wd.sub(name), config) as rem:
        load: subprocess.Popen[str] | None = None
        if rate:
            env = {**rem.env(), "BENCH_TOKEN": rem.intake_token}
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
            load = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bench.loadgen",
                    "--url",
                    rem.alerts_url,
                    "--token-env",
                    "BENCH_TOKEN",
                    "--rate",
                    str(rate),
                    "--max-seconds",
                    str(2 + count * (settings.spacing + 0.05) + 10),
                    "--containers",
                    str(len(BACKGROUND_TARGETS)),
                ],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                text=True,
            )
            time.sleep(1.5)  # the load is running at its rate
        try:
            samples = asyncio.run(take_samples(rem, settings, count))
        finally:
            stats: dict[str, float] = {}
            if load is not None:
                if load.poll() is None:
                    load.send_signal(signal.SIGTERM)
                out, _ = load.communicate(timeout=60)
                if out.strip():
                    stats = json.loads(out.strip().splitlines()[-1])
        pending = int(rem.query("SELECT count(*) FROM inbox WHERE state = 'pending'")[0][0])
        collect(rem, samples)
        if not rem.alive():
            raise BenchError(f"remediator died:\n{rem.log()}")
        problems = rem.problems()
    return Scenario(name, samples, rate, target, stats, pending, problems)


def measure(settings: Settings) -> list[Scenario]:
    with Workdir("latency", keep=settings.keep) as wd:
        out = [
            scenario(wd, "idle", settings, rate=0, count=settings.samples, target=TARGET_P99),
            scenario(
                wd, "loaded", settings, rate=settings.rate, count=settings.samples,
                target=TARGET_P99,
            ),
        ]  # fmt: skip
        if settings.heavy_rate:
            count = round(settings.heavy_seconds / settings.spacing)
            out.append(
                scenario(
                    wd, "heavy", settings, rate=settings.heavy_rate, count=count,
                    target=HEAVY_TARGET_P99,
                )
            )  # fmt: skip
        return out


def table(scenarios: list[Scenario], settings: Settings) -> Table:
    t = Table(
        "Decision latency: 2xx of a single-alert webhook -> first action call",
        [
            "background load",
            "samples",
            "webhook 2xx p50 / p99",
            "2xx -> recovery:started p50 / p99",
            "2xx -> first action p50 / p99",
            "max",
            "target p99",
        ],
    )
    for sc in scenarios:
        action = sc.values("action")
        started = sc.values("started")
        ack = sc.values("ack")
        missing = len(sc.samples) - len(action)
        if not action:
            t.add(sc.name, f"{len(sc.samples)} (none acted)", "", "", "", "", "MISSED")
            continue
        p99 = percentile(action, 99)
        label = f"{sc.rate:,.0f} notifications/s (new alerts)" if sc.rate else "none (baseline)"
        t.add(
            label,
            f"{len(action)}" + (f" ({missing} without action)" if missing else ""),
            f"{ms(percentile(ack, 50))} / {ms(percentile(ack, 99))}",
            f"{ms(percentile(started, 50))} / {ms(percentile(started, 99))}" if started else "",
            f"{ms(percentile(action, 50))} / {ms(p99)}",
            ms(max(action)),
            f"<= {sc.target * 1000:.0f} ms: {'met' if p99 <= sc.target else 'MISSED'}",
        )
    loaded = scenarios[1]
    base = scenarios[0].values("action")
    if base and loaded.values("action"):
        t.note(
            "ratio loaded/baseline: p50 "
            f"{percentile(loaded.values('action'), 50) / max(percentile(base, 50), 1e-9):.2f}, "
            f"p99 {percentile(loaded.values('action'), 99) / max(percentile(base, 99), 1e-9):.2f}"
        )
    for sc in scenarios:
        if not sc.background:
            continue
        bg = sc.background
        t.note(
            f"background {sc.rate:,.0f}/s: {int(bg.get('ok', 0)):,} of {int(bg.get('sent', 0)):,} "
            f"notifications acked in {bg.get('seconds', 0):.1f} s ({bg.get('ok', 0) / max(bg.get('seconds', 1), 1e-9):,.0f}/s), "
            f"webhook p50 {bg.get('p50_ms', 0):.1f} ms / p99 {bg.get('p99_ms', 0):.1f} ms; "
            f"{sc.pending_after:,} alerts still pending for the worker when sampling ended"
        )
    for sc in scenarios:
        t.note(describe_problems(f"remediator ({sc.name})", sc.problems))
    t.note(machine())
    t.note(f"server: {uvicorn_impl()}")
    t.note(
        f"{settings.samples} samples ({len(scenarios[-1].samples)} in the heavy row), one every "
        f"{settings.spacing * 1000:.0f} ms on one "
        f"keep-alive connection, each a new alert on one of {len(PROBES)} probe targets; "
        "dry-run playbook docker.restart + verify.health; first action = recovery:action "
        "time - duration; all times from the same clock (time.time())"
    )
    return t


def run(settings: Settings | None = None) -> list[Table]:
    settings = settings or Settings()
    return [table(measure(settings), settings)]
