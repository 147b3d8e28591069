"""``python -m bench.appends``: the workers' chain appends on PostgreSQL, in process.

No server, no HTTP: 1 or ``--replicas`` :class:`~remediator.store.postgres.PostgresStore`\\ s
(pool of 10 each) on one fresh database of the server of ``tests/services.sh`` (or ``--pg``),
``--concurrency`` decisions at a time in all, each decision three one-event appends awaited in
turn (as a remediation's started / action / dry-run records), ``--decisions`` per cell. The cells
alternate (1, N, 1, N, ...; ``--rounds``) so both see the same load, and one SQLite store runs
the same cells as the baseline (``--no-sqlite``: skip it). Printed per cell: decisions/s,
transactions committed per decision (``pg_stat_database.xact_commit``) and this process's CPU
time per decision (``time.process_time``), which survive a busy machine better than the rate.
Section 9 of docs/performance.md measured with it (issue 19).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg

from bench.replicas import find_dsn, fresh_database
from bench.table import Table, machine
from remediator.audit.events import Event
from remediator.store import Store, create_store

STEPS = 3  # appends per decision


@dataclass(frozen=True)
class Cell:
    backend: str  # "postgresql" | "sqlite"
    stores: int
    per_second: float
    transactions: float | None  # per decision (PostgreSQL only)
    cpu_us: float  # per decision


async def _decide(stores: list[Store], *, decisions: int, concurrency: int) -> float:
    """Seconds taken by ``decisions`` decisions, ``concurrency`` at a time across ``stores``."""
    left = list(range(decisions))

    async def worker(store: Store) -> None:
        while left:
            n = left.pop()
            for step in range(STEPS):
                record = Event(type="bench:step", time=1.0, target=f"a{n}", action=str(step))
                await store.append([record])

    began = time.perf_counter()
    await asyncio.gather(*[worker(stores[i % len(stores)]) for i in range(concurrency)])
    return time.perf_counter() - began


async def _cell(url: str, count: int, *, decisions: int, concurrency: int) -> float:
    stores = [create_store(url) for _ in range(count)]
    for store in stores:
        await store.open()
    try:
        return await _decide(stores, decisions=decisions, concurrency=concurrency)
    finally:
        for store in stores:
            await store.close()


def _commits(dsn: str, name: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (name,)
        ).fetchone()
    return int(row[0]) if row else 0


def postgres_cell(dsn: str, count: int, *, decisions: int, concurrency: int) -> Cell:
    with fresh_database(dsn, keep=False) as (url, name):
        pooled = url + ("&" if "?" in url else "?") + "pool_size=10"
        asyncio.run(_cell(pooled, 1, decisions=0, concurrency=1))  # the schema, not measured
        before, cpu = _commits(dsn, name), time.process_time()
        took = asyncio.run(_cell(pooled, count, decisions=decisions, concurrency=concurrency))
        cpu = time.process_time() - cpu
        time.sleep(0.6)  # the statistics collector's flush
        transactions = (_commits(dsn, name) - before) / decisions
    return Cell("postgresql", count, decisions / took, transactions, 1e6 * cpu / decisions)


def sqlite_cell(*, decisions: int, concurrency: int) -> Cell:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        asyncio.run(_cell(url, 1, decisions=0, concurrency=1))
        cpu = time.process_time()
        took = asyncio.run(_cell(url, 1, decisions=decisions, concurrency=concurrency))
        cpu = time.process_time() - cpu
    return Cell("sqlite", 1, decisions / took, None, 1e6 * cpu / decisions)


def run(
    *, dsn: str, replicas: int, decisions: int, concurrency: int, rounds: int, sqlite: bool
) -> Table:
    table = Table(
        f"Chain appends in process: 1 store vs {replicas}, {concurrency} decisions at a time",
        (
            "backend",
            "stores",
            "decisions/s",
            "ratio",
            "transactions per decision",
            "CPU per decision",
        ),
    )
    for _ in range(rounds):
        cells = [
            postgres_cell(dsn, count, decisions=decisions, concurrency=concurrency)
            for count in (1, replicas)
        ]
        if sqlite:
            cells.append(sqlite_cell(decisions=decisions, concurrency=concurrency))
        one = cells[0].per_second
        for cell in cells:
            table.add(
                cell.backend,
                str(cell.stores),
                f"{cell.per_second:,.0f}",
                f"{cell.per_second / one:.2f}",
                "-" if cell.transactions is None else f"{cell.transactions:.2f}",
                f"{cell.cpu_us:,.0f} µs",
            )
    table.note(
        f"{decisions} decisions per cell, each {STEPS} one-event appends awaited in turn; ratio: "
        "to the PostgreSQL cell with 1 store of the same round; CPU: this process's"
    )
    return table


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.appends", description=__doc__)
    p.add_argument("--pg", help="PostgreSQL DSN (default: tests/services.sh's)")
    p.add_argument("--replicas", type=int, default=3, help="stores compared with one (3)")
    p.add_argument("--decisions", type=int, default=900, help="per cell (900)")
    p.add_argument("--concurrency", type=int, default=48, help="decisions at a time (48)")
    p.add_argument("--rounds", type=int, default=2, help="rounds of cells (2)")
    p.add_argument("--no-sqlite", dest="sqlite", action="store_false", help="skip SQLite")
    args = p.parse_args(argv)
    print(f"# python -m bench.appends\n\n{machine()}\n", flush=True)
    table = run(
        dsn=find_dsn(args.pg),
        replicas=args.replicas,
        decisions=args.decisions,
        concurrency=args.concurrency,
        rounds=args.rounds,
        sqlite=args.sqlite,
    )
    print(table.render(), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
