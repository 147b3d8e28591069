"""Pytest plugin: the real services started by ``tests/services.sh up``.

Load it from ``tests/conftest.py`` with ``pytest_plugins = ["tests.realservices"]``.

The services (a private dockerd, Redis, PostgreSQL, the Prometheus/Alertmanager binaries) are
described by ``$REMEDIATOR_SERVICES_DIR/env`` (default ``/tmp/remediator-services/env``), written
by ``tests/services.sh up``. Values already present in ``os.environ`` win over the file.

Absence of a service is a test *failure*, never a skip: :func:`require` calls ``pytest.fail``
with a one-line message saying to run ``tests/services.sh up``.

Safety rules enforced here:

* Docker is only ever reached through a ``unix://`` ``DOCKER_HOST`` that is not the system socket.
* Containers run from the local test image only, with ``network_mode`` ``"host"`` or ``"none"``,
  always labelled ``remediator.test=1``; teardown removes exactly the containers it created.
* Redis/PostgreSQL endpoints and throwaway servers are on loopback only.
* Throwaway processes are stopped by PID (the ``Popen`` that started them).
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Literal, NoReturn
from urllib.parse import urlsplit, urlunsplit

import docker
import docker.errors
import psycopg
import pytest
import redis
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

__all__ = [
    "DEFAULT_SERVICES_DIR",
    "SERVICES",
    "TEST_LABEL",
    "TEST_LABELS",
    "ContainerFactory",
    "RedisServerFactory",
    "free_port",
    "load_services_env",
    "read_env_file",
    "require",
    "services_dir",
]

DEFAULT_SERVICES_DIR: Final = "/tmp/remediator-services"
SERVICES_DIR_ENV: Final = "REMEDIATOR_SERVICES_DIR"
TEST_LABEL: Final = "remediator.test"
TEST_LABELS: Final[Mapping[str, str]] = {TEST_LABEL: "1"}
DEFAULT_TEST_IMAGE: Final = "remediator-test-busybox:latest"
UP_HINT: Final = "run `bash tests/services.sh up` (as root) first"

# Keys written by tests/services.sh to $DIR/env.
ENV_KEYS: Final = (
    "DOCKER_HOST",
    "REMEDIATOR_TEST_IMAGE",
    "REDIS_URL",
    "POSTGRES_DSN",
    "PROMETHEUS_BIN",
    "PROMTOOL_BIN",
    "ALERTMANAGER_BIN",
    "AMTOOL_BIN",
    "REDIS_SERVER_BIN",
    "BUSYBOX_BIN",
    "SSHD_ADDRESS",
    "SSHD_USER",
    "SSHD_CLIENT_KEY",
    "SSHD_HOST_KEY",
    "SSHD_SYSTEMCTL",
    "SSHD_UNITS_DIR",
    "SSHD_LOG",
    "SSHD_COMMAND_LOG",
)

# service name -> env key holding its address/binary.
SERVICES: Final[Mapping[str, str]] = {
    "docker": "DOCKER_HOST",
    "image": "REMEDIATOR_TEST_IMAGE",
    "redis": "REDIS_URL",
    "postgres": "POSTGRES_DSN",
    "prometheus": "PROMETHEUS_BIN",
    "promtool": "PROMTOOL_BIN",
    "alertmanager": "ALERTMANAGER_BIN",
    "amtool": "AMTOOL_BIN",
    "redis-server": "REDIS_SERVER_BIN",
    "busybox": "BUSYBOX_BIN",
    "sshd": "SSHD_ADDRESS",
}
_BINARY_SERVICES: Final = frozenset(
    {"prometheus", "promtool", "alertmanager", "amtool", "redis-server", "busybox"}
)
_SYSTEM_DOCKER_SOCKETS: Final = frozenset({"/var/run/docker.sock", "/run/docker.sock"})
_ALLOWED_NETWORK_MODES: Final = frozenset({"host", "none"})
# Keys that could attach a container to a network other than host/none, or publish ports.
_FORBIDDEN_CONTAINER_KWARGS: Final = frozenset(
    {"network", "networking_config", "ports", "publish_all_ports", "image", "detach"}
)
_MANAGED_REDIS_ARGS: Final = frozenset({"--bind", "--port", "--daemonize", "--dir", "--logfile"})


# ------------------------------------------------------------------------------------------------
# env loading
# ------------------------------------------------------------------------------------------------


def services_dir() -> Path:
    """The state dir of ``tests/services.sh`` (``$REMEDIATOR_SERVICES_DIR`` or the default)."""
    return Path(os.environ.get(SERVICES_DIR_ENV) or DEFAULT_SERVICES_DIR)


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a ``KEY=value`` file (blank lines and ``#`` comments ignored); {} if absent."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key = key.removeprefix("export ").strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def load_services_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The services env file merged under ``environ`` (default ``os.environ``): env wins."""
    env = os.environ if environ is None else environ
    merged = read_env_file(services_dir() / "env")
    for key in (*ENV_KEYS, *merged):
        if key in env:
            merged[key] = env[key]
    return merged


