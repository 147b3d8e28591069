"""Redis recovery actions: flushdb, delete_keys, memory_purge, kill_clients, failover.

Every action runs against a registered :class:`~remediator.config.targets.RedisTarget` through the
cached clients in :class:`~remediator.clients.Clients`, bounded by the step's ``timeout``. Details
name the target, never its URL (which may hold a password).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import redis.asyncio
import redis.exceptions
from pydantic import Field

from remediator.actions.base import BuiltinAction, GuardedAction, StepModel
from remediator.clients import REDIS_CLIENT_NAME, Clients
from remediator.config.durations import Duration
from remediator.config.targets import RedisTarget
from remediator.redaction import redact_text
from remediator.tech.redis import redis_error

__all__ = [
    "ACTIONS",
    "RedisDeleteKeysAction",
    "RedisFailoverAction",
    "RedisFlushDbAction",
    "RedisKillClientsAction",
    "RedisMemoryPurgeAction",
]

Outcome = tuple[bool, str, dict[str, Any]]


class RedisFlushDb(StepModel):
    action: Literal["redis.flushdb"]
    db: int | None = Field(default=None, ge=0, le=15)


class RedisDeleteKeys(StepModel):
    action: Literal["redis.delete_keys"]
    pattern: str = Field(min_length=1)
    batch: int = Field(default=500, ge=1, le=10_000)
    max_keys: int = Field(default=1_000_000, ge=1)


class RedisMemoryPurge(StepModel):
    action: Literal["redis.memory_purge"]


class RedisKillClients(StepModel):
    action: Literal["redis.kill_clients"]
    client_type: Literal["normal", "pubsub", "replica", "master"] | None = None
    min_idle: Duration | None = None
    name: str | None = None


class RedisFailover(StepModel):
    action: Literal["redis.failover"]


def _as_str(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class _RedisAction(GuardedAction):
    target_types: ClassVar[frozenset[str]] = frozenset({"redis"})
    target_class = RedisTarget
    errors = (redis.exceptions.RedisError, OSError, ValueError)

    def error_detail(self, exc: BaseException, target: Any, step: Any) -> str:
        return redis_error(exc, target.url, target.replica_url)


class RedisFlushDbAction(_RedisAction):
    """FLUSHDB (ASYNC) on the step's ``db`` or the URL's database."""

    name = "redis.flushdb"
    step_type = RedisFlushDb

    def describe(self, target: RedisTarget, step: RedisFlushDb) -> str:
        db = "the URL's db" if step.db is None else f"db {step.db}"
        return f"FLUSHDB {db} on {target.name}"

    async def perform(self, target: RedisTarget, step: RedisFlushDb, clients: Clients) -> Outcome:
        client = clients.redis(target.url, db=step.db)
        db = (
            step.db
            if step.db is not None
            else client.connection_pool.connection_kwargs.get("db", 0)
        )
        await client.flushdb(asynchronous=True)
        return True, f"flushed db {db} on {target.name}", {"db": db}


class RedisDeleteKeysAction(_RedisAction):
    """SCAN MATCH ``pattern`` COUNT ``batch``, UNLINK each batch, stop after ``max_keys``."""

    name = "redis.delete_keys"
    step_type = RedisDeleteKeys

    def describe(self, target: RedisTarget, step: RedisDeleteKeys) -> str:
        return f"UNLINK up to {step.max_keys} keys matching {step.pattern!r} on {target.name}"

    async def perform(
        self, target: RedisTarget, step: RedisDeleteKeys, clients: Clients
    ) -> Outcome:
        client = clients.redis(target.url)
        deleted = 0
        cursor: int = 0
        complete = False
        while deleted < step.max_keys:
            cursor, keys = await client.scan(cursor=cursor, match=step.pattern, count=step.batch)
            if keys:
                keys = keys[: step.max_keys - deleted]
                deleted += int(await client.unlink(*keys))
            if int(cursor) == 0:
                complete = True
                break
        detail = f"deleted {deleted} key(s) matching {step.pattern!r} on {target.name}"
        if not complete:
            detail += f" (stopped at max_keys={step.max_keys})"
        return True, detail, {"deleted": deleted, "complete": complete}


class RedisMemoryPurgeAction(_RedisAction):
    """MEMORY PURGE: ask the allocator to release dirty pages (a no-op outside jemalloc)."""

    name = "redis.memory_purge"
    step_type = RedisMemoryPurge

    def describe(self, target: RedisTarget, step: RedisMemoryPurge) -> str:
        return f"MEMORY PURGE on {target.name}"

    async def perform(
        self, target: RedisTarget, step: RedisMemoryPurge, clients: Clients
    ) -> Outcome:
        client = clients.redis(target.url)
        before = await client.info("memory")
        await client.memory_purge()
        after = await client.info("memory")
        allocator = _as_str(before.get("mem_allocator", "unknown"))
        data = {
            "allocator": allocator,
            "rss_before": int(before.get("used_memory_rss", 0)),
            "rss_after": int(after.get("used_memory_rss", 0)),
        }
        note = "" if allocator.startswith("jemalloc") else " (no-op for this allocator)"
        return True, f"MEMORY PURGE on {target.name} done{note}", data


class RedisKillClientsAction(_RedisAction):
    """CLIENT KILL ID <id> [TYPE <type>] SKIPME yes for each client CLIENT LIST selects.

    Selection: ``client_type`` (CLIENT LIST TYPE), ``idle >= min_idle``, ``name ==`` the name.
    At least one filter is required (``min_idle: 0`` selects every client). The calling
    connection and every connection of remediator's own clients (named ``remediator``) are
    never killed.
    """

    name = "redis.kill_clients"
    step_type = RedisKillClients

    def describe(self, target: RedisTarget, step: RedisKillClients) -> str:
        return f"kill clients ({_filters(step)}) on {target.name}"

    async def perform(
        self, target: RedisTarget, step: RedisKillClients, clients: Clients
    ) -> Outcome:
        if step.client_type is None and step.min_idle is None and step.name is None:
            return False, "refusing to kill every client: give client_type, min_idle or name", {}
        client = clients.redis(target.url)
        single = client.client()  # one connection: CLIENT ID and CLIENT LIST on the same one
        try:
            own_id = str(await single.client_id())
            listed = await single.client_list(_type=step.client_type)
            victims: list[str] = []
            for entry in listed:
                client_id, name = str(entry.get("id", "")), str(entry.get("name", ""))
                if not client_id or client_id == own_id or name == REDIS_CLIENT_NAME:
                    continue
                if step.name is not None and name != step.name:
                    continue
                if step.min_idle is not None and float(entry.get("idle", 0)) < step.min_idle:
                    continue
                victims.append(client_id)
            killed = 0
            for client_id in victims:
                killed += int(
                    await single.client_kill_filter(
                        _id=client_id, _type=step.client_type, skipme=True
                    )
                )
        finally:
            await single.aclose()
        detail = f"killed {killed} client(s) ({_filters(step)}) on {target.name}"
        return True, detail, {"killed": killed}


def _filters(step: RedisKillClients) -> str:
    parts = []
    if step.client_type is not None:
        parts.append(f"type={step.client_type}")
    if step.min_idle is not None:
        parts.append(f"idle>={step.min_idle:g}s")
    if step.name is not None:
        parts.append(f"name={step.name!r}")
    return ", ".join(parts) or "no filter"


class RedisFailoverAction(_RedisAction):
    """Promote ``replica_url``: REPLICAOF NO ONE, then verify ROLE is master."""

    name = "redis.failover"
    step_type = RedisFailover

    def describe(self, target: RedisTarget, step: RedisFailover) -> str:
        if target.replica_url is None:
            return f"fail over {target.name} (but it has no replica_url)"
        return f"promote the replica of {target.name} (REPLICAOF NO ONE)"

    async def perform(self, target: RedisTarget, step: RedisFailover, clients: Clients) -> Outcome:
        if target.replica_url is None:
            return False, f"{target.name} has no replica_url to fail over to", {}
        replica = clients.redis(target.replica_url)
        await replica.replicaof("NO", "ONE")
        role = await replica.role()
        current = _as_str(role[0]) if role else "unknown"
        if current != "master":
            return False, f"failover of {target.name}: replica role is {current!r} after", {}
        detail = f"promoted the replica of {target.name} to primary (ROLE master)"
        return True, detail, {"primary_url": target.replica_url}

    def persisted(self, target: Any, data: dict[str, Any]) -> dict[str, Any]:
        """The promoted replica is the primary now (kept without its password)."""
        return {"primary": redact_text(str(data["primary_url"]))} if "primary_url" in data else {}


ACTIONS: tuple[BuiltinAction, ...] = (
    RedisFlushDbAction(),
    RedisDeleteKeysAction(),
    RedisMemoryPurgeAction(),
    RedisKillClientsAction(),
    RedisFailoverAction(),
)
