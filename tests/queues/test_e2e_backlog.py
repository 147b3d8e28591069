"""End to end: a suspended RQ queue builds a backlog; remediator's queue check exports it,
Prometheus fires a backlog alert, Alertmanager posts it to remediator with its bearer token, the
playbook runs ``queue.resume`` and the real RQ worker drains the backlog. Nothing is posted by
the test: it starts the chain and watches.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import redis
from rq import Queue, Worker

from tests.alertmanager import Alertmanager
from tests.e2e.stack import ALERTS_PATH, Prometheus, Remediator
from tests.queues.conftest import Workers, suspend_rq
from tests.waiting import wait_for

pytestmark = [pytest.mark.redis, pytest.mark.prometheus]

BACKLOG = 30
# The shape of rules/queue.rules.yml's QueueBacklogGrowing, with a threshold and `for:` small
# enough for a test.
RULES: dict[str, Any] = {
    "groups": [
        {
            "name": "queue-e2e",
            "rules": [
                {
                    "alert": "QueueBacklogGrowing",
                    "expr": 'remediator_queue_jobs{job="remediator", state="queued"} > 10',
                    "for": "2s",
                    "labels": {"severity": "warning"},
                    "annotations": {"summary": "A queue's backlog is growing."},
                }
            ],
        }
    ]
}


def test_a_backlog_alert_through_alertmanager_ends_in_queue_resume_and_a_drained_queue(
    tmp_path: Path,
    tokens: dict[str, str],
    queue_redis_url: str,
    rconn: redis.Redis,
    qname: str,
    workers: Workers,
    prometheus_bin: str,
    alertmanager_bin: str,
) -> None:
    queue = Queue(qname, connection=rconn)
    workers.rq(qname)
    wait_for(lambda: Worker.count(connection=rconn, queue=queue) == 1, what="the worker")
    suspend_rq(rconn, f"{qname}-primer")
    for i in range(BACKLOG):
        queue.enqueue("tests.queues.jobs.record", f"{qname}:done", str(i))
    config = {
        "targets": [
            {
                "name": "jobs",
                "type": "rq",
                "url": queue_redis_url,
                "queues": [qname],
                "check_interval": "1s",
            }
        ],
        "playbooks": [
            {
                "name": "resume-queue",
                "match": ['alertname="QueueBacklogGrowing"'],
                "target": "{{ labels.target }}",
                "steps": [{"action": "queue.resume", "queue": qname}],
                "cooldown": "0s",
                "retry": {"max_attempts": 1},
            }
        ],
    }
    (tmp_path / "remediator").mkdir()
    remediator = Remediator(tmp_path / "remediator", config, tokens)
    remediator.start()
    alertmanager = Alertmanager(
        alertmanager_bin,
        tmp_path / "alertmanager",
        webhook_url=remediator.url + ALERTS_PATH,
        token=tokens["alertmanager"],
    )
    prometheus = Prometheus(
        prometheus_bin,
        tmp_path / "prometheus",
        [
            {
                "job_name": "remediator",
                "static_configs": [{"targets": [remediator.url.removeprefix("http://")]}],
            }
        ],
        rules=RULES,
        alertmanager=alertmanager.url,
    )
    try:
        prometheus.start()
        started = time.monotonic()
        wait_for(
            lambda: rconn.llen(f"{qname}:done") == BACKLOG, timeout=90, what="the backlog drained"
        )
        seconds = time.monotonic() - started
        actions = remediator.events("recovery:action")
        assert [(e["target"], e["outcome"]) for e in actions] == [("jobs", "success")], actions
        assert not rconn.exists("rq:suspended") and queue.count == 0
        received = remediator.events("alert:received")
        assert any(
            e.get("details", {}).get("labels", {}).get("alertname") == "QueueBacklogGrowing"
            or "QueueBacklogGrowing" in str(e)
            for e in received
        )
        wait_for(
            lambda: (
                prometheus.value(f'remediator_queue_jobs{{queue="{qname}", state="queued"}}') == 0
            ),
            timeout=30,
            what="Prometheus to see the queue empty",
        )
        print(f"backlog of {BACKLOG} drained {seconds:.1f}s after Prometheus started")
    finally:
        prometheus.stop()
        alertmanager.stop()
        remediator.shutdown()
