"""RQ queue recovery against real RQ workers on the test Redis."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import redis
from rq import Queue, Worker
from rq.suspension import suspend

from remediator.checks.queue import QueueCheckResult, export_queues
from remediator.config.targets import Target
from remediator.metrics import Metrics
from tests.queues.actions import act, check, target
from tests.queues.conftest import Workers, suspend_rq
from tests.waiting import wait_for

pytestmark = pytest.mark.redis


def rq_target(url: str, *queues: str, **extra: object) -> Target:
    return target(type="rq", name="jobs", url=url, queues=list(queues), **extra)


def test_a_suspended_rq_queue_is_resumed_and_its_backlog_drained_by_the_worker(
    queue_redis_url: str, rconn: redis.Redis, qname: str, workers: Workers
) -> None:
    queue = Queue(qname, connection=rconn)
    workers.rq(qname)
    wait_for(lambda: Worker.count(connection=rconn, queue=queue) == 1, what="the worker")
    suspend_rq(rconn, f"{qname}-primer")  # as `rq suspend` does
    for i in range(10):
        queue.enqueue("tests.queues.jobs.record", f"{qname}:done", str(i))
    time.sleep(2.0)
    assert rconn.llen(f"{qname}:done") == 0 and queue.count == 10  # suspended: nothing runs
    tgt = rq_target(queue_redis_url, qname)
    before = check(tgt)
    assert not before.healthy and "PAUSED" in before.detail

    result = act(tgt, "queue.resume", queue=qname)

    assert result.ok, result.detail
    assert result.data["count"] == 1
    wait_for(lambda: rconn.llen(f"{qname}:done") == 10, what="the backlog drained")
    assert queue.count == 0
    assert check(tgt).healthy


def test_twenty_of_fifty_failed_rq_jobs_with_the_chosen_exception_are_requeued_and_succeed(
    queue_redis_url: str, rconn: redis.Redis, qname: str, workers: Workers
) -> None:
    queue = Queue(qname, connection=rconn)
    key = f"{qname}:done"
    for i in range(50):
        exception = "ValueError" if i % 5 in (0, 1) else "KeyError"  # 20 ValueError, 30 KeyError
        queue.enqueue("tests.queues.jobs.fail_unless_flag", key, str(i), exception)
    workers.rq(qname)
    wait_for(lambda: queue.failed_job_registry.count == 50, what="50 failed jobs")
    rconn.set(f"{key}:ok", 1)  # from now on the jobs succeed

    result = act(
        rq_target(queue_redis_url, qname),
        "queue.requeue_failed",
        queue=qname,
        exception="ValueError",
    )

    assert result.ok, result.detail
    assert result.data["count"] == 20 and result.data["skipped"] == 30
    assert len(result.data["ids"]) == 20
    wait_for(lambda: rconn.llen(key) == 20, what="the 20 requeued jobs to succeed")
    done = sorted(int(v) for v in rconn.lrange(key, 0, -1))
    assert done == [i for i in range(50) if i % 5 in (0, 1)]
    assert queue.failed_job_registry.count == 30


def test_max_jobs_bounds_a_requeue(
    queue_redis_url: str, rconn: redis.Redis, qname: str, workers: Workers
) -> None:
    queue = Queue(qname, connection=rconn)
    for i in range(6):
        queue.enqueue("tests.queues.jobs.fail_unless_flag", f"{qname}:done", str(i), "KeyError")
    workers.rq(qname)
    wait_for(lambda: queue.failed_job_registry.count == 6, what="6 failed jobs")
    rconn.set(f"{qname}:done:ok", 1)

    result = act(rq_target(queue_redis_url, qname), "queue.requeue_failed", queue=qname, max_jobs=4)

    assert result.ok and result.data["count"] == 4
    wait_for(lambda: rconn.llen(f"{qname}:done") == 4, what="4 requeued jobs")
    assert queue.failed_job_registry.count == 2


def test_failed_rq_jobs_older_than_the_age_are_cleaned_and_newer_ones_kept(
    queue_redis_url: str, rconn: redis.Redis, qname: str, workers: Workers
) -> None:
    queue = Queue(qname, connection=rconn)
    for i in range(5):
        queue.enqueue("tests.queues.jobs.fail_unless_flag", f"{qname}:done", f"old{i}", "KeyError")
    workers.rq(qname)
    wait_for(lambda: queue.failed_job_registry.count == 5, what="5 old failed jobs")
    old = set(queue.failed_job_registry.get_job_ids())
    time.sleep(3.0)
    for i in range(7):
        queue.enqueue("tests.queues.jobs.fail_unless_flag", f"{qname}:done", f"new{i}", "KeyError")
    wait_for(lambda: queue.failed_job_registry.count == 12, what="7 new failed jobs")

    result = act(
        rq_target(queue_redis_url, qname), "queue.clean_failed", queue=qname, older_than="2s"
    )

    assert result.ok, result.detail
    assert result.data["count"] == 5 and result.data["kept"] == 7
    assert set(result.data["ids"]) == old
    left = set(queue.failed_job_registry.get_job_ids())
    assert len(left) == 7 and not left & old
    assert not any(rconn.exists(f"rq:job:{job_id}") for job_id in old)  # deleted, not only unlisted


def test_scheduled_rq_jobs_due_within_the_horizon_are_drained_to_the_queue(
    queue_redis_url: str, rconn: redis.Redis, qname: str, workers: Workers
) -> None:
    queue = Queue(qname, connection=rconn)
    soon = [
        queue.enqueue_in(
            timedelta(minutes=10), "tests.queues.jobs.record", f"{qname}:done", f"s{i}"
        )
        for i in range(3)
    ]
    for i in range(2):
        queue.enqueue_in(timedelta(days=2), "tests.queues.jobs.record", f"{qname}:done", f"l{i}")
    workers.rq(qname)
    assert queue.scheduled_job_registry.count == 5

    result = act(
        rq_target(queue_redis_url, qname), "queue.drain_delayed", queue=qname, horizon="1h"
    )

    assert result.ok, result.detail
    assert result.data["count"] == 3 and set(result.data["ids"]) == {job.id for job in soon}
    wait_for(lambda: rconn.llen(f"{qname}:done") == 3, what="the drained jobs to run")
    assert sorted(
        str(v, "utf-8") if isinstance(v, bytes) else v for v in rconn.lrange(f"{qname}:done", 0, -1)
    ) == [
        "s0",
        "s1",
        "s2",
    ]
    assert queue.scheduled_job_registry.count == 2


def test_an_rq_purge_is_refused_without_allow_purge_and_done_with_it(
    queue_redis_url: str, rconn: redis.Redis, qname: str
) -> None:
    queue = Queue(qname, connection=rconn)
    for i in range(5):
        queue.enqueue("tests.queues.jobs.record", f"{qname}:done", str(i))

    refused = act(rq_target(queue_redis_url, qname), "queue.purge", queue=qname)

    assert not refused.ok and "allow_purge" in refused.detail
    assert queue.count == 5
    done = act(rq_target(queue_redis_url, qname, allow_purge=True), "queue.purge", queue=qname)
    assert done.ok and done.data["count"] == 5 and queue.count == 0


def test_a_dry_run_touches_nothing(queue_redis_url: str, rconn: redis.Redis, qname: str) -> None:
    suspend(rconn)
    result = act(rq_target(queue_redis_url, qname), "queue.resume", queue=qname, dry_run=True)
    assert result.ok and result.detail.startswith("dry-run: would")
    assert rconn.exists("rq:suspended")


def test_the_rq_health_metrics_match_the_real_counts(
    queue_redis_url: str, rconn: redis.Redis, qname: str, workers: Workers
) -> None:
    queue = Queue(qname, connection=rconn)
    for i in range(4):
        queue.enqueue("tests.queues.jobs.fail_unless_flag", f"{qname}:done", str(i), "KeyError")
    workers.rq(qname)
    wait_for(lambda: queue.failed_job_registry.count == 4, what="4 failed jobs")
    wait_for(lambda: Worker.count(connection=rconn, queue=queue) == 1, what="the worker")
    suspend_rq(rconn, f"{qname}-primer")
    for i in range(7):
        queue.enqueue("tests.queues.jobs.record", f"{qname}:done", str(i))
    for i in range(3):
        queue.enqueue_in(timedelta(hours=1), "tests.queues.jobs.record", f"{qname}:done", str(i))
    time.sleep(1.5)

    result = check(rq_target(queue_redis_url, qname))
    metrics = Metrics()
    export_queues(metrics, "jobs", result)

    assert isinstance(result, QueueCheckResult) and not result.healthy
    value = metrics.registry.get_sample_value
    labels = {"target": "jobs", "queue": qname}
    jobs = {
        s: value("remediator_queue_jobs", {**labels, "state": s})
        for s in ("queued", "started", "failed", "scheduled", "deferred")
    }
    assert jobs == {"queued": 7, "started": 0, "failed": 4, "scheduled": 3, "deferred": 0}
    assert jobs["queued"] == queue.count and jobs["failed"] == queue.failed_job_registry.count
    assert value("remediator_queue_consumers", labels) == 1
    assert value("remediator_queue_paused", labels) == 1
    age = value("remediator_queue_oldest_job_age_seconds", labels)
    assert age is not None and 1.0 <= age < 30.0
