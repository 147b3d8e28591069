"""Benchmark 4: end to end — breach -> webhook -> restart -> resolved, on the real stack.

Uses ``tests/e2e/stack.py`` (a leaking container, real Prometheus and Alertmanager, a real
remediator that restarts the container). The leak comes back after every restart, so one stack
gives as many runs as wanted: with cooldown 0 and no effective per-window limit, each breach is
remediated again. For each run: the breach (Prometheus ``activeAt``), the webhook stored
(``alert:received``), the decision (``recovery:started``), the ``docker.restart`` call (its
``recovery:action`` time minus duration) and the resolved webhook stored (``alert:resolved``).
remediator's own share is webhook received -> action started; the rest is Prometheus's ``for``
and evaluation, Alertmanager's grouping, Docker's restart and the scrape that sees the drop.

Needs the services of ``bash tests/services.sh up`` (the private dockerd, the test image, the
Prometheus and Alertmanager binaries).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Final, TypeVar

from bench.procs import BenchError
from bench.table import Table, machine, percentile

T = TypeVar("T")
BREACH_AFTER: Final = 4.0
LINK_TIMEOUT: Final = 60.0


@dataclass(frozen=True)
class Settings:
    runs: int = 10
    breach_after: float = BREACH_AFTER
    keep: bool = False


@dataclass(frozen=True)
class Run:
    breach: float  # Prometheus activeAt (or startsAt - for, when marked approximate)
    approximate_breach: bool
    received: float  # alert:received
    started: float  # recovery:started
    action: float  # docker.restart call began
    restarted: float  # docker.restart call ended
    resolved: float  # alert:resolved stored

    @property
    def share(self) -> float:
        """remediator's own share: webhook received -> action started."""
        return self.action - self.received

    @property
    def total(self) -> float:
        return self.resolved - self.breach