def _apply_services_env() -> None:
    for key, value in load_services_env().items():
        os.environ.setdefault(key, value)


# ------------------------------------------------------------------------------------------------
# require()
# ------------------------------------------------------------------------------------------------


def _fail(service: str, reason: str) -> NoReturn:
    reason = " ".join(reason.split())  # always one line
    pytest.fail(
        f"real service {service!r} is not available: {reason} - {UP_HINT} "
        f"(state dir {services_dir()})",
        pytrace=False,
    )


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _docker_socket_path(service: str, docker_host: str) -> str:
    if not docker_host.startswith("unix://"):
        _fail(service, f"DOCKER_HOST={docker_host!r} is not a unix:// socket (refusing to use it)")
    path = docker_host.removeprefix("unix://")
    if os.path.realpath(path) in _SYSTEM_DOCKER_SOCKETS or path in _SYSTEM_DOCKER_SOCKETS:
        _fail(service, f"DOCKER_HOST={docker_host!r} is the system Docker socket (refusing)")
    return path


def _check_docker(service: str, docker_host: str) -> None:
    path = _docker_socket_path(service, docker_host)
    # Plain socket probe first: the SDK leaks a socket (ResourceWarning) when connect fails.
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(path)
    except OSError as exc:
        _fail(service, f"cannot connect to {docker_host}: {exc}")
    client = docker.DockerClient(base_url=docker_host, version="1.24", timeout=10)
    try:
        if not client.ping():
            _fail(service, f"dockerd at {docker_host} did not answer ping")
    except docker.errors.DockerException as exc:
        _fail(service, f"dockerd at {docker_host} did not answer ping: {exc}")
    except OSError as exc:
        _fail(service, f"dockerd at {docker_host} did not answer ping: {exc}")
    finally:
        client.close()


def _check_image(service: str, image: str) -> None:
    docker_host = require("docker")
    client = docker.DockerClient(base_url=docker_host, timeout=30)
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        _fail(service, f"test image {image!r} is not present in dockerd at {docker_host}")
    finally:
        client.close()


def _check_redis(service: str, url: str) -> None:
    host = urlsplit(url).hostname
    if not _is_loopback(host):
        _fail(service, f"REDIS_URL={url!r} is not on loopback (refusing)")
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5) as client:
            if client.ping() is not True:
                _fail(service, f"no PONG from {url}")
    except redis.RedisError as exc:
        _fail(service, f"no PONG from {url}: {exc}")


