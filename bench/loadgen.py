"""A paced background load: N single-alert notifications per second, each a new alert.

``python -m bench.loadgen --url URL --token-env VAR --rate 100 --max-seconds 60``. Runs until
SIGTERM/SIGINT or ``--max-seconds``, then prints one JSON line with what it sent. Each
notification is the fixture's alert with a fresh fingerprint, on one of ``--containers``
registered targets. A separate process, so that its work does not delay the sampler's clock.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Sequence

import aiohttp

from bench import payloads


async def run(
    url: str, token: str, *, rate: float, max_seconds: float, space: int, containers: int
) -> dict[str, float | int]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    sent = ok = failed = 0
    latencies: list[float] = []
    tasks: set[asyncio.Task[None]] = set()
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=64), timeout=timeout
    ) as session:

        async def post(body: bytes) -> None:
            nonlocal ok, failed
            began = time.monotonic()
            try:
                async with session.post(url, data=body, headers=headers) as answer:
                    await answer.read()
                    good = 200 <= answer.status < 300
            except (aiohttp.ClientError, TimeoutError):
                good = False
            if good:
                ok += 1
                latencies.append(time.monotonic() - began)
            else:
                failed += 1

        started = time.monotonic()
        while not stop.is_set() and time.monotonic() - started < max_seconds:
            body = payloads.single(
                payloads.fingerprint(space, sent), f"bench-{sent % containers:02d}"
            )
            task = asyncio.create_task(post(body))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
            delay = started + sent / rate - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)
        seconds = time.monotonic() - started
        if tasks:
            await asyncio.wait(tasks, timeout=30)
    latencies.sort()
    return {
        "sent": sent,
        "ok": ok,
        "failed": failed,
        "seconds": seconds,
        "p50_ms": 1000 * latencies[len(latencies) // 2] if latencies else 0.0,
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)] if latencies else 0.0,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--token-env", required=True, help="environment variable with the token")
    parser.add_argument("--rate", type=float, default=100.0, help="notifications per second")
    parser.add_argument("--max-seconds", type=float, default=60.0)
    parser.add_argument("--space", type=lambda s: int(s, 0), default=0xB0)
    parser.add_argument("--containers", type=int, default=50)
    args = parser.parse_args(argv)
    token = os.environ.get(args.token_env, "")
    if not token:
        print(f"loadgen: ${args.token_env} is empty", file=sys.stderr)
        return 2
    stats = asyncio.run(
        run(
            args.url,
            token,
            rate=args.rate,
            max_seconds=min(args.max_seconds, 300.0),
            space=args.space,
            containers=args.containers,
        )
    )
    print(json.dumps(stats), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
