"""Hostile alert text against the queue actions: refused before anything is touched.

A queue step's queue comes from the configuration and must be one of its target's ``queues``;
the only thing an alert chooses is which registered target a templated playbook acts on. Here
alerts carry hostile values in the label the target template reads (shell metacharacters,
``../``, newlines, NUL, a template, SQL, 64 KB, a near-miss of the real name) and in a ``queue``
label: the real engine with the real actions refuses every one as an unregistered target, RQ
stays suspended and every queued job stays where it was.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest
import redis
from rq import Queue
from rq.suspension import suspend

from remediator.clock import FakeClock
from remediator.config import model as config_mod
from remediator.config.auth import Authenticator
from remediator.engine.decisions import TARGET_NOT_REGISTERED
from remediator.errors import ConfigError
from remediator.http.app import build_runtime
from remediator.plugins import Plugins
from remediator.store import EventQuery
from tests.engine_harness import alert
from tests.queues.conftest import qname, queue_redis_url, rconn  # noqa: F401 (fixtures)

pytestmark = pytest.mark.redis

HOSTILE = [
    "jobs; redis-cli -n 13 FLUSHDB",
    "jobs && rq resume",
    "$(rq resume)",
    "`rq resume`",
    "../jobs",
    "jobs/../jobs",
    "jobs\nother",
    "jobs\x00",
    "{{ labels.queue_target }}",
    "jobs' OR '1'='1",
    "JOBS",
    " jobs",
    "jobs ",
    "j" * 65536,
    "",
]


def sections(tmp_path: Path, url: str, queue: str) -> dict[str, Any]:
    return {
        "store": {"url": f"sqlite:///{tmp_path}/engine.db"},
        "health": {"enabled": False},
        "targets": [{"name": "jobs", "type": "rq", "url": url, "queues": [queue]}],
        "playbooks": [
            {
                "name": "resume-jobs",
                "match": ['alertname="ContainerMemoryHigh"'],
                "target": "{{ labels.queue_target }}",
                "steps": [{"action": "queue.resume", "queue": queue}],
                "cooldown": "0s",
                "retry": {"max_attempts": 1},
            }
        ],
    }


def test_hostile_target_labels_never_reach_a_queue(
    tmp_path: Path,
    queue_redis_url: str,  # noqa: F811
    rconn: redis.Redis,  # noqa: F811
    qname: str,  # noqa: F811
) -> None:
    queue = Queue(qname, connection=rconn)
    for i in range(5):
        queue.enqueue("tests.queues.jobs.record", f"{qname}:done", str(i))
    suspend(rconn)

    async def main() -> tuple[list[str], int]:
        cfg = config_mod.parse(sections(tmp_path, queue_redis_url, qname), env={})
        rt = await build_runtime(
            cfg,
            authenticator=Authenticator([]),
            clock=FakeClock(),
            plugins=Plugins(),
            rng=random.Random(7),
        )
        await rt.bus.start()
        await rt.engine.startup()
        try:
            alerts = [
                alert(f"h{i}", queue_target=value, queue=f"{value}-or-another")
                for i, value in enumerate(HOSTILE)
            ]
            await rt.store.ingest(alerts, received_at=1.0, receiver="r", group_key="g")
            while await rt.worker.run_once():
                pass
            await rt.bus.drain()
            skipped = await rt.store.events(EventQuery(type="recovery:skipped", limit=1000))
            acted = await rt.store.events(EventQuery(type="recovery:action", limit=1000))
            return [e.outcome for e in skipped], len(acted)
        finally:
            await rt.bus.stop()
            await rt.clients.aclose()
            await rt.store.close()

    reasons, acted = asyncio.run(main())

    assert acted == 0
    assert sorted(reasons) == [TARGET_NOT_REGISTERED] * len(HOSTILE)
    assert rconn.exists("rq:suspended")  # still suspended: queue.resume never ran
    assert queue.count == 5 and rconn.llen(f"{qname}:done") == 0


@pytest.mark.parametrize("value", ["jobs; FLUSHALL", "../jobs", "a\nb", "$(id)", "x" * 200, ""])
def test_a_hostile_queue_name_in_the_configuration_is_refused(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config_mod.parse(
            {
                "targets": [
                    {
                        "name": "jobs",
                        "type": "rq",
                        "url": "redis://127.0.0.1:1/0",
                        "queues": [value],
                    }
                ]
            },
            env={},
        )
    assert any(line.startswith("targets[0].queues[0]: ") for line in caught.value.problems)
