"""The real services behind the test suite answer (see tests/services.sh and tests/realservices.py)."""

from __future__ import annotations

import subprocess
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
import redis

from tests.realservices import (
    TEST_LABEL,
    ContainerFactory,
    RedisServerFactory,
    free_port,
    require,
)


@pytest.mark.docker
def test_container_with_host_network_is_running(
    container_factory: ContainerFactory, docker_client: Any, test_image: str
) -> None:
    container = container_factory(["sleep", "300"], network_mode="host")

    state = docker_client.api.inspect_container(container.id)
    assert state["State"]["Running"] is True
    assert state["HostConfig"]["NetworkMode"] == "host"
    assert state["Config"]["Labels"][TEST_LABEL] == "1"
    assert state["Config"]["Image"] == test_image
    exit_code, output = container.exec_run(["echo", "hello from busybox"])
    assert (exit_code, output) == (0, b"hello from busybox\n")


@pytest.mark.docker
def test_container_with_no_network_has_only_loopback(container_factory: ContainerFactory) -> None:
    container = container_factory(network_mode="none")

    exit_code, output = container.exec_run(["ls", "/sys/class/net"])
    assert exit_code == 0
    assert output.split() == [b"lo"]


@pytest.mark.docker
def test_container_factory_refuses_other_networks(container_factory: ContainerFactory) -> None:
    with pytest.raises(ValueError, match="network_mode"):
        container_factory(network_mode="bridge")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="refuses"):
        container_factory(ports={"80/tcp": 8080})
    assert container_factory.ids == []


@pytest.mark.docker
def test_test_image_is_labelled(docker_client: Any, test_image: str) -> None:
    image = docker_client.images.get(test_image)
    assert image.labels[TEST_LABEL] == "1"


@pytest.mark.redis
def test_redis_set_get(redis_url: str) -> None:
    key = f"remediator-test:{uuid.uuid4().hex}"
    with redis.Redis.from_url(redis_url) as client:
        try:
            assert client.set(key, "ok", ex=60) is True
            assert client.get(key) == b"ok"
        finally:
            client.delete(key)


@pytest.mark.redis
def test_redis_server_factory_gives_independent_servers(
    redis_url: str, redis_server_factory: RedisServerFactory
) -> None:
    primary_url = redis_server_factory()
    assert primary_url != redis_url
    primary_port = str(urlsplit(primary_url).port)
    replica_url = redis_server_factory("--replicaof", "127.0.0.1", primary_port)
    key = f"remediator-test:{uuid.uuid4().hex}"

    with (
        redis.Redis.from_url(primary_url) as primary,
        redis.Redis.from_url(replica_url) as replica,
        redis.Redis.from_url(redis_url) as shared,
    ):
        primary.set(key, "v")
        assert shared.get(key) is None  # a different server from the shared one
        assert primary.info("replication")["role"] == "master"
        assert replica.info("replication")["role"] == "slave"
        deadline = time.monotonic() + 15
        while replica.get(key) != b"v":
            assert time.monotonic() < deadline, replica.info("replication")
            time.sleep(0.05)
        assert replica.info("replication")["master_link_status"] == "up"

    redis_server_factory.stop(primary_url)
    assert redis_server_factory.urls == [replica_url]


@pytest.mark.redis
def test_redis_server_factory_refuses_non_loopback(
    redis_server_factory: RedisServerFactory,
) -> None:
    with pytest.raises(ValueError, match="loopback"):
        redis_server_factory("--replicaof", "10.0.0.1", "6379")
    with pytest.raises(ValueError, match="manages"):
        redis_server_factory("--bind", "0.0.0.0")


@pytest.mark.postgres
def test_postgres_select_1(postgres_dsn: str) -> None:
    with psycopg.connect(postgres_dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.postgres
def test_pg_database_is_fresh_and_empty(pg_database: str, postgres_dsn: str) -> None:
    with psycopg.connect(pg_database) as conn:
        row = conn.execute("SELECT current_database()").fetchone()
        assert row is not None
        assert row[0].startswith("remediator_test_")
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables"
            " WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
        ).fetchone()
        assert tables == (0,)
        conn.execute("CREATE TABLE t (x int)")
        conn.execute("INSERT INTO t VALUES (1)")
        assert conn.execute("SELECT x FROM t").fetchone() == (1,)
    with psycopg.connect(postgres_dsn) as conn:
        found = conn.execute(
            "SELECT count(*) FROM pg_database WHERE datname = %s", (row[0],)
        ).fetchone()
        assert found == (1,)


@pytest.mark.prometheus
@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("promtool_bin", "promtool"),
        ("prometheus_bin", "prometheus"),
        ("alertmanager_bin", "alertmanager"),
        ("amtool_bin", "amtool"),
    ],
)
def test_binaries_report_versions(
    request: pytest.FixtureRequest, fixture: str, expected: str
) -> None:
    binary = request.getfixturevalue(fixture)
    result = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    output = (result.stdout + result.stderr).lower()
    assert expected in output
    assert "version" in output


def test_free_port_is_bindable_on_loopback() -> None:
    port = free_port()
    assert 0 < port < 65536
    with pytest.raises(ValueError, match="loopback"):
        free_port("0.0.0.0")


def test_require_fails_clearly_when_service_is_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(pytest.fail.Exception, match=r"'redis'.*tests/services\.sh up"):
        require("redis")
    monkeypatch.setenv("DOCKER_HOST", "unix:///var/run/docker.sock")
    with pytest.raises(pytest.fail.Exception, match="system Docker socket"):
        require("docker")
    monkeypatch.setenv("PROMTOOL_BIN", "/nonexistent/promtool")
    with pytest.raises(pytest.fail.Exception, match="'promtool'"):
        require("promtool")