def _wait(check: Callable[[], T | None], what: str, timeout: float = LINK_TIMEOUT) -> T:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise BenchError(f"e2e: timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


def measure(settings: Settings) -> tuple[list[Run], str]:
    try:
        from tests.e2e import stack as e2e
        from tests.realservices import load_services_env
    except ImportError as exc:
        raise BenchError(f"e2e: tests/e2e/stack.py cannot be imported ({exc}): pending") from None
    env = load_services_env()
    needed = ("DOCKER_HOST", "REMEDIATOR_TEST_IMAGE", "PROMETHEUS_BIN", "ALERTMANAGER_BIN")
    missing = [k for k in needed if not env.get(k)]
    if missing:
        raise BenchError(
            f"e2e: services missing ({', '.join(missing)}): run `bash tests/services.sh up` "
            "as root (make bench does)"
        )
    workdir = Path(tempfile.mkdtemp(prefix="remediator-bench-e2e-"))
    stack = e2e.Stack(
        workdir=workdir,
        docker_host=env["DOCKER_HOST"],
        image=env["REMEDIATOR_TEST_IMAGE"],
        prometheus_bin=env["PROMETHEUS_BIN"],
        alertmanager_bin=env["ALERTMANAGER_BIN"],
        leak=e2e.Leak(breach_after=settings.breach_after),
        playbook={"cooldown": "0s", "max_per_window": {"count": 1000, "window": "1h"}},
        name_prefix="remediator-bench-leaky",
    )
    runs: list[Run] = []
    with stack:
        rem = stack.remediator

        def events(kind: str, **params: str) -> list[dict[str, Any]]:
            return rem.events(kind, **params)

        def newer(kind: str, after: int, **match: str) -> dict[str, Any] | None:
            params = {"fingerprint": match.pop("fingerprint")} if "fingerprint" in match else {}
            for event in events(kind, **params):
                if int(event["id"]) > after and all(event.get(k) == v for k, v in match.items()):
                    return event
            return None

        def decided(after: int, fp: str) -> dict[str, Any] | None:
            skipped = newer("recovery:skipped", after, fingerprint=fp)
            if skipped is not None:
                raise BenchError(f"e2e: remediator refused the run: {skipped.get('message')}")
            return newer("recovery:started", after, fingerprint=fp)

        last = 0
        for number in range(settings.runs):
            what = f"run {number + 1}/{settings.runs}"
            received = _wait(
                partial(newer, "alert:received", last, alertname=e2e.ALERTNAME),
                f"{what}: alert:received",
            )
            fp = str(received["fingerprint"])
            firing = stack.prometheus_alert("firing")
            starts_at = float(received["details"]["starts_at"])
            if firing is not None and e2e.parse_time(firing["activeAt"]) <= starts_at:
                breach, approximate = e2e.parse_time(firing["activeAt"]), False
            else:
                breach, approximate = starts_at - e2e.RULE_FOR_SECONDS, True
            rid = int(received["id"])
            started = _wait(partial(decided, rid, fp), f"{what}: recovery:started")
            restart = _wait(
                partial(newer, "recovery:action", rid, fingerprint=fp, action="docker.restart"),
                f"{what}: recovery:action docker.restart",
            )
            resolved = _wait(
                partial(newer, "alert:resolved", rid, fingerprint=fp), f"{what}: alert:resolved"
            )
            if restart.get("outcome") != "success":
                raise BenchError(f"e2e {what}: docker.restart {restart.get('outcome')}")
            ended = float(restart["ts"])
            runs.append(
                Run(
                    breach=breach,
                    approximate_breach=approximate,
                    received=float(received["ts"]),
                    started=float(started["ts"]),
                    action=ended - float(restart.get("duration") or 0.0),
                    restarted=ended,
                    resolved=float(resolved["ts"]),
                )
            )
            last = int(resolved["id"])
    return runs, str(workdir)


def table(runs: list[Run], settings: Settings, workdir: str) -> Table:
    t = Table(
        f"End to end: breach -> webhook -> restart -> resolved ({len(runs)} runs, one stack)",
        [
            "run",
            "breach -> webhook",
            "webhook -> decided",
            "webhook -> restart call (remediator)",
            "docker.restart",
            "restart -> resolved webhook",
            "total breach -> resolved",
            "remediator share",
        ],
    )

    def s(value: float) -> str:
        return f"{value:.3f} s"

    for i, r in enumerate(runs, start=1):
        t.add(
            f"{i}{'*' if r.approximate_breach else ''}",
            s(r.received - r.breach),
            s(r.started - r.received),
            s(r.share),
            s(r.restarted - r.action),
            s(r.resolved - r.restarted),
            s(r.total),
            f"{100 * r.share / r.total:.2f}%",
        )
    if runs:
        columns: list[Callable[[Run], float]] = [
            lambda r: r.received - r.breach,
            lambda r: r.started - r.received,
            lambda r: r.share,
            lambda r: r.restarted - r.action,
            lambda r: r.resolved - r.restarted,
            lambda r: r.total,
        ]
        for label, pct in (("p50", 50.0), ("max", 100.0)):
            cells = [s(percentile([f(r) for r in runs], pct)) for f in columns]
            share = percentile([r.share / r.total for r in runs], pct)
            t.add(label, *cells, f"{100 * share:.2f}%")
    t.note(machine())
    t.note(
        "baseline of the chain = everything but remediator: Prometheus rule `for: 2s` with 1s "
        "scrape/evaluation, Alertmanager group_wait/group_interval 1s, Docker's restart "
        f"(stop_timeout 1s), the scrape that sees the drop; leak breaches {settings.breach_after:.0f}s "
        "after each (re)start"
    )
    t.note(
        "remediator share = webhook stored (alert:received) -> docker.restart call began "
        "(recovery:action time - duration); * = breach taken as startsAt - for (the alert had "
        "left Prometheus before it was read)"
    )
    if settings.keep:
        t.note(f"logs kept in {workdir}")
    return t


def run(settings: Settings | None = None) -> list[Table]:
    settings = settings or Settings()
    runs, workdir = measure(settings)
    if not settings.keep:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    return [table(runs, settings, workdir)]