def _check_postgres(service: str, dsn: str) -> None:
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.Error as exc:
        _fail(service, f"POSTGRES_DSN is not a valid DSN: {exc}")
    host = params.get("host")
    if not _is_loopback(str(host) if host is not None else None):
        _fail(service, f"POSTGRES_DSN host {host!r} is not on loopback (refusing)")
    try:
        with psycopg.connect(dsn, connect_timeout=5) as conn:
            row = conn.execute("SELECT 1").fetchone()
    except psycopg.Error as exc:
        _fail(service, f"cannot run SELECT 1 on {_redact_dsn(dsn)}: {exc}")
    if row != (1,):
        _fail(service, f"SELECT 1 on {_redact_dsn(dsn)} returned {row!r}")


def _check_sshd(service: str, address: str) -> None:
    host, _, port = address.rpartition(":")
    if not _is_loopback(host):
        _fail(service, f"SSHD_ADDRESS={address!r} is not on loopback (refusing)")
    try:
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            banner = sock.recv(4)
    except (OSError, ValueError) as exc:
        _fail(service, f"cannot connect to {address}: {exc}")
    if banner != b"SSH-":
        _fail(service, f"{address} does not answer like an SSH server")


def _check_binary(service: str, key: str, path: str) -> None:
    if not os.path.isabs(path):
        resolved = shutil.which(path)
        if resolved is None:
            _fail(service, f"{key}={path!r} not found on PATH")
        path = str(resolved)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        _fail(service, f"{key}={path!r} is not an executable file")


def _redact_dsn(dsn: str) -> str:
    parts = urlsplit(dsn)
    if parts.scheme and parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return dsn


def require(service: str) -> str:
    """Check that ``service`` really answers and return its address (or binary path).

    ``service`` is one of :data:`SERVICES`: ``docker`` (returns ``DOCKER_HOST``), ``image``
    (the test image tag, verified present), ``redis`` (``REDIS_URL``), ``postgres``
    (``POSTGRES_DSN``), ``prometheus``, ``promtool``, ``alertmanager``, ``amtool``,
    ``redis-server``, ``busybox`` (absolute binary paths).

    Calls ``pytest.fail`` (never skip) with a one-line message if it is not available.
    """
    key = SERVICES.get(service)
    if key is None:
        raise ValueError(f"unknown service {service!r}; known: {', '.join(SERVICES)}")
    env = load_services_env()
    value = env.get(key) or (DEFAULT_TEST_IMAGE if service == "image" else "")
    if not value:
        _fail(service, f"{key} is not set and {services_dir() / 'env'} lacks it")
    if service == "docker":
        _check_docker(service, value)
    elif service == "image":
        _check_image(service, value)
    elif service == "redis":
        _check_redis(service, value)
    elif service == "postgres":
        _check_postgres(service, value)
    elif service == "sshd":
        _check_sshd(service, value)
    elif service in _BINARY_SERVICES:
        _check_binary(service, key, value)
    return value


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    """A currently free TCP port on a loopback ``host`` (bind to port 0, then release it)."""
    if not _is_loopback(host):
        raise ValueError(f"free_port: {host!r} is not a loopback address")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
    return port


