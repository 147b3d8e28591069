"""SSH plumbing shared by the host actions and health checks (asyncssh).

One connection per ``ssh_host`` target, opened on first use and reused; a closed one is
opened again. The host key is pinned: only the key in the target's ``host_key`` is trusted
(no known_hosts file, no trust on first use, no ``~/.ssh/config``, no agent); a host that
shows another key is refused (:class:`HostKeyMismatch`) and nothing is sent to it.

A command is an argv, never a shell line: sshd always hands a command to the user's login
shell, so each argument is quoted (``shlex.quote``) into one word, and the whole runs under
coreutils ``timeout`` on the host, which kills it (SIGTERM, then SIGKILL after
:data:`KILL_AFTER` seconds) when the target's ``command_timeout`` is over; remediator stops
waiting :data:`KILL_AFTER` seconds later still and drops the connection.
"""

from __future__ import annotations

import asyncio
import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from remediator.clients import Clients
from remediator.config.targets import SshHostTarget
from remediator.errors import ArgumentRefused, HostKeyMismatch

if TYPE_CHECKING:
    import asyncssh

__all__ = [
    "HOST_ERRORS",
    "KILL_AFTER",
    "MAX_OUTPUT",
    "CommandResult",
    "HostKeyMismatch",
    "SshConnections",
    "SshFailure",
    "command_line",
    "connections",
    "parse_show",
    "ssh_error",
    "unit_state",
]

KILL_AFTER = 2  # seconds between the remote timeout's SIGTERM and its SIGKILL
MAX_OUTPUT = 4096  # characters of stdout/stderr kept in a result
UNIT_PROPERTIES = ("ActiveState", "SubState", "MainPID")  # what ``unit_state`` reads
TIMED_OUT = 124  # coreutils timeout's exit status when it had to stop the command


@dataclass(frozen=True, slots=True)
class CommandResult:
    exit_status: int
    stdout: str
    stderr: str
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_status == 0 and not self.timed_out


def command_line(argv: Sequence[str], *, timeout: float) -> str:
    """The line sent to sshd: ``timeout -k KILL_AFTER SECONDS argv...``, each word quoted."""
    seconds = f"{max(timeout, 0.1):.1f}"
    bounded = ("timeout", "-k", str(KILL_AFTER), seconds, *argv)
    return " ".join(shlex.quote(word) for word in bounded)


def _bounded(text: str) -> str:
    return text if len(text) <= MAX_OUTPUT else text[:MAX_OUTPUT] + "...[truncated]"


class SshFailure(OSError):
    """An SSH connection or channel error (asyncssh's, imported only when a host is reached):
    its class name and reason, never a key."""


def ssh_error(exc: BaseException) -> str:
    """A short, secret-free description of a connection or channel error."""
    if isinstance(exc, HostKeyMismatch):
        return "host key mismatch: the host's key is not the pinned host_key"
    if isinstance(exc, SshFailure):
        return str(exc)[:250]
    reason = getattr(exc, "reason", "")
    name = type(exc).__name__
    return f"{name}: {str(reason)[:200]}" if reason else name


def _failure(exc: BaseException) -> SshFailure:
    reason = getattr(exc, "reason", "")
    name = type(exc).__name__
    return SshFailure(f"{name}: {str(reason)[:200]}" if reason else name)


