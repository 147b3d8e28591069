"""A pre-imported launcher for ``remediator serve``: forks a served process in a fraction of a
second instead of paying ~2 s of imports on every start.

Run as ``python -m tests.reliability.zygote`` (cwd: the project root). It imports everything
``serve`` needs, then answers one JSON request per line on stdin with one JSON line on stdout:

* ``{"op": "spawn", "argv": [...], "env": {...}, "cwd": "...", "log": "..."}`` forks a child
  that runs ``remediator.cli.main(argv)`` with stdout/stderr appended to ``log``; answers
  ``{"pid": N}``.
* ``{"op": "wait", "pid": N, "timeout": T}`` reaps that child; answers ``{"code": C}`` (the exit
  code, negative for a signal) or ``{"code": null}`` if it is still running after ``T`` s.

A child stays this process's child until it is reaped here, so its PID cannot be reused while
a test holds it: tests signal it by that PID. On EOF the launcher SIGKILLs the children it
forked and did not reap yet (by PID), reaps them and exits. The child is a complete ``remediator
serve``: same code path, same lifespan, same store; only the module imports are inherited.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
import traceback
from typing import Any


def _preload() -> None:
    # What ``cmd_serve`` imports lazily, plus the heavy libraries the app builds on.
    pass


def _child(request: dict[str, Any]) -> None:
    """In the forked child: become ``remediator serve``; never returns."""
    code = 70
    try:
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(null)
        os.close(log)
        os.chdir(request["cwd"])
        os.environ.update(request["env"])
        from remediator.cli import main

        code = main(request["argv"])
    except SystemExit as exc:
        code = 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # the child is exiting anyway
                stream.flush()
        os._exit(code)


def _wait(pid: int, timeout: float) -> int | None:
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.01)


def main() -> int:
    _preload()
    children: set[int] = set()

    def reply(data: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(data) + "\n")
        sys.stdout.flush()

    reply({"ready": True})
    while True:
        line = sys.stdin.readline()
        if not line:
            break
        request = json.loads(line)
        if request["op"] == "spawn":
            # Forking is only safe while this process has a single thread.
            if threading.active_count() != 1:
                reply({"error": "the launcher has threads; refusing to fork"})
                continue
            pid = os.fork()
            if pid == 0:
                _child(request)
            children.add(pid)
            reply({"pid": pid})
        elif request["op"] == "wait":
            pid = int(request["pid"])
            if pid not in children:
                reply({"error": f"{pid} is not a child of this launcher"})
                continue
            code = _wait(pid, float(request.get("timeout", 10.0)))
            if code is not None:
                children.discard(pid)
            reply({"code": code})
        else:
            reply({"error": f"unknown op {request['op']!r}"})
    for pid in sorted(children):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _wait(pid, 10.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
