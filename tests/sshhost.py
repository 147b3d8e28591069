"""Pytest plugin: the real sshd started by ``tests/services.sh up`` and units of its systemctl
stand-in.

systemd cannot run as PID 1 on the test machine: the ``systemd.*`` actions are tested over the
real sshd (127.0.0.1, its own host key, key login) against ``tests/fixtures/hosts/systemctl``,
a stand-in that keeps unit state in files and answers like systemctl. The :func:`units` fixture
creates units with unique names and, at teardown, stops by PID the processes their stand-in
started and removes their files.
"""

from __future__ import annotations

import contextlib
import os
import signal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from remediator.config.targets import SshHostTarget
from tests.realservices import load_services_env, require

__all__ = ["Sshd", "Units", "host_target", "sshd", "units"]


@dataclass(frozen=True)
class Sshd:
    host: str
    port: int
    user: str
    client_key: str
    host_key: str
    systemctl: str
    units_dir: Path
    log: Path
    command_log: Path

    def commands(self) -> list[str]:
        """Every command line the sshd was sent so far (its ForceCommand records them)."""
        try:
            return self.command_log.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []


def read_sshd() -> Sshd:
    address = require("sshd")
    env = load_services_env()
    host, _, port = address.rpartition(":")
    return Sshd(
        host=host,
        port=int(port),
        user=env["SSHD_USER"],
        client_key=env["SSHD_CLIENT_KEY"],
        host_key=env["SSHD_HOST_KEY"],
        systemctl=env["SSHD_SYSTEMCTL"],
        units_dir=Path(env["SSHD_UNITS_DIR"]),
        log=Path(env["SSHD_LOG"]),
        command_log=Path(env["SSHD_COMMAND_LOG"]),
    )


@pytest.fixture(scope="session")
def sshd() -> Sshd:
    """The shared sshd on 127.0.0.1 (fails, never skips, when it is not up)."""
    return read_sshd()


def host_target(server: Sshd, **fields: Any) -> SshHostTarget:
    """An ``ssh_host`` target on the test sshd; ``fields`` override or add to the defaults."""
    data: dict[str, Any] = {
        "type": "ssh_host",
        "name": "host1",
        "host": server.host,
        "port": server.port,
        "user": server.user,
        "private_key_file": server.client_key,
        "host_key": server.host_key,
        "systemctl": server.systemctl,
        "connect_timeout": 5,
        "command_timeout": 10,
    }
    data.update(fields)
    return SshHostTarget.model_validate(data)


class Units:
    """Units of the systemctl stand-in, named uniquely for one test."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.names: list[str] = []

    def create(self, stem: str, *, exec_line: str | None = None, active: bool = False) -> str:
        name = f"{stem}-{uuid.uuid4().hex[:8]}.service"
        (self.dir / f"{name}.unit").write_text("[Service]\n")
        if exec_line is not None:
            (self.dir / f"{name}.exec").write_text(exec_line)
        self.names.append(name)
        if active and exec_line is None:
            (self.dir / f"{name}.state").write_text("active\n")
            (self.dir / f"{name}.pid").write_text("0\n")
        return name

    def state(self, name: str) -> str:
        path = self.dir / f"{name}.state"
        return path.read_text().strip() if path.exists() else "inactive"

    def pid(self, name: str) -> int:
        path = self.dir / f"{name}.pid"
        return int(path.read_text().strip() or 0) if path.exists() else 0

    def calls(self, name: str) -> list[list[str]]:
        """The stand-in's invocations that named ``name``."""
        path = self.dir / "calls.log"
        lines = path.read_text().splitlines() if path.exists() else []
        return [line.split("\t") for line in lines if name in line.split("\t")]

    def cleanup(self) -> None:
        for name in self.names:
            pid = self.pid(name)
            if pid > 1:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)  # the unit's process the stand-in started
            for suffix in ("unit", "exec", "state", "pid", "out"):
                (self.dir / f"{name}.{suffix}").unlink(missing_ok=True)


@pytest.fixture
def units(sshd: Sshd) -> Iterator[Units]:
    made = Units(sshd.units_dir)
    try:
        yield made
    finally:
        made.cleanup()
