"""A second dockerd on its own socket, started and stopped by the test (by PID).

Same safety flags as tests/services.sh. Used to make "dockerd stopped" real for one engine while
the main test engine keeps running.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from tests.realservices import TEST_LABELS, services_dir

SAFETY_FLAGS = ("--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-masq=false")


class SecondDockerd:
    def __init__(self, name: str = "docker2") -> None:
        self.dir = services_dir() / name
        self.socket = self.dir / "d.sock"
        self.url = f"unix://{self.socket}"
        self.proc: subprocess.Popen[bytes] | None = None

    def _stop_leftover(self) -> None:
        """A dockerd this fixture started in an earlier, crashed run: stopped by its PID file,
        and only if its command line names this fixture's socket."""
        pidfile = self.dir / "dockerd.pid"
        try:
            pid = int(pidfile.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except (OSError, ValueError):
            return
        if str(self.socket) not in cmdline:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.2)

    def start(self, timeout: float = 60.0) -> None:
        self._stop_leftover()
        for sub in ("root", "exec"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        binary = shutil.which("dockerd") or "/usr/sbin/dockerd"
        with (self.dir / "dockerd.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    binary,
                    *SAFETY_FLAGS,
                    f"--host={self.url}",
                    f"--data-root={self.dir / 'root'}",
                    f"--exec-root={self.dir / 'exec'}",
                    f"--pidfile={self.dir / 'dockerd.pid'}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"second dockerd exited: {self.log_tail()}")
            if self._answers() and self.proc.poll() is None:
                with contextlib.closing(docker.DockerClient(base_url=self.url, timeout=10)) as c:
                    c.ping()
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"second dockerd did not answer: {self.log_tail()}")

    def _answers(self) -> bool:
        """A plain HTTP ping on the unix socket (the SDK leaks a socket on refused connects)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            try:
                sock.connect(str(self.socket))
                sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
                return sock.recv(64).startswith(b"HTTP/1.")
            except OSError:
                return False

    def log_tail(self) -> str:
        return (self.dir / "dockerd.log").read_text(errors="replace")[-2000:]

    def client(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.url, timeout=30)

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def remove_test_containers(self) -> None:
        with contextlib.closing(self.client()) as client:
            for container in client.containers.list(
                all=True, filters={"label": "remediator.test=1"}
            ):
                with contextlib.suppress(docker.errors.APIError):
                    container.remove(force=True)

    def load_image(self, source: docker.DockerClient, tag: str) -> None:
        """Copy the locally built test image from the main engine (nothing is pulled)."""
        with contextlib.closing(self.client()) as client:
            try:
                client.images.get(tag)
                return
            except docker.errors.ImageNotFound:
                pass
            data = b"".join(source.images.get(tag).save(named=True))
            client.images.load(data)


def labels() -> dict[str, str]:
    return dict(TEST_LABELS)


@pytest.fixture
def far_engine(docker_client: docker.DockerClient, test_image: str) -> Iterator[SecondDockerd]:
    """A second engine holding the test image; its test containers removed, then stopped."""
    engine = SecondDockerd()
    try:
        engine.start()
        engine.load_image(docker_client, test_image)
        yield engine
    finally:
        if engine.proc is None or engine.proc.poll() is not None:
            engine.start()
        engine.remove_test_containers()
        engine.stop()


def run_sleepers(engine: SecondDockerd, image: str, count: int) -> list[Any]:
    """``count`` running test containers on ``engine`` (created, never pulled), labelled."""
    made = []
    with contextlib.closing(engine.client()) as client:
        for i in range(count):
            container = client.containers.create(
                image, ["sleep", "3600"], network_mode="none", init=True,
                labels=labels(), name=f"far-{i}-{uuid.uuid4().hex[:8]}",
            )  # fmt: skip
            container.start()
            made.append(container)
    return made
