"""The processes a benchmark runs: a real ``remediator serve`` and the bare baseline app.

Both are uvicorn processes on 127.0.0.1 serving with :func:`remediator.http.server.serve` (the same
uvicorn settings: 1 worker, ``loop``/``http`` "auto", no access log). Each is stopped by the PID
of the ``Popen`` that started it: SIGTERM, then SIGKILL if it lingers.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

import httpx2 as httpx
import yaml

ROOT: Final = Path(__file__).resolve().parents[1]
ALERTS_PATH: Final = "/api/v1/recovery/alerts"
HEALTH_PATH: Final = "/api/v1/recovery/health"
ROLES: Final = ("alertmanager", "viewer", "admin")
_TICKS: Final = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """A benchmark could not run (a missing tool, a process that did not start)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def uvicorn_impl() -> str:
    """What uvicorn's "auto" picks in this interpreter: uvloop/httptools when installed."""
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    version = importlib.metadata.version("uvicorn")
    return f"uvicorn {version}, 1 worker, loop={loop}, http={http}"


# -- /proc ------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def status_kib(pid: int, key: str) -> int:
    """A ``/proc/PID/status`` field in KiB (``VmHWM``: peak RSS, ``VmRSS``: RSS now)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise BenchError(f"no {key} in /proc/{pid}/status")


def children_cpu_seconds() -> float:
    """CPU time of this process's reaped children (the load generators), so far."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# -- servers ----------------------------------------------------------------------------------


class Server:
    """One served process; ``with`` starts it and stops it by PID."""

    name = "server"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def health_url(self) -> str:
        raise NotImplementedError

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise BenchError(f"{self.name} is not started")
        return self.proc.pid

    def start(self, timeout: float = 30.0) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                cwd=self.workdir,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited {self.proc.returncode}:\n{self.log()}")
            if self.healthy():
                return
            time.sleep(0.05)
        self.stop()
        raise BenchError(f"{self.name} did not become healthy in {timeout:.0f}s:\n{self.log()}")

    def healthy(self) -> bool:
        """One health probe: ``GET health_url()`` answers 200."""
        try:
            return httpx.get(self.health_url(), timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM by PID (graceful), SIGKILL by PID if it does not exit in time."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class Baseline(Server):
    """``bench/baseline_app.py``: reads the body, answers 200. Nothing else."""

    name = "baseline"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "bench.baseline_app", "--port", str(self.port)]

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        return env

    def health_url(self) -> str:
        return f"{self.url}/health"


class Remediator(Server):
    """A real ``python -m remediator serve`` with tokens from the environment and its store in
    ``workdir``."""

    name = "remediator"

    def __init__(self, workdir: Path, config: dict[str, Any]) -> None:
        super().__init__(workdir)
        self.tokens = {role: secrets.token_urlsafe(24) for role in ROLES}
        self.db_path = workdir / "remediator.db"
        self.config_path = workdir / "remediator.yml"
        data = {
            "server": {"host": "127.0.0.1", "port": self.port},
            "store": {"url": f"sqlite:///{self.db_path}"},
            **config,
        }
        self.config_path.write_text(yaml.safe_dump(data, sort_keys=False))

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "remediator",
            "serve",
            "--config",
            str(self.config_path),
            "--log-level",
            "info",
        ]

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        for role, token in self.tokens.items():
            env[f"REMEDIATOR_{role.upper()}_TOKEN"] = token
        return env

    def health_url(self) -> str:
        return self.url + HEALTH_PATH

    @property
    def alerts_url(self) -> str:
        return self.url + ALERTS_PATH

    @property
    def intake_token(self) -> str:
        return self.tokens["alertmanager"]

    def problems(self) -> dict[str, int]:
        """Warning and error lines of its log until it was told to stop, counted by message.

        (Once stopping, requests a load generator left in flight are answered 503 by design.)"""
        counts: dict[str, int] = {}
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return counts
        for line in lines:
            if not line.startswith("{"):
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("msg") == "shutting down":
                break
            if record.get("level") in ("warning", "error", "critical"):
                key = str(record.get("msg", ""))
                detail = [str(record[k]) for k in ("status", "code", "error") if record.get(k)]
                if detail:
                    key += f" ({', '.join(detail)})"
                counts[key] = counts.get(key, 0) + 1
        return counts

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """A read-only query on the store file (out of process: the server does no work)."""
        uri = f"file:{self.db_path}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, timeout=10.0)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()


class Workdir:
    """A temporary directory for one benchmark, removed afterwards unless ``keep``."""

    def __init__(self, prefix: str, keep: bool = False) -> None:
        self.path = Path(tempfile.mkdtemp(prefix=f"remediator-bench-{prefix}-"))
        self.keep = keep

    def sub(self, name: str) -> Path:
        path = self.path / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.keep:
            print(f"kept {self.path}", file=sys.stderr)
        else:
            shutil.rmtree(self.path, ignore_errors=True)


def describe_problems(name: str, problems: dict[str, int]) -> str:
    if not problems:
        return f"{name} log: no warnings or errors"
    listed = "; ".join(f"{n} x {msg}" for msg, n in sorted(problems.items(), key=lambda kv: -kv[1]))
    return f"{name} log: {listed}"


def bench_config(*, targets: list[str], workers: dict[str, Any] | None = None) -> dict[str, Any]:
    """remediator's configuration for the benchmarks: one dry-run playbook acting on the
    registered ``docker_container`` target named by the alert's ``container`` label, health
    checks off. Cooldown 0, no per-window limit and a blast radius of 100% let every alert take
    the engine's full path (decide, guards, claim, dry-run steps) instead of being refused."""
    config: dict[str, Any] = {
        "targets": [{"name": name, "type": "docker_container"} for name in targets],
        "playbooks": [
            {
                "name": "bench-restart",
                "match": ['alertname="HighMemoryUsage"'],
                "target": "{{ labels.container }}",
                "steps": [
                    {"action": "docker.restart", "stop_timeout": 10},
                    {"action": "verify.health", "within": "30s"},
                ],
                "dry_run": True,
                "cooldown": "0s",
                "max_per_window": None,
            }
        ],
        "safety": {"dry_run": True, "blast_radius": 1.0},
        "health": {"enabled": False},
    }
    if workers:
        config["worker"] = workers
    return config