class SshConnections:
    """The open connection of each ``ssh_host`` target, keyed by its connection settings."""

    def __init__(self) -> None:
        self._conns: dict[tuple[Any, ...], asyncssh.SSHClientConnection] = {}
        self._locks: dict[tuple[Any, ...], asyncio.Lock] = {}

    @staticmethod
    def _key(target: SshHostTarget) -> tuple[Any, ...]:
        return (
            target.host,
            target.port,
            target.user,
            target.host_key,
            target.private_key_file,
            target.private_key_env,
        )

    async def connection(self, target: SshHostTarget) -> asyncssh.SSHClientConnection:
        """The target's open connection (connected now if there is none)."""
        key = self._key(target)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            conn = self._conns.get(key)
            if conn is not None and not conn.is_closed():
                return conn
            conn = await self._connect(target)
            self._conns[key] = conn
            return conn

    async def _connect(self, target: SshHostTarget) -> asyncssh.SSHClientConnection:
        import asyncssh

        if target.private_key_env is not None:
            secret = os.environ.get(target.private_key_env, "")
            if not secret:
                raise ValueError(f"environment variable {target.private_key_env} is not set")
            client_key = asyncssh.import_private_key(secret)
        else:
            assert target.private_key_file is not None  # the model requires one of the two
            client_key = await asyncio.to_thread(asyncssh.read_private_key, target.private_key_file)
        pinned = asyncssh.import_public_key(target.host_key)
        try:
            return await asyncssh.connect(
                target.host,
                port=target.port,
                username=target.user,
                known_hosts=([pinned], [], []),
                client_keys=[client_key],
                agent_path=None,
                config=None,
                password=None,
                kbdint_auth=False,
                gss_auth=False,
                connect_timeout=target.connect_timeout,
                login_timeout=target.connect_timeout,
                keepalive_interval=30,
            )
        except asyncssh.HostKeyNotVerifiable as exc:
            raise HostKeyMismatch("host key mismatch") from exc
        except asyncssh.Error as exc:
            raise _failure(exc) from exc

    async def drop(self, target: SshHostTarget) -> None:
        """Close and forget the target's connection (after a timeout or an error)."""
        conn = self._conns.pop(self._key(target), None)
        if conn is not None:
            conn.close()

    async def run(self, target: SshHostTarget, argv: Sequence[str]) -> CommandResult:
        """Run ``argv`` on the host, bounded by its ``command_timeout``."""
        import asyncssh

        conn = await self.connection(target)
        line = command_line(argv, timeout=target.command_timeout)
        try:
            async with asyncio.timeout(target.command_timeout + 2 * KILL_AFTER + 1):
                done = await conn.run(line, check=False, stdin=asyncssh.DEVNULL)
        except asyncssh.Error as exc:
            await self.drop(target)
            raise _failure(exc) from exc
        except (TimeoutError, OSError):
            await self.drop(target)
            raise
        status = done.exit_status if done.exit_status is not None else -1
        return CommandResult(
            exit_status=status,
            stdout=_bounded(_text(done.stdout)),
            stderr=_bounded(_text(done.stderr)),
            timed_out=status in (TIMED_OUT, 128 + 9),
        )

    async def aclose(self) -> None:
        conns = list(self._conns.values())
        self._conns.clear()
        for conn in conns:
            conn.close()
        for conn in conns:
            await conn.wait_closed()


def parse_show(text: str) -> dict[str, Any]:
    """``KEY=VALUE`` lines of ``systemctl show`` -> the properties this module reads."""
    state: dict[str, Any] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key in UNIT_PROPERTIES:
            state[key] = int(value) if key == "MainPID" and value.isdigit() else value
    return state


async def unit_state(
    target: SshHostTarget, unit: str, *, clients: Clients, sudo: bool = False
) -> dict[str, Any]:
    """The unit's ActiveState, SubState and MainPID as ``systemctl show`` reports them."""
    prefix = ("sudo", "-n") if sudo else ()
    argv = (
        *prefix,
        target.systemctl,
        "show",
        "--property=" + ",".join(UNIT_PROPERTIES),
        "--",
        unit,
    )
    done = await connections(clients).run(target, argv)
    return parse_show(done.stdout) if done.ok else {}


def connections(clients: Clients) -> SshConnections:
    """The SSH connections kept by ``clients`` (one set per remediator)."""
    return clients.shared("ssh", SshConnections)


# What a host action turns into a failed result: connection (SshFailure is an OSError), key,
# key-file and refusal errors.
HOST_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ValueError,
    HostKeyMismatch,
    ArgumentRefused,
)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
