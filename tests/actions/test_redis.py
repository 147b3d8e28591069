"""Redis actions and health check against real redis-servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest
import redis.asyncio

from remediator.actions.base import Action, ActionContext, ActionResult
from remediator.actions.redis import (
    ACTIONS,
    RedisDeleteKeys,
    RedisDeleteKeysAction,
    RedisFailover,
    RedisFailoverAction,
    RedisFlushDb,
    RedisFlushDbAction,
    RedisKillClients,
    RedisKillClientsAction,
    RedisMemoryPurge,
    RedisMemoryPurgeAction,
)
from remediator.checks.redis import CHECKS, RedisPingCheck
from remediator.clients import Clients
from remediator.config import steps
from remediator.config.targets import HttpTarget, RedisTarget, Target
from tests.realservices import RedisServerFactory, free_port

pytestmark = pytest.mark.redis

T = TypeVar("T")


def run(scenario: Callable[[Clients], Awaitable[T]]) -> T:
    """Run ``scenario`` on a fresh event loop with a Clients that is closed afterwards."""

    async def main() -> T:
        clients = Clients()
        try:
            return await scenario(clients)
        finally:
            await clients.aclose()

    return asyncio.run(main())


def act(
    clients: Clients, action: Action, target: Target, step: Any, *, dry_run: bool = False
) -> Awaitable[ActionResult]:
    return action.run(ActionContext(target=target, step=step, clients=clients, dry_run=dry_run))


def cache(url: str, replica_url: str | None = None) -> RedisTarget:
    return RedisTarget(type="redis", name="cache", url=url, replica_url=replica_url)


def connect(url: str, **kwargs: Any) -> redis.asyncio.Redis:
    return redis.asyncio.Redis.from_url(url, single_connection_client=True, **kwargs)


def with_db(url: str, db: int) -> str:
    return urlsplit(url)._replace(path=f"/{db}").geturl()


def test_exports() -> None:
    # every redis.* step of the registry, and nothing else, comes from this module
    assert sorted(a.name for a in ACTIONS) == [
        n for n in steps.action_names() if n.startswith("redis.")
    ]
    assert all(a.target_types == frozenset({"redis"}) for a in ACTIONS)
    assert [c.target_type for c in CHECKS] == ["redis"]


def test_delete_keys_removes_only_matching_keys_across_many_scan_batches(redis_url: str) -> None:
    prefix = f"remediator-test:{uuid.uuid4().hex}"
    doomed = [f"{prefix}:sess:{i}" for i in range(1200)]
    kept = [f"{prefix}:keep:{i}" for i in range(40)] + [f"{prefix}:sessX", f"{prefix}:sess"]
    step = RedisDeleteKeys(action="redis.delete_keys", pattern=f"{prefix}:sess:*", batch=100)

    async def scenario(clients: Clients) -> None:
        async with connect(redis_url) as r:
            try:
                await r.mset({key: "v" for key in doomed + kept})
                dry = await act(
                    clients, RedisDeleteKeysAction(), cache(redis_url), step, dry_run=True
                )
                assert dry.ok and dry.detail.startswith("dry-run: would UNLINK")
                assert await r.exists(*doomed) == len(doomed)

                result = await act(clients, RedisDeleteKeysAction(), cache(redis_url), step)
                assert result.ok, result.detail
                assert result.data == {"deleted": 1200, "complete": True}
                assert await r.exists(*doomed) == 0
                assert await r.exists(*kept) == len(kept)
                assert result.duration > 0
            finally:
                await r.delete(*doomed, *kept)

    run(scenario)


def test_delete_keys_stops_at_max_keys(redis_server_factory: RedisServerFactory) -> None:
    url = redis_server_factory()
    step = RedisDeleteKeys(action="redis.delete_keys", pattern="tmp:*", batch=50, max_keys=120)

    async def scenario(clients: Clients) -> None:
        async with connect(url) as r:
            await r.mset({f"tmp:{i}": "v" for i in range(300)})
            result = await act(clients, RedisDeleteKeysAction(), cache(url), step)
            assert result.ok, result.detail
            assert result.data == {"deleted": 120, "complete": False}
            assert "max_keys=120" in result.detail
            assert await r.dbsize() == 180

    run(scenario)


def test_flushdb_flushes_only_the_chosen_database(redis_server_factory: RedisServerFactory) -> None:
    url = redis_server_factory()  # redis://127.0.0.1:<port>/0
    flush_3 = RedisFlushDb(action="redis.flushdb", db=3)
    flush_url_db = RedisFlushDb(action="redis.flushdb")

    async def scenario(clients: Clients) -> None:
        async with connect(url) as db0, connect(with_db(url, 3)) as db3:
            await db0.mset({"a": 1, "b": 2})
            await db3.mset({"x": 1, "y": 2, "z": 3})

            dry = await act(clients, RedisFlushDbAction(), cache(url), flush_3, dry_run=True)
            assert dry.ok and dry.detail == "dry-run: would FLUSHDB db 3 on cache"
            assert (await db0.dbsize(), await db3.dbsize()) == (2, 3)

            result = await act(clients, RedisFlushDbAction(), cache(url), flush_3)
            assert result.ok, result.detail
            assert result.data == {"db": 3}
            assert (await db0.dbsize(), await db3.dbsize()) == (2, 0)

            result = await act(clients, RedisFlushDbAction(), cache(url), flush_url_db)
            assert result.ok and result.data == {"db": 0}
            assert await db0.dbsize() == 0

            again = await act(clients, RedisFlushDbAction(), cache(url), flush_url_db)
            assert again.ok  # idempotent

    run(scenario)


def test_memory_purge_is_ok(redis_server_factory: RedisServerFactory) -> None:
    url = redis_server_factory()
    step = RedisMemoryPurge(action="redis.memory_purge")

    async def scenario(clients: Clients) -> None:
        result = await act(clients, RedisMemoryPurgeAction(), cache(url), step)
        assert result.ok, result.detail
        assert result.data["allocator"]
        assert result.data["rss_after"] > 0
        dry = await act(clients, RedisMemoryPurgeAction(), cache(url), step, dry_run=True)
        assert dry.ok and dry.detail == "dry-run: would MEMORY PURGE on cache"

    run(scenario)


def test_kill_clients_kills_the_idle_matching_client_only(
    redis_server_factory: RedisServerFactory,
) -> None:
    url = redis_server_factory()
    step = RedisKillClients(action="redis.kill_clients", name="worker", min_idle=1.0)
    everyone = RedisKillClients(action="redis.kill_clients", client_type="normal", min_idle=0)

    async def scenario(clients: Clients) -> None:
        async with (
            connect(url, client_name="worker") as idle_worker,
            connect(url, client_name="worker") as busy_worker,
            connect(url, client_name="api") as idle_api,
            connect(url) as observer,
        ):
            ours = await clients.redis(url).client_id()  # remediator's pooled connection
            ids = {
                "idle_worker": await idle_worker.client_id(),
                "busy_worker": await busy_worker.client_id(),
                "idle_api": await idle_api.client_id(),
            }
            await asyncio.sleep(1.3)
            await busy_worker.ping()

            dry = await act(clients, RedisKillClientsAction(), cache(url), step, dry_run=True)
            assert dry.ok and dry.detail.startswith("dry-run: would kill clients")

            result = await act(clients, RedisKillClientsAction(), cache(url), step)
            assert result.ok, result.detail
            assert result.data == {"killed": 1}
            alive = {int(c["id"]) for c in await observer.client_list()}
            assert ids["idle_worker"] not in alive
            assert {ids["busy_worker"], ids["idle_api"], ours} <= alive

            # Even "every normal client" spares remediator's own connections.
            result = await act(clients, RedisKillClientsAction(), cache(url), everyone)
            assert result.ok and result.data["killed"] >= 2
            assert await clients.redis(url).client_id() == ours

    run(scenario)


def test_kill_clients_needs_a_filter(redis_server_factory: RedisServerFactory) -> None:
    url = redis_server_factory()
    step = RedisKillClients(action="redis.kill_clients")

    async def scenario(clients: Clients) -> None:
        result = await act(clients, RedisKillClientsAction(), cache(url), step)
        assert not result.ok and "refusing" in result.detail

    run(scenario)


async def _replication(url: str) -> dict[str, Any]:
    async with connect(url) as r:
        info: dict[str, Any] = await r.info("replication")
        return info


def test_failover_promotes_the_replica(redis_server_factory: RedisServerFactory) -> None:
    primary = redis_server_factory()
    port = str(urlsplit(primary).port)
    replica = redis_server_factory("--replicaof", "127.0.0.1", port)
    step = RedisFailover(action="redis.failover")
    target = cache(primary, replica_url=replica)

    async def scenario(clients: Clients) -> None:
        for _ in range(200):
            if (await _replication(replica)).get("master_link_status") == "up":
                break
            await asyncio.sleep(0.05)
        assert (await _replication(replica))["role"] == "slave"

        dry = await act(clients, RedisFailoverAction(), target, step, dry_run=True)
        assert dry.ok and dry.detail.startswith("dry-run: would promote")
        assert (await _replication(replica))["role"] == "slave"

        result = await act(clients, RedisFailoverAction(), target, step)
        assert result.ok, result.detail
        assert result.data == {"primary_url": replica}
        info = await _replication(replica)
        assert info["role"] == "master"
        assert "master_host" not in info  # replica_of: none
        async with connect(replica) as r:
            assert (await r.role())[0] in ("master", b"master")

        again = await act(clients, RedisFailoverAction(), target, step)
        assert again.ok  # idempotent

        missing = await act(clients, RedisFailoverAction(), cache(primary), step)
        assert not missing.ok and "no replica_url" in missing.detail

    run(scenario)


def test_down_server_fails_fast_without_leaking_the_password() -> None:
    url = f"redis://:s3cret-pw@127.0.0.1:{free_port()}/0"
    cases: list[tuple[Action, Any]] = [
        (RedisFlushDbAction(), RedisFlushDb(action="redis.flushdb")),
        (RedisDeleteKeysAction(), RedisDeleteKeys(action="redis.delete_keys", pattern="x*")),
        (RedisMemoryPurgeAction(), RedisMemoryPurge(action="redis.memory_purge")),
        (
            RedisKillClientsAction(),
            RedisKillClients(action="redis.kill_clients", min_idle=0),
        ),
    ]

    async def scenario(clients: Clients) -> None:
        for action, step in cases:
            result = await act(clients, action, cache(url), step)
            assert not result.ok
            assert "s3cret" not in result.detail and "Traceback" not in result.detail
            assert result.duration < 3
        failover = await act(
            clients,
            RedisFailoverAction(),
            cache(url, replica_url=url),
            RedisFailover(action="redis.failover"),
        )
        assert not failover.ok and "s3cret" not in failover.detail

    run(scenario)


def test_wrong_target_type() -> None:
    target = HttpTarget(type="http", name="web", base_url="http://127.0.0.1:1")

    async def scenario(clients: Clients) -> None:
        for action in ACTIONS:
            result = await act(clients, action, target, RedisFlushDb(action="redis.flushdb"))
            assert (result.ok, result.detail) == (False, "wrong target type")

    run(scenario)


def test_health_check_up_and_down(redis_url: str) -> None:
    down = f"redis://:s3cret-pw@127.0.0.1:{free_port()}/0"

    async def scenario(clients: Clients) -> None:
        up = await RedisPingCheck().check(cache(redis_url), clients, timeout=5)
        assert up.healthy and up.detail == "PONG"
        result = await RedisPingCheck().check(cache(down), clients, timeout=5)
        assert not result.healthy and "s3cret" not in result.detail
        assert result.duration < 3

    run(scenario)


def test_timeout_then_recovery(redis_server_factory: RedisServerFactory) -> None:
    url = redis_server_factory()
    slow = RedisFlushDb(action="redis.flushdb", timeout=0.3)

    async def scenario(clients: Clients) -> None:
        async with connect(url) as admin:
            await clients.redis(url).ping()  # a pooled connection exists before the timeout
            await admin.client_pause(1000, all=False)
            result = await act(clients, RedisFlushDbAction(), cache(url), slow)
            assert not result.ok and "timed out after 0.3s" in result.detail
            assert result.duration < 1
            await admin.client_unpause()
            await admin.set("k", "v")
            again = await act(clients, RedisFlushDbAction(), cache(url), slow)
            assert again.ok, again.detail
            assert await admin.dbsize() == 0

    run(scenario)