class RedisServerFactory:
    """Starts throwaway ``redis-server`` processes on 127.0.0.1 and stops them by PID.

    ``factory(*extra_args)`` returns the new server's URL (``redis://127.0.0.1:<port>/0``).
    ``extra_args`` are passed to redis-server, e.g. ``("--replicaof", "127.0.0.1", "16379")``
    (replication targets must be loopback); ``--bind/--port/--dir/--logfile/--daemonize`` are
    managed by the factory. Servers run with ``--save '' --appendonly no
    --repl-diskless-sync-delay 0`` (later ``extra_args`` override the last two). ``factory.stop(url)`` stops one server early (e.g. to simulate a
    primary failure); every server is stopped at teardown.
    """

    def __init__(self, redis_server_bin: str, base_dir: Path) -> None:
        self._bin = redis_server_bin
        self._base_dir = base_dir
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def urls(self) -> list[str]:
        """URLs of the servers started so far and not stopped."""
        return list(self._procs)

    def pid(self, url: str) -> int:
        """PID of the server behind ``url``."""
        return self._procs[url].pid

    def __call__(self, *extra_args: str, timeout: float = 10.0) -> str:
        self._validate(extra_args)
        last_error = ""
        for _attempt in range(3):  # the free port may be taken between probe and bind
            port = free_port()
            workdir = self._base_dir / f"redis-{port}"
            workdir.mkdir(parents=True, exist_ok=True)
            logfile = workdir / "redis.log"
            argv = [
                self._bin,
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--repl-diskless-sync-delay",  # replicas sync at once, not after 5 s
                "0",
                "--daemonize",
                "no",
                "--dir",
                str(workdir),
                "--logfile",
                str(logfile),
                *extra_args,
            ]
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            url = f"redis://127.0.0.1:{port}/0"
            if self._wait_ready(proc, port, timeout):
                self._procs[url] = proc
                return url
            _stop_process(proc)
            last_error = _tail(logfile)
        pytest.fail(
            f"redis_server_factory: redis-server did not start: {last_error}", pytrace=False
        )

    def stop(self, url: str) -> None:
        """Stop the server behind ``url`` (SIGTERM, then SIGKILL) by its PID."""
        proc = self._procs.pop(url, None)
        if proc is not None:
            _stop_process(proc)

    def close(self) -> None:
        """Stop every server this factory started."""
        for url in list(self._procs):
            self.stop(url)

    @staticmethod
    def _validate(extra_args: Sequence[str]) -> None:
        for i, arg in enumerate(extra_args):
            name = arg.split(maxsplit=1)[0].lower() if arg.strip() else arg
            if name in _MANAGED_REDIS_ARGS:
                raise ValueError(f"redis_server_factory manages {name} itself")
            if name in {"--replicaof", "--slaveof"}:
                rest = arg.split()[1:] or list(extra_args[i + 1 : i + 2])
                target = rest[0].split()[0] if rest else ""
                if target.lower() != "no" and not _is_loopback(target):
                    raise ValueError(f"{name} target {target!r} is not a loopback address")

    @staticmethod
    def _wait_ready(proc: subprocess.Popen[bytes], port: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            try:
                with redis.Redis(
                    host="127.0.0.1", port=port, socket_connect_timeout=0.5, socket_timeout=1
                ) as client:
                    if client.ping() is True:
                        return True
            except redis.RedisError:
                pass
            time.sleep(0.05)
        return False


def _stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"(no log at {path})"
    return " | ".join(text.strip().splitlines()[-lines:])


class ContainerFactory:
    """Runs containers from the local test image under the safety rules and removes them.

    ``factory(command=("sleep", "3600"), *, network_mode="none", name_prefix=..., labels=...,
    **kwargs)`` creates and starts a detached container and returns the docker SDK
    ``Container``. ``network_mode`` must be ``"host"`` or ``"none"``; the ``remediator.test=1``
    label is always set; the name is unique. Other ``kwargs`` go to
    ``client.containers.create`` (network/port options are refused). Teardown force-removes
    exactly the containers created here.
    """

    def __init__(self, client: docker.DockerClient, image: str) -> None:
        self._client = client
        self._image = image
        self._ids: list[str] = []

    @property
    def ids(self) -> list[str]:
        """IDs of the containers created so far."""
        return list(self._ids)

    def __call__(
        self,
        command: str | Sequence[str] | None = ("sleep", "3600"),
        *,
        network_mode: Literal["host", "none"] = "none",
        name_prefix: str = "remediator-test",
        labels: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> Any:
        if network_mode not in _ALLOWED_NETWORK_MODES:
            raise ValueError(f"network_mode must be 'host' or 'none', not {network_mode!r}")
        forbidden = _FORBIDDEN_CONTAINER_KWARGS.intersection(kwargs)
        if forbidden:
            raise ValueError(f"container_factory refuses {sorted(forbidden)}")
        if isinstance(command, Sequence) and not isinstance(command, str):
            command = list(command)
        name = f"{name_prefix}-{uuid.uuid4().hex[:12]}"
        container = self._client.containers.create(
            self._image,
            command,
            name=name,
            network_mode=network_mode,
            labels={**(labels or {}), **TEST_LABELS},
            **kwargs,
        )
        self._ids.append(container.id)
        container.start()
        container.reload()
        return container

    def close(self) -> None:
        """Force-remove (with anonymous volumes) every container created by this factory."""
        errors: list[str] = []
        for container_id in self._ids:
            try:
                self._client.api.remove_container(container_id, force=True, v=True)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:
                if exc.status_code != 409:  # 409: removal already in progress
                    errors.append(f"{container_id[:12]}: {exc}")
        self._ids.clear()
        if errors:
            raise RuntimeError(f"container_factory teardown failed: {'; '.join(errors)}")


def _dsn_with_dbname(dsn: str, dbname: str) -> str:
    parts = urlsplit(dsn)
    if parts.scheme in {"postgresql", "postgres"}:
        return urlunsplit(parts._replace(path=f"/{dbname}"))
    return make_conninfo(dsn, dbname=dbname)


# ------------------------------------------------------------------------------------------------
# pytest hooks
# ------------------------------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    """Export the services env (under any values already set) for code under test."""
    _apply_services_env()


def pytest_report_header(config: pytest.Config) -> list[str]:
    env_file = services_dir() / "env"
    state = "present" if env_file.is_file() else "MISSING - run `bash tests/services.sh up`"
    return [
        f"real services: {env_file} ({state}); "
        f"DOCKER_HOST={os.environ.get('DOCKER_HOST', '<unset>')}"
    ]


# ------------------------------------------------------------------------------------------------
# session fixtures
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def services_env() -> dict[str, str]:
    """The merged services env (file under os.environ)."""
    return load_services_env()


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    """A docker SDK client for the private test dockerd (never the system one)."""
    docker_host = require("docker")
    client = docker.DockerClient(base_url=docker_host, timeout=60)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def test_image(docker_client: docker.DockerClient) -> str:
    """Tag of the local busybox test image, verified present."""
    return require("image")


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of the shared Redis (127.0.0.1:16379, db 0)."""
    return require("redis")


@pytest.fixture(scope="session")
def postgres_dsn() -> str:
    """DSN of the shared PostgreSQL database ``remediator`` (role may CREATE DATABASE)."""
    return require("postgres")


@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    """Absolute path of the ``prometheus`` binary."""
    return require("prometheus")


@pytest.fixture(scope="session")
def alertmanager_bin() -> str:
    """Absolute path of the Alertmanager binary (``prometheus-alertmanager`` on Debian)."""
    return require("alertmanager")


@pytest.fixture(scope="session")
def promtool_bin() -> str:
    """Absolute path of ``promtool``."""
    return require("promtool")


@pytest.fixture(scope="session")
def amtool_bin() -> str:
    """Absolute path of ``amtool``."""
    return require("amtool")


# ------------------------------------------------------------------------------------------------
# function fixtures
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def redis_server_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServerFactory]:
    """Factory for extra throwaway redis-servers on 127.0.0.1 (stopped by PID at teardown)."""
    factory = RedisServerFactory(require("redis-server"), tmp_path_factory.mktemp("redis"))
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture
def pg_database(postgres_dsn: str) -> Iterator[str]:
    """A fresh, empty, uniquely named database on the shared server; returns its DSN."""
    name = f"remediator_test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield _dsn_with_dbname(postgres_dsn, name)
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def container_factory(
    docker_client: docker.DockerClient, test_image: str
) -> Iterator[ContainerFactory]:
    """Factory running test-image containers (host/none network, labelled, removed at teardown)."""
    factory = ContainerFactory(docker_client, test_image)
    try:
        yield factory
    finally:
        factory.close()
