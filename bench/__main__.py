"""``python -m bench [all|intake|storm|latency|e2e|profile|replicas|structure|console]`` (``make bench``
runs ``all``).

Every benchmark measures remediator and its baseline in the same run and prints a Markdown
table with both, their ratio and the machine's core count. ``profile`` runs the intake and storm
loads under py-spy and prints the hot spots. ``replicas`` (not part of ``all``: it needs a
PostgreSQL server) compares intake with one and with several replicas on one database.
``peer`` (not part of ``all``: it installs Event-Driven Ansible into ``--dir``) measures
remediator beside ``ansible-rulebook`` on the same payloads.
``structure`` (not part of ``all``: it measures the code, not its speed) traces one alert through
the modules and reads the import graph (``--no-trace``: the import graph only). ``console`` (not
part of ``all``) times the console's pages with 100,000 incidents stored (``--incidents``).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from bench import console, e2e, eda, intake, latency, peer, profile, replicas, storm, structure
from bench.procs import BenchError
from bench.table import Table, machine

BENCHMARKS = ("intake", "storm", "latency", "e2e")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument(
        "which",
        nargs="?",
        default="all",
        choices=["all", *BENCHMARKS, "profile", "replicas", "structure", "peer", "console"],
        help="what",
    )
    p.add_argument("--seconds", type=float, default=6.0, help="intake: seconds per wrk run")
    p.add_argument(
        "--connections",
        default="32,128",
        help="intake: comma-separated wrk connection counts (default 32,128)",
    )
    p.add_argument("--samples", type=int, default=200, help="latency: samples per scenario")
    p.add_argument("--rate", type=float, default=100.0, help="latency: background notif./s")
    p.add_argument(
        "--heavy-rate",
        type=float,
        default=1000.0,
        help="latency: the heavy row's notif./s for 30 s (0: no heavy row)",
    )
    p.add_argument("--runs", type=int, default=10, help="e2e: breach-to-resolved runs")
    p.add_argument("--py-spy", dest="py_spy", help="profile: the py-spy binary")
    p.add_argument("--profile-dir", default="/tmp/remediator-bench-profile", help="profile")
    p.add_argument(
        "--replicas", type=int, default=3, help="replicas: the count compared with one (3)"
    )
    p.add_argument("--pg", help="replicas: PostgreSQL DSN (default: tests/services.sh's)")
    p.add_argument(
        "--no-trace", dest="trace", action="store_false", help="structure: the import graph only"
    )
    p.add_argument("--dir", default=str(eda.DEFAULT_DIR), help="peer: where EDA is installed")
    p.add_argument("--kills", type=int, default=3, help="peer: kill -9 trials per side")
    p.add_argument(
        "--incidents", type=int, default=100_000, help="console: incidents seeded (100,000)"
    )
    p.add_argument("--keep", action="store_true", help="keep temporary stores and logs")
    p.add_argument("--out", help="also append the tables (Markdown) to this file")
    return p


def _runners(args: argparse.Namespace) -> dict[str, Callable[[], list[Table]]]:
    conns = tuple(int(c) for c in args.connections.split(",") if c.strip())
    return {
        "intake": lambda: intake.run(
            intake.Settings(connections=conns, seconds=args.seconds, keep=args.keep)
        ),
        "storm": lambda: storm.run(storm.Settings(keep=args.keep)),
        "latency": lambda: latency.run(
            latency.Settings(
                samples=args.samples, rate=args.rate, heavy_rate=args.heavy_rate, keep=args.keep
            )
        ),
        "e2e": lambda: e2e.run(e2e.Settings(runs=args.runs, keep=args.keep)),
        "replicas": lambda: replicas.run(
            replicas.Settings(
                replicas=args.replicas,
                connections=conns,
                seconds=args.seconds,
                dsn=args.pg,
                keep=args.keep,
            )
        ),
        "structure": lambda: structure.run(trace=args.trace),
        "peer": lambda: peer.run(
            peer.Settings(
                directory=Path(args.dir),
                seconds=args.seconds,
                connections=conns[0],
                samples=args.samples,
                kills=args.kills,
                keep=args.keep,
            )
        ),
        "console": lambda: console.run(console.Settings(incidents=args.incidents, keep=args.keep)),
    }


def _profile(args: argparse.Namespace) -> list[Table]:
    spy = profile.PySpy(profile.find_py_spy(args.py_spy), Path(args.profile_dir))
    conns = tuple(int(c) for c in args.connections.split(",") if c.strip())
    out = intake.run(
        intake.Settings(
            connections=conns[-1:],
            seconds=args.seconds,
            modes=("new",),
            keep=args.keep,
            profiler=spy.record,
        )
    )
    out += storm.run(storm.Settings(keep=args.keep, profiler=spy.record))
    for label, raw in spy.files.items():
        out += profile.tables(label, profile.analyse(raw))
    out[-1].note(f"raw py-spy stacks (collapsed): {', '.join(map(str, spy.files.values()))}")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = "python -m bench " + shlex.join(sys.argv[1:] if argv is None else list(argv))
    print(f"# {command.strip()}\n\n{machine()}\n", flush=True)
    selected = list(BENCHMARKS) if args.which == "all" else [args.which]
    runners = _runners(args)
    failed: list[str] = []
    for name in selected:
        began = time.monotonic()
        try:
            tables = _profile(args) if name == "profile" else runners[name]()
        except BenchError as exc:
            print(f"bench {name}: FAILED: {exc}\n", file=sys.stderr, flush=True)
            failed.append(name)
            continue
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue
        text = "\n\n".join(t.render() for t in tables)
        text += f"\n\n({name}: {time.monotonic() - began:.0f} s)\n"
        print(text, flush=True)
        if args.out:
            with open(args.out, "a", encoding="utf-8") as handle:
                handle.write(f"<!-- {command.strip()} -->\n{text}\n")
    if failed:
        print(f"bench: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
