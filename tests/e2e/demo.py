"""The demo: ``python -m tests.e2e.demo`` (``make demo``).

Runs the e2e scenario for a new user, one line per step with its time: a container leaks memory,
Prometheus's ContainerMemoryHigh rule fires, Alertmanager posts to remediator, remediator
restarts the container, the metric drops, the alert resolves and remediator records the
recovery with its time to recovery. Then it leaves everything running, prints where to look and
every new event as it is recorded, until Ctrl-C, which stops what it started (by PID) and
removes its container.

It assumes ``tests/services.sh up`` has run (the private dockerd, the local busybox image, the
Prometheus and Alertmanager binaries). Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any, Final

import httpx2 as httpx
import pytest

from tests.e2e.stack import EVENTS_PATH, PLAYBOOK, RULE_FOR, ChainResult, Leak, Stack
from tests.realservices import load_services_env, require

MAX_PER_HOUR: Final = 3
POLL: Final = 1.0


class Clock:
    """Prints ``[  12.3s] line``, seconds since the demo began."""

    def __init__(self) -> None:
        self.began = time.time()

    def say(self, line: str, at: float | None = None) -> None:
        seconds = (time.time() if at is None else at) - self.began
        print(f"[{seconds:6.1f}s] {line}", flush=True)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def services() -> dict[str, str] | None:
    """The services ``tests/services.sh up`` started, or None (with a message) if one is missing."""
    for key, value in load_services_env().items():
        os.environ.setdefault(key, value)
    found: dict[str, str] = {}
    try:
        for name in ("docker", "image", "prometheus", "alertmanager"):
            found[name] = require(name)
    except pytest.fail.Exception as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return None
    return found


def remediator_command() -> str:
    installed = Path(sys.executable).parent / "remediator"
    return str(installed) if installed.exists() else "remediator"


def where_to_look(stack: Stack, result: ChainResult) -> str:
    remediator = stack.remediator
    viewer = shlex.quote(f"Authorization: Bearer {remediator.tokens['viewer']}")
    events = shlex.quote(f"{remediator.url}{EVENTS_PATH}?limit=20")
    config = shlex.quote(str(remediator.config_path))
    logs = ", ".join(
        str(p)
        for p in (
            remediator.log_path,
            stack.alertmanager.log_path,
            stack.prometheus.log_path,
        )
    )
    return "\n".join(
        [
            "",
            "Where to look (everything listens on 127.0.0.1 only; from another machine use ssh -L):",
            f"  events        curl -s -H {viewer} {events}",
            f"  metrics       curl -s {remediator.url}/metrics | grep '^remediator_'",
            f"  Prometheus    {stack.prometheus.url}/alerts   "
            f"(graph: leak_bytes / leak_limit_bytes, remediator_remediations_total)",
            f"  Alertmanager  {stack.alertmanager.url}/#/alerts",
            f"  audit log     {remediator_command()} audit verify --config {config}",
            f"  container     {result.target} (docker at {stack.docker_host})",
            f"  logs          {logs}",
            "",
            f"The leak is a bug, so it comes back: about {stack.leak.breach_after:.0f}s after each "
            f"restart the alert fires again and remediator restarts the container again, at most "
            f"{MAX_PER_HOUR} times an hour (max_per_window). After that it refuses and escalates to "
            "a human instead. New events are printed below as remediator records them.",
            "Press Ctrl-C to stop everything.",
            "",
        ]
    )


def describe(event: dict[str, Any]) -> str:
    parts = [str(event["type"])]
    for key in ("action", "outcome", "target"):
        if event.get(key):
            parts.append(f"{key}={event[key]}")
    if event.get("duration") is not None:
        parts.append(f"duration={float(event['duration']):.2f}s")
    if event.get("message"):
        parts.append(f"- {event['message']}")
    return " ".join(parts)


def follow_events(stack: Stack, clock: Clock, after: int) -> None:
    """Print every event recorded after id ``after``, until Ctrl-C or a process dies."""
    last = after
    while True:
        for name, proc in (
            ("remediator", stack.remediator.proc),
            ("Alertmanager", stack.alertmanager.proc),
            ("Prometheus", stack.prometheus.proc),
        ):
            if proc is not None and proc.poll() is not None:
                clock.say(f"{name} exited with status {proc.returncode}; stopping")
                return
        try:
            events = stack.remediator.events()
        except (httpx.HTTPError, AssertionError) as exc:
            clock.say(f"cannot read events: {exc}")
            events = []
        for event in events:
            if int(event["id"]) > last:
                last = int(event["id"])
                clock.say(describe(event), at=float(event["ts"]))
        time.sleep(POLL)


def run(args: argparse.Namespace) -> int:
    found = services()
    if found is None:
        return 1
    workdir = (
        Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="remediator-demo-"))
    )
    clock = Clock()
    stack = Stack(
        workdir=workdir,
        docker_host=found["docker"],
        image=found["image"],
        prometheus_bin=found["prometheus"],
        alertmanager_bin=found["alertmanager"],
        leak=Leak(breach_after=args.breach_after),
        playbook={"cooldown": "0s", "max_per_window": {"count": MAX_PER_HOUR, "window": "1h"}},
        name_prefix="remediator-demo-leaky",
    )
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    try:
        clock.say(f"starting the stack in {workdir}")
        stack.start(progress=clock.say)
        clock.say(
            f"waiting for the leak to pass {stack.threshold:.0%} of its limit "
            f"(~{args.breach_after:.0f}s after the container started), then {RULE_FOR} more "
            f"for the rule to fire; playbook {PLAYBOOK}: docker.restart, then verify.health"
        )
        result = stack.follow_chain(on_step=lambda label, at: clock.say(label, at=at))
        clock.say(
            f"recovered: time to recovery {result.mttr:.2f}s "
            f"(endsAt - startsAt of the alert as Alertmanager sent it)"
        )
        print()
        print(result.format_timeline())
        print(where_to_look(stack, result), flush=True)
        last = max((int(e["id"]) for e in stack.remediator.events()), default=0)
        follow_events(stack, clock, last)
    except KeyboardInterrupt:
        print()
        clock.say("stopping")
    except AssertionError as exc:
        clock.say(f"the chain broke: {exc}")
        return 1
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup
        stack.stop()
        clock.say(
            "stopped Prometheus, Alertmanager and remediator; removed the container. "
            f"State and logs stay in {workdir}"
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.e2e.demo", description=__doc__)
    parser.add_argument(
        "--breach-after",
        type=float,
        default=12.0,
        help="seconds from the container's start until the leak passes the threshold (12)",
    )
    parser.add_argument(
        "--workdir", help="where configs, logs and data go (default: a new tmp dir)"
    )
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
