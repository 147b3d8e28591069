"""RabbitMQ queues through the management plugin's HTTP API (``rabbitmq_management``).

"Paused" is a queue without consumers (its consumer is stopped): ``queue.resume`` starts the
container of ``workers_container``. Failed messages are those in the queue's dead-letter queue
(``dead_letters`` on the target); ``queue.requeue_failed`` moves them back to the source queue
with a dynamic shovel (``rabbitmq_shovel``) that acknowledges each message only after the source
queue confirmed it and deletes itself once it moved the count it was given, so nothing is lost
or duplicated. Counts come from the management statistics (refreshed every
``collect_statistics_interval``, 5 s by default).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

from remediator.clients import Clients
from remediator.config.targets import RabbitmqTarget
from remediator.tech.http import join_url
from remediator.tech.queues.base import (
    QueueOutcome,
    QueueStats,
    Refused,
    Selection,
    owned,
    restart_container,
)

__all__ = ["RabbitmqBackend", "RabbitmqError"]

SHOVEL_POLL = 0.2
SHOVEL_WAIT = 50.0  # at most, for a shovel to finish (the step's timeout bounds it too)


class RabbitmqError(Exception):
    """The management API answered with an error status."""


def password(target: RabbitmqTarget) -> str:
    import os

    if target.password_env is not None:
        value = os.environ.get(target.password_env)
        if value is None:
            raise RabbitmqError(f"environment variable {target.password_env} is not set")
        return value
    assert target.password_file is not None
    return Path(target.password_file).read_text(encoding="utf-8").strip()


class RabbitmqBackend:
    target_type: ClassVar[str] = "rabbitmq"
    supports: ClassVar[dict[str, str]] = {
        "queue.resume": "the container of `workers_container` (the stopped consumer) started",
        "queue.requeue_failed": "messages of the queue's dead-letter queue (`dead_letters`) moved back to it by a dynamic shovel, at most `max_jobs`",
        "queue.purge": "the queue's messages deleted (`DELETE /api/queues/VHOST/NAME/contents`)",
        "queue.restart_workers": "the container of `workers_container` restarted (or the process of `workers_process`, remediator/actions/queue.py)",
    }

    async def request(
        self, target: RabbitmqTarget, clients: Clients, method: str, path: str, body: Any = None
    ) -> Any:
        http = clients.http()
        response = await http.request(
            method,
            join_url(target.api_url, path),
            auth=(target.username, password(target)),
            json=body,
            timeout=10.0,
        )
        if response.status_code == 404 and method == "GET":
            return None
        if response.status_code >= 400:
            raise RabbitmqError(f"{method} {path.split('/')[2]}: HTTP {response.status_code}")
        return response.json() if response.content else None

    def _queue_path(self, target: RabbitmqTarget, name: str, suffix: str = "") -> str:
        return f"/api/queues/{quote(target.vhost, safe='')}/{quote(name, safe='')}{suffix}"

    async def _queue(self, target: RabbitmqTarget, clients: Clients, name: str) -> dict[str, Any]:
        found = await self.request(target, clients, "GET", self._queue_path(target, name))
        if found is None:
            raise RabbitmqError(f"queue {name!r} does not exist on vhost {target.vhost!r}")
        return dict(found)

    async def stats(
        self, target: RabbitmqTarget, clients: Clients, *, now: float
    ) -> list[QueueStats]:
        found = []
        for name in target.queues:
            info = await self._queue(target, clients, name)
            jobs = {
                "queued": int(info.get("messages_ready", 0)),
                "started": int(info.get("messages_unacknowledged", 0)),
            }
            dead = target.dead_letters.get(name)
            if dead is not None:
                dlq = await self._queue(target, clients, dead)
                jobs["failed"] = int(dlq.get("messages", 0))
            consumers = int(info.get("consumers", 0))
            head = info.get("head_message_timestamp")
            oldest = max(now - float(head), 0.0) if isinstance(head, int | float) else None
            found.append(QueueStats(name, jobs, consumers, consumers == 0, oldest))
        return found

    async def operate(
        self,
        operation: str,
        target: RabbitmqTarget,
        selection: Selection,
        clients: Clients,
        *,
        now: float,
    ) -> QueueOutcome:
        name = owned(target, selection.queue)
        if operation == "queue.resume":
            return await restart_container(target, clients, start=True)
        if operation == "queue.restart_workers":
            return await restart_container(target, clients)
        if operation == "queue.purge":
            if not target.allow_purge:
                raise Refused(f"queue.purge refused: {target.name} does not set allow_purge: true")
            info = await self._queue(target, clients, name)
            await self.request(
                target, clients, "DELETE", self._queue_path(target, name, "/contents")
            )
            count = int(info.get("messages_ready", 0))
            return QueueOutcome(
                count, f"purged {name} ({count} ready message(s) by the statistics)"
            )
        if operation == "queue.requeue_failed":
            return await self._requeue(target, name, selection, clients)
        raise Refused(f"{operation} is not supported for rabbitmq targets")

    async def _requeue(
        self, target: RabbitmqTarget, name: str, selection: Selection, clients: Clients
    ) -> QueueOutcome:
        if selection.exception is not None:
            raise Refused("rabbitmq messages carry no exception class: drop `exception`")
        dead = target.dead_letters.get(name)
        if dead is None:
            raise Refused(f"{target.name} names no dead-letter queue for {name!r}")
        waiting = int((await self._queue(target, clients, dead)).get("messages_ready", 0))
        if waiting == 0:
            return QueueOutcome(0, f"no message waits in {dead}")
        moving = min(waiting, selection.limit)
        vhost = quote(target.vhost, safe="")
        uri = f"amqp:///{vhost}"
        shovel = f"remediator-requeue-{name}"
        path = f"/api/parameters/shovel/{vhost}/{quote(shovel, safe='')}"
        body = {
            "value": {
                "src-protocol": "amqp091",
                "src-uri": uri,
                "src-queue": dead,
                "src-delete-after": "queue-length" if moving == waiting else moving,
                "dest-protocol": "amqp091",
                "dest-uri": uri,
                "dest-queue": name,
                "ack-mode": "on-confirm",
            }
        }
        await self.request(target, clients, "PUT", path, body)
        deadline = time.monotonic() + SHOVEL_WAIT
        while await self.request(target, clients, "GET", path) is not None:
            if time.monotonic() > deadline:
                await self.request(target, clients, "DELETE", path)
                raise RabbitmqError(f"the shovel from {dead} did not finish; it was deleted")
            await asyncio.sleep(SHOVEL_POLL)
        detail = f"moved {moving} message(s) from {dead} back to {name}"
        return QueueOutcome(moving, detail, extra={"from": dead, "to": name})
