"""A real ``remediator serve`` subprocess on a loopback port, for tests that need one."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx
import yaml

APPROVER_ENV = "REMEDIATOR_TEST_APPROVER_TOKEN"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Served:
    """One remediator process. Stopped by PID only (the one it started)."""

    def __init__(self, workdir: Path, config: dict[str, Any], tokens: dict[str, str]) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.tokens = tokens
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = workdir / "remediator.yml"
        data = {"server": {"host": "127.0.0.1", "port": self.port}, **config}
        data.setdefault("store", {"url": f"sqlite:///{workdir}/remediator.db"})
        if "approver" in tokens:  # no REMEDIATOR_*_TOKEN for this role: a named token from env
            spec = {"name": "approver", "role": "approver", "token_env": APPROVER_ENV}
            data.setdefault("auth", {}).setdefault("tokens", []).append(spec)
        self.config_path.write_text(yaml.safe_dump(data))
        self.log_path = workdir / "remediator.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["REMEDIATOR_ALERTMANAGER_TOKEN"] = self.tokens["alertmanager"]
        env["REMEDIATOR_VIEWER_TOKEN"] = self.tokens["viewer"]
        env["REMEDIATOR_ADMIN_TOKEN"] = self.tokens["admin"]
        if "approver" in self.tokens:
            env[APPROVER_ENV] = self.tokens["approver"]
        return env

    def start(self, timeout: float = 20.0) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "remediator", "serve", "--config", str(self.config_path)],
                cwd=self.workdir,
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"remediator exited {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/api/v1/recovery/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"remediator did not become healthy:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 20.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def headers(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}
