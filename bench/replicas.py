"""Benchmark: intake throughput with one and with several replicas on one PostgreSQL database.

``python -m bench replicas`` (or ``python -m bench.replicas``). For each payload ("new": a fresh
fingerprint per request; "duplicates": the same alert every time, so every replica contends on
one fingerprint's advisory lock) and each total connection count, the same load is sent to one
``remediator serve`` and then to N of them (default 3), each cell on a fresh database of the
same server. The load is spread evenly: one ``wrk`` per replica with ``connections / N``
connections (``wrk`` keeps each connection on one server, so requests alternate between the
replicas in the proportions of round-robin), all started together and run for the same time.

The server comes from ``--pg`` / ``$BENCH_POSTGRES_DSN`` / ``$POSTGRES_DSN``, else the
``POSTGRES_DSN`` of ``tests/services.sh``'s env file; it must be on loopback, and its role must
be allowed to CREATE DATABASE. Each cell's database (``remediator_bench_<hex>``) is dropped
afterwards unless ``--keep``. Every process is stopped by its PID.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from bench import payloads, wrk
from bench.procs import (
    ALERTS_PATH,
    BenchError,
    Remediator,
    Workdir,
    bench_config,
    children_cpu_seconds,
    cpu_seconds,
    describe_problems,
    uvicorn_impl,
)
from bench.table import Table, machine, ms

TARGETS: Final = [f"bench-{i:02d}" for i in range(wrk.CONTAINERS)]
MODES: Final = ("new", "duplicates")
SERVICES_ENV: Final = "/tmp/remediator-services/env"  # written by tests/services.sh up


@dataclass(frozen=True)
class Settings:
    replicas: int = 3
    connections: tuple[int, ...] = (48,)
    seconds: float = 6.0
    warmup: float = 1.0
    modes: tuple[str, ...] = MODES
    pool_size: int = 10  # store.url's pool_size, per replica
    equal_pool: bool = True  # also N replicas sharing one replica's connections
    dsn: str | None = None
    keep: bool = False


@dataclass(frozen=True)
class Cell:
    mode: str
    replicas: int
    connections: int
    pool_size: int
    requests: int
    seconds: float
    p50: float  # the median of the per-replica medians
    p99: float  # the worst replica's
    errors: int
    server_cpu: float  # CPU seconds of all replicas during the run
    client_cpu: float  # CPU seconds of all wrk processes
    pg_cpu: float  # CPU seconds of the PostgreSQL backends serving the cell's database
    per_replica: list[int] = field(default_factory=list)  # requests answered by each
    stored: int = 0
    pending: int = 0
    problems: dict[str, int] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def decided(self) -> int:
        """Stored alerts the workers had decided (dry-run remediations) when the run ended."""
        return self.stored - self.pending


# -- PostgreSQL -----------------------------------------------------------------------------------


def find_dsn(given: str | None = None) -> str:
    """The server to use: ``given``, the environment, or tests/services.sh's env file."""
    dsn = given or os.environ.get("BENCH_POSTGRES_DSN") or os.environ.get("POSTGRES_DSN")
    if not dsn:
        env_dir = os.environ.get("REMEDIATOR_SERVICES_DIR")
        path = Path(env_dir) / "env" if env_dir else Path(SERVICES_ENV)
        try:
            for line in path.read_text(encoding="utf-8").splitlines():
                key, _, value = line.strip().partition("=")
                if key == "POSTGRES_DSN":
                    dsn = value.strip().strip("'\"")
        except OSError:
            pass
    if not dsn:
        raise BenchError(
            "no PostgreSQL server: pass --pg, set BENCH_POSTGRES_DSN, or run "
            "`bash tests/services.sh up`"
        )
    host = str(conninfo_to_dict(dsn).get("host") or "")
    if not _loopback(host):
        raise BenchError(f"the PostgreSQL server must be on loopback, not {host!r}")
    return dsn


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _with_dbname(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    if parts.scheme in ("postgresql", "postgres"):
        return urlunsplit(parts._replace(path=f"/{name}", query=""))
    return make_conninfo(dsn, dbname=name)


@contextmanager
def fresh_database(dsn: str, keep: bool) -> Iterator[tuple[str, str]]:
    """A new, empty database on the server: its URL and name. Dropped afterwards unless
    ``keep``."""
    name = f"remediator_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = _with_dbname(dsn, name)
    try:
        yield url, name
    finally:
        if keep:
            print(f"kept database {name}", file=sys.stderr)
        else:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )


