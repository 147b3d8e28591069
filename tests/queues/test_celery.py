"""Celery queue recovery against a real Celery worker on the test Redis."""

from __future__ import annotations

import time

import pytest
import redis
from celery import Celery

from remediator.checks.queue import QueueCheckResult, export_queues
from remediator.metrics import Metrics
from tests.queues.actions import act, check, target
from tests.queues.conftest import Workers
from tests.waiting import wait_for

pytestmark = pytest.mark.redis


def consuming(app: Celery, queue: str) -> int:
    replies = app.control.inspect(timeout=1.0).active_queues() or {}
    return sum(1 for qs in replies.values() if any(q["name"] == queue for q in qs))


def test_a_celery_worker_told_to_stop_consuming_a_queue_is_resumed(
    queue_redis_url: str, rconn: redis.Redis, qname: str, workers: Workers
) -> None:
    app = Celery("test-client", broker=queue_redis_url, set_as_current=False)
    workers.celery(qname, qname)
    wait_for(lambda: consuming(app, qname) == 1, what="the worker to consume the queue")
    app.control.cancel_consumer(qname, reply=True, timeout=2.0)  # `celery control cancel_consumer`
    wait_for(lambda: consuming(app, qname) == 0, what="the consumer to be cancelled")
    for i in range(8):
        app.send_task("tests.record", args=(f"{qname}:done", str(i)), queue=qname)
    time.sleep(1.5)
    assert rconn.llen(f"{qname}:done") == 0 and rconn.llen(qname) == 8
    tgt = target(
        type="celery",
        name="tasks",
        broker_url=queue_redis_url,
        queues=[qname],
        reply_timeout="1.5s",
    )
    before = check(tgt)
    metrics = Metrics()
    export_queues(metrics, "tasks", before)
    assert isinstance(before, QueueCheckResult) and not before.healthy
    labels = {"target": "tasks", "queue": qname}
    assert metrics.registry.get_sample_value("remediator_queue_paused", labels) == 1
    assert (
        metrics.registry.get_sample_value("remediator_queue_jobs", {**labels, "state": "queued"})
        == 8
    )
    assert metrics.registry.get_sample_value("remediator_queue_consumers", labels) == 0

    result = act(tgt, "queue.resume", queue=qname)

    assert result.ok, result.detail
    assert result.data["count"] == 1 and result.data["ids"] == [f"{qname}@remediator-test"]
    wait_for(lambda: rconn.llen(f"{qname}:done") == 8, what="the backlog drained")
    assert sorted(int(v) for v in rconn.lrange(f"{qname}:done", 0, -1)) == list(range(8))
    after = check(tgt)
    assert after.healthy, after.detail
    app.close()


def test_a_celery_purge_is_refused_without_allow_purge(
    queue_redis_url: str, rconn: redis.Redis, qname: str
) -> None:
    app = Celery("test-client", broker=queue_redis_url, set_as_current=False)
    for i in range(4):
        app.send_task("tests.record", args=(f"{qname}:done", str(i)), queue=qname)
    tgt = target(
        type="celery",
        name="tasks",
        broker_url=queue_redis_url,
        queues=[qname],
        reply_timeout="1.5s",
    )

    refused = act(tgt, "queue.purge", queue=qname)

    assert not refused.ok and "allow_purge" in refused.detail and rconn.llen(qname) == 4
    allowed = target(
        type="celery", name="tasks", broker_url=queue_redis_url, queues=[qname], allow_purge=True
    )
    done = act(allowed, "queue.purge", queue=qname)
    assert done.ok and done.data["count"] == 4 and rconn.llen(qname) == 0
    app.close()


def test_a_celery_pool_restart_is_broadcast_to_the_workers(
    queue_redis_url: str, qname: str, workers: Workers
) -> None:
    app = Celery("test-client", broker=queue_redis_url, set_as_current=False)
    workers.celery(qname, qname)
    wait_for(lambda: consuming(app, qname) == 1, what="the worker")
    tgt = target(
        type="celery",
        name="tasks",
        broker_url=queue_redis_url,
        queues=[qname],
        reply_timeout="1.5s",
    )

    result = act(tgt, "queue.restart_workers", queue=qname)

    assert result.ok, result.detail
    assert result.data["count"] == 1 and result.data["refused"] == 0
    app.close()
