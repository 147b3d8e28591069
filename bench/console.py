"""``python -m bench console``: the console's time to first byte with 100,000 incidents stored.

Seeds a SQLite store with ``incidents`` incidents (an ``alert:received``, a ``recovery:action``
and a ``recovery:succeeded`` event each, through the store's own ``append``), serves a real
remediator on it, signs in through the console's form, and times the first byte of the Now page,
the History list, one incident's timeline and, as the baseline in the same run, the public
``GET /api/v1/recovery/health``.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import time
from dataclasses import dataclass, replace

import httpx2 as httpx

from bench.procs import Remediator, Workdir, bench_config
from bench.table import Table
from remediator.audit.events import Event
from remediator.store import create_store

BATCH = 2000


@dataclass(frozen=True)
class Settings:
    incidents: int = 100_000
    samples: int = 200
    keep: bool = False


async def seed(url: str, incidents: int) -> None:
    store = create_store(url)
    await store.open()
    try:
        start = time.time() - incidents * 0.5  # the last half day: inside /statistics' 24h
        for first in range(0, incidents, BATCH):
            batch: list[Event] = []
            for i in range(first, min(first + BATCH, incidents)):
                t = start + i * 0.5
                base = Event(type="alert:received", time=t, status="firing",
                             fingerprint=f"fp{i:06d}", alertname="HighMemoryUsage",
                             target=f"c{i % 50}", playbook="bench-restart")  # fmt: skip
                batch += [
                    base,
                    replace(
                        base,
                        type="recovery:action",
                        time=t + 1,
                        status="",
                        action="docker.restart",
                        outcome="success",
                        duration=1.0,
                    ),
                    replace(
                        base, type="recovery:succeeded", time=t + 2, status="", outcome="success"
                    ),
                ]
            await store.append(batch)
    finally:
        await store.close()


def ttfb(client: httpx.Client, url: str, samples: int) -> list[float]:
    """Seconds to the first byte of the body, ``samples`` times."""
    out = []
    for _ in range(samples):
        began = time.perf_counter()
        with client.stream("GET", url) as answer:
            next(answer.iter_raw(1), b"")
            out.append(time.perf_counter() - began)
            if answer.status_code != 200:
                raise RuntimeError(f"{url}: {answer.status_code}")
    return out


def run(settings: Settings | None = None) -> list[Table]:
    settings = settings or Settings()
    with Workdir("console", settings.keep) as wd:
        rem = Remediator(wd.sub("r"), bench_config(targets=[f"c{i}" for i in range(50)]))
        began = time.monotonic()
        asyncio.run(seed(f"sqlite:///{rem.db_path}", settings.incidents))
        seeded = time.monotonic() - began
        rem.start()
        try:
            with httpx.Client(base_url=rem.url, timeout=30, follow_redirects=False) as client:
                form = client.get("/console/login")
                found = re.search(r'name="csrf" value="([^"]+)"', form.text)
                assert found is not None
                signed = client.post("/console/login",
                                     data={"csrf": found.group(1), "token": rem.tokens["viewer"]})  # fmt: skip
                assert signed.status_code == 303, signed.text
                middle = f"fp{settings.incidents // 2:06d}"
                pages = {
                    "baseline: GET /api/v1/recovery/health": "/api/v1/recovery/health",
                    "Now (GET /console/)": "/console/",
                    "History, newest page (GET /console/history)": "/console/history",
                    "History, one target (?target=c7)": "/console/history?target=c7",
                    f"one timeline (GET /console/incidents/{middle})": f"/console/incidents/{middle}",
                }
                timed = {name: ttfb(client, path, settings.samples) for name, path in pages.items()}
        finally:
            rem.stop()
    table = Table(
        f"Console time to first byte, {settings.incidents:,} incidents stored (SQLite)",
        ("page", "p50", "p99", "p50 / baseline"),
    )
    base = statistics.median(next(iter(timed.values())))
    for name, values in timed.items():
        values.sort()
        p50 = statistics.median(values)
        p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
        table.add(name, f"{p50 * 1000:.1f} ms", f"{p99 * 1000:.1f} ms", f"{p50 / base:.1f}x")
    table.note(f"{settings.samples} sequential samples each, one signed-in session; "
               f"seeding {3 * settings.incidents:,} events took {seeded:.0f} s")  # fmt: skip
    return [table]