def _count(url: str, query: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0


def backend_cpu(dbname: str) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend serving ``dbname`` (on this machine; a
    backend is a process whose title names its database)."""
    found: dict[int, float] = {}
    marker = f" {dbname} ".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker in (entry / "cmdline").read_bytes():
                found[int(entry.name)] = cpu_seconds(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile, or not readable
    return found


def _delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU used between two readings (a backend started meanwhile counts from zero)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def server_version(dsn: str) -> str:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


# -- one cell -------------------------------------------------------------------------------------


def _lua(workdir: Path, rem: Remediator, mode: str, space: int, tag: str) -> Path:
    if mode == "new":
        body, vary = payloads.marked_template(), True
    else:
        body, vary = payloads.single(payloads.fingerprint(0xDD, 1), "bench-00").decode(), False
    return wrk.script(
        workdir / f"{tag}-{mode}-{space}.lua",
        url_path=ALERTS_PATH,
        body=body,
        token=rem.intake_token,
        vary=vary,
        space=space,
    )


def _split(total: int, parts: int) -> list[int]:
    """``total`` connections over ``parts`` replicas, as evenly as possible."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def measure_cell(
    settings: Settings,
    binary: str,
    wd: Workdir,
    mode: str,
    replicas: int,
    conns: int,
    pool_size: int,
) -> Cell:
    dsn = find_dsn(settings.dsn)
    tag = f"{mode}-{replicas}x{conns}-p{pool_size}"
    with fresh_database(dsn, settings.keep) as (url, dbname), ExitStack() as stack:
        servers: list[Remediator] = []
        for n in range(replicas):
            config = bench_config(targets=TARGETS)
            config["store"] = {"url": f"{url}?pool_size={pool_size}"}
            servers.append(Remediator(wd.sub(f"{tag}-r{n}"), config))
        # One at a time: the first creates the schema, the others find it current.
        for server in servers:
            stack.enter_context(server)
        shares = _split(conns, replicas)

        def load(index: int, seconds: float, space: int) -> wrk.WrkResult:
            server = servers[index]
            lua = _lua(wd.path, server, mode, space, f"{tag}-r{index}")
            return wrk.run(
                binary,
                server.alerts_url,
                lua,
                connections=shares[index],
                seconds=seconds,
                threads=1,
                server_pid=server.pid,
            )

        with ThreadPoolExecutor(replicas) as pool:
            list(pool.map(lambda i: load(i, settings.warmup, 0x10 + i), range(replicas)))
            cpu_before = sum(cpu_seconds(s.pid) for s in servers)
            client_before = children_cpu_seconds()
            pg_before = backend_cpu(dbname)
            results = list(pool.map(lambda i: load(i, settings.seconds, 0x40 + i), range(replicas)))
            server_cpu = sum(cpu_seconds(s.pid) for s in servers) - cpu_before
            client_cpu = children_cpu_seconds() - client_before
            pg_cpu = _delta(pg_before, backend_cpu(dbname))
        stored = _count(url, "SELECT count(*) FROM inbox")
        pending = _count(url, "SELECT count(*) FROM inbox WHERE state = 'pending'")
        problems: dict[str, int] = {}
        for server in servers:
            for message, count in server.problems().items():
                problems[message] = problems.get(message, 0) + count
    medians = sorted(r.p50 for r in results)
    return Cell(
        mode=mode,
        replicas=replicas,
        connections=conns,
        pool_size=pool_size,
        requests=sum(r.requests for r in results),
        seconds=max(r.seconds for r in results),
        p50=medians[len(medians) // 2],
        p99=max(r.p99 for r in results),
        errors=sum(r.errors for r in results),
        server_cpu=server_cpu,
        client_cpu=client_cpu,
        pg_cpu=pg_cpu,
        per_replica=[r.requests for r in results],
        stored=stored,
        pending=pending,
        problems=problems,
    )


def measure(settings: Settings) -> list[Cell]:
    if settings.replicas < 2:
        raise BenchError("--replicas must be at least 2 (it is compared with one)")
    unknown = set(settings.modes) - set(MODES)
    if unknown:
        raise BenchError(f"unknown payload mode(s) {sorted(unknown)}; known: {', '.join(MODES)}")
    binary = wrk.ensure_wrk()
    find_dsn(settings.dsn)  # fail early, before anything starts
    cells: list[Cell] = []
    with Workdir("replicas", keep=settings.keep) as wd:
        for mode in settings.modes:
            for conns in settings.connections:
                if conns < settings.replicas:
                    raise BenchError(f"{conns} connections cannot be spread over the replicas")
                runs = [(1, settings.pool_size), (settings.replicas, settings.pool_size)]
                shared = -(-settings.pool_size // settings.replicas)  # ceil
                if settings.equal_pool and shared != settings.pool_size:
                    runs.append((settings.replicas, shared))
                for count, pool_size in runs:
                    cells.append(measure_cell(settings, binary, wd, mode, count, conns, pool_size))
    return cells


# -- the table ------------------------------------------------------------------------------------


def table(cells: list[Cell], settings: Settings) -> Table:
    t = Table(
        f"Intake on PostgreSQL: 1 replica vs {settings.replicas}, same total load",
        [
            "payload",
            "conns",
            "replicas x pool",
            "req/s",
            "ratio",
            "p50 / p99",
            "errors",
            "decided",
            "remediator CPU",
            "PostgreSQL CPU",
            "wrk CPU",
            "req per replica",
        ],
    )
    single = {(c.mode, c.connections): c.rps for c in cells if c.replicas == 1}
    for c in cells:
        base = single.get((c.mode, c.connections), 0.0)
        t.add(
            c.mode,
            str(c.connections),
            f"{c.replicas} x {c.pool_size}",
            f"{c.rps:,.0f}",
            f"{c.rps / base:.2f}" if base else "n/a",
            f"{ms(c.p50)} / {ms(c.p99)}",
            str(c.errors),
            f"{c.decided:,}" if c.mode == "new" else "-",
            _pct(c.server_cpu, c.seconds),
            _pct(c.pg_cpu, c.seconds),
            _pct(c.client_cpu, c.seconds),
            " / ".join(f"{n:,}" for n in c.per_replica),
        )
    dsn = find_dsn(settings.dsn)
    t.note(machine())
    t.note(
        f"PostgreSQL {server_version(dsn)} on the same machine (127.0.0.1), a fresh database "
        "per cell; replicas x pool: the replicas and each one's store.url pool_size (its most "
        "connections); the last row of each group gives the replicas about one replica's "
        "connections between them (rounded up)"
    )
    t.note(f"each replica: {uvicorn_impl()}, remediator.http.server.serve")
    t.note(
        f"load: wrk, one process per replica (1 thread each), the connections split evenly; "
        f"{settings.seconds:.0f}s per cell after a {settings.warmup:.0f}s warm-up; payload: "
        "fixture firing_single.json (1 alert, ~1.3 kB) with a container label"
    )
    t.note(
        "ratio = req/s of the row / req/s of 1 replica with the same payload and connections; "
        "p50 = the median of the replicas' medians, p99 = the worst replica's; decided = "
        "stored alerts the workers (running meanwhile, dry-run playbook) had decided by the end "
        "(warm-up included); CPU in % of one core over the run (remediator: all replicas; "
        "PostgreSQL: the backends serving the cell's database, not its background processes)"
    )
    for c in cells:
        if c.problems:
            label = f"{c.mode}, {c.connections} conns, {c.replicas} x {c.pool_size}"
            t.note(describe_problems(label, c.problems))
    return t


def _pct(cpu: float, seconds: float) -> str:
    return f"{100 * cpu / seconds:.0f}%" if seconds > 0 else "n/a"


def run(settings: Settings | None = None) -> list[Table]:
    settings = settings or Settings()
    began = time.monotonic()
    cells = measure(settings)
    out = table(cells, settings)
    out.note(f"replicas benchmark: {time.monotonic() - began:.0f} s")
    return [out]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.replicas", description=__doc__)
    parser.add_argument("--replicas", type=int, default=3, help="compared with one (default 3)")
    parser.add_argument("--connections", default="48", help="comma-separated totals (48)")
    parser.add_argument("--seconds", type=float, default=6.0, help="per cell")
    parser.add_argument("--modes", default=",".join(MODES), help="new,duplicates")
    parser.add_argument("--pool-size", type=int, default=10, help="per replica (10)")
    parser.add_argument(
        "--no-equal-pool",
        dest="equal_pool",
        action="store_false",
        help="skip the run where the replicas share one replica's connections",
    )
    parser.add_argument("--pg", help="PostgreSQL DSN (default: $BENCH_POSTGRES_DSN, ...)")
    parser.add_argument("--keep", action="store_true", help="keep databases, stores and logs")
    args = parser.parse_args(argv)
    settings = Settings(
        replicas=args.replicas,
        connections=tuple(int(c) for c in args.connections.split(",") if c.strip()),
        seconds=args.seconds,
        modes=tuple(m for m in args.modes.split(",") if m.strip()),
        pool_size=args.pool_size,
        equal_pool=args.equal_pool,
        dsn=args.pg,
        keep=args.keep,
    )
    try:
        tables = run(settings)
    except BenchError as exc:
        print(f"bench replicas: FAILED: {exc}", file=sys.stderr)
        return 1
    print(f"{machine()}\n")
    print("\n\n".join(t.render() for t in tables))
    return 0


if __name__ == "__main__":
    sys.exit(main())
