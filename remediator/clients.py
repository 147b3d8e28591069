"""Connections to the systems remediator acts on, one per engine/server, built once.

Docker clients are keyed by ``docker_host`` (None = the default engine from DOCKER_HOST), so
targets on different engines use different clients and an engine that is down affects only its
own targets.

Async clients (created on first use, bound to the event loop that first uses them):

* Redis: one ``redis.asyncio.Redis`` (with its own pool) per (URL, db override). Their
  connections are named :data:`REDIS_CLIENT_NAME` so ``redis.kill_clients`` never kills them.
* PostgreSQL: one autocommit ``psycopg.AsyncConnection`` per DSN (what ``postgres.reset_pool``
  closes and drops).
* HTTP: one shared ``httpx2.AsyncClient`` (no redirects, no cookies kept, no proxy/netrc from env).

Long-lived objects of a technology helper (``remediator/tech/``, e.g. the SSH connections of
``remediator/tech/ssh.py``) are kept by :meth:`Clients.shared`, built on first use.

``close()`` closes the docker clients; ``aclose()`` closes the async ones and the shared ones.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import httpx2
    import psycopg
    import redis.asyncio

T = TypeVar("T")
REDIS_CLIENT_NAME = "remediator"
PG_APPLICATION_NAME = "remediator"


class Clients:
    def __init__(self, *, default_docker_host: str | None = None) -> None:
        self.default_docker_host = default_docker_host
        self._docker: dict[str | None, Any] = {}
        self._lock = threading.Lock()
        self._redis: dict[tuple[str, int | None], redis.asyncio.Redis] = {}
        self._postgres: dict[str, psycopg.AsyncConnection[Any]] = {}
        self._postgres_locks: dict[str, asyncio.Lock] = {}
        self._http: httpx2.AsyncClient | None = None
        self._shared: dict[str, Any] = {}

    def docker(self, docker_host: str | None) -> Any:
        """The docker SDK client for an engine (created on first use)."""
        import docker

        key = docker_host or self.default_docker_host
        with self._lock:
            client = self._docker.get(key)
        if client is not None:
            return client
        # Built outside the lock: a hung engine must not delay the others.
        if key is None:
            client = docker.from_env(timeout=30)
        else:
            client = docker.DockerClient(base_url=key, timeout=30)
        with self._lock:
            existing = self._docker.setdefault(key, client)
        if existing is not client:
            client.close()
        return existing

    def close(self) -> None:
        with self._lock:
            for client in self._docker.values():
                client.close()
            self._docker.clear()

    # -- async clients ---------------------------------------------------------------------------

    def redis(self, url: str, *, db: int | None = None) -> redis.asyncio.Redis:
        """The cached async Redis client for ``url`` (``db`` overrides the URL's database)."""
        import redis.asyncio
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        key = (url, db)
        with self._lock:
            client = self._redis.get(key)
            if client is None:
                pool = redis.asyncio.ConnectionPool.from_url(
                    url,
                    client_name=REDIS_CLIENT_NAME,
                    socket_connect_timeout=10,
                    socket_keepalive=True,
                    retry=Retry(NoBackoff(), 1),
                )
                if db is not None:
                    pool.connection_kwargs["db"] = db
                client = redis.asyncio.Redis.from_pool(pool)
                self._redis[key] = client
            return client

    def postgres_cached(self, dsn: str) -> bool:
        """Whether an open cached PostgreSQL connection exists for ``dsn``."""
        conn = self._postgres.get(dsn)
        return conn is not None and not conn.closed and not conn.broken

    async def postgres(
        self, dsn: str, *, connect_timeout: float = 10.0
    ) -> psycopg.AsyncConnection[Any]:
        """The cached autocommit connection for ``dsn`` (reconnects if closed or broken)."""
        import psycopg
        from psycopg.conninfo import conninfo_to_dict

        lock = self._postgres_locks.setdefault(dsn, asyncio.Lock())
        async with lock:
            conn = self._postgres.pop(dsn, None)
            if conn is not None and not conn.closed and not conn.broken:
                self._postgres[dsn] = conn
                return conn
            if conn is not None:
                await conn.close()
            extra: dict[str, Any] = {"connect_timeout": max(2, int(connect_timeout))}
            if "application_name" not in conninfo_to_dict(dsn):
                extra["application_name"] = PG_APPLICATION_NAME
            conn = await psycopg.AsyncConnection.connect(
                dsn, autocommit=True, prepare_threshold=None, **extra
            )
            self._postgres[dsn] = conn
            return conn

    async def reset_postgres(self, dsn: str) -> int:
        """Close and drop the cached connection(s) for ``dsn``; how many open ones were closed."""
        lock = self._postgres_locks.setdefault(dsn, asyncio.Lock())
        async with lock:
            conn = self._postgres.pop(dsn, None)
            if conn is None:
                return 0
            was_open = not conn.closed
            await conn.close()
            return int(was_open)

    def shared(self, key: str, factory: Callable[[], T]) -> T:
        """The object kept under ``key``, built by ``factory`` on first use; ``aclose()`` awaits
        its ``aclose()``."""
        with self._lock:
            if key not in self._shared:
                self._shared[key] = factory()
            value: T = self._shared[key]
            return value

    def http(self) -> httpx2.AsyncClient:
        """The shared async HTTP client (follow_redirects=False, cookies never stored)."""
        import httpx2

        with self._lock:
            if self._http is None:
                jar = CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
                self._http = httpx2.AsyncClient(
                    follow_redirects=False,
                    trust_env=False,
                    cookies=jar,
                    timeout=httpx2.Timeout(30.0),
                )
            return self._http

    async def aclose(self) -> None:
        """Close the async Redis, PostgreSQL and HTTP clients (docker: see ``close()``)."""
        with self._lock:
            redis_clients = list(self._redis.values())
            self._redis.clear()
            http, self._http = self._http, None
            shared = list(self._shared.values())
            self._shared.clear()
        postgres = list(self._postgres.values())
        self._postgres.clear()
        for client in redis_clients:
            await client.aclose()
        for conn in postgres:
            await conn.close()
        if http is not None:
            await http.aclose()
        for value in shared:
            await value.aclose()
