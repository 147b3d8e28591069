"""Workers that run as a registered process target: ``queue.restart_workers`` on an ``rq`` target
with ``workers_process`` restarts a real RQ worker (kept up by a supervisor shell loop, stopped by
its process group at teardown) the way ``process.restart`` does; check-config refuses a
``workers_process`` that names no registered process target."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from rq import Queue, Worker

from remediator.config import model as config_mod
from remediator.config.targets import RqTarget
from remediator.errors import ConfigError
from remediator.tech.process import read_pidfile
from tests.actions.test_process_restart import alive, stop_group
from tests.queues.actions import act
from tests.queues.conftest import BIN, ROOT
from tests.waiting import wait_for

pytestmark = pytest.mark.redis

# The supervisor: start an RQ worker, write its pid, wait for it to exit, start it again.
SUPERVISOR = 'while true; do "$1" worker --url "$2" "$3" & echo "$!" > "$4"; wait "$!"; done'


@pytest.fixture
def supervised_rq(
    queue_redis_url: str, qname: str, tmp_path: Path
) -> Iterator[tuple[str, Path, int]]:
    """A supervised RQ worker on ``qname``; yields (its Redis URL, its pidfile, its pid)."""
    pidfile = tmp_path / "rq-worker.pid"
    env = {**os.environ, "QUEUE_TEST_REDIS_URL": queue_redis_url, "PYTHONPATH": str(ROOT)}
    with (tmp_path / "rq.log").open("ab") as log:
        proc = subprocess.Popen(
            ["sh", "-c", SUPERVISOR, "sh", str(BIN / "rq"), queue_redis_url, qname, str(pidfile)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(lambda: read_pidfile(str(pidfile)) is not None, what="the worker's pidfile")
        pid = read_pidfile(str(pidfile))
        assert pid is not None
        yield queue_redis_url, pidfile, pid
    finally:
        stop_group(proc)


def config(url: str, queue: str, pidfile: str, **rq: Any) -> config_mod.Config:
    targets = [
        {"name": "jobs", "type": "rq", "url": url, "queues": [queue], **rq},
        {"name": "rq-workers", "type": "process", "pidfile": pidfile},
        {"name": "consumer", "type": "docker_container"},
    ]
    book = {
        "name": "restart",
        "match": ['alertname="X"'],
        "target": "jobs",
        "steps": [{"action": "queue.restart_workers", "queue": queue}],
    }
    return config_mod.parse({"targets": targets, "playbooks": [book]}, env={})


def idle_workers(conn: redis.Redis) -> set[int]:
    """The pids of the RQ workers waiting for a job."""
    return {w.pid for w in Worker.all(connection=conn) if w.pid and w.get_state() == "idle"}


def test_queue_restart_workers_restarts_the_rq_workers_process(
    supervised_rq: tuple[str, Path, int], qname: str, rconn: redis.Redis
) -> None:
    url, pidfile, before = supervised_rq
    # A primer job first: a warm shutdown that lands while RQ still cleans its registries at
    # start-up is lost, so the restart is sent to a worker blocked waiting for its next job.
    queue = Queue(qname, connection=rconn)
    queue.enqueue("tests.queues.jobs.record", f"{qname}:done", "primer")
    wait_for(lambda: rconn.llen(f"{qname}:done") == 1, what="the worker to run the primer")
    wait_for(lambda: before in idle_workers(rconn), what="the worker to wait for jobs")
    jobs = config(url, qname, str(pidfile), workers_process="rq-workers").target("jobs")
    assert isinstance(jobs, RqTarget) and jobs.workers is not None

    result = act(jobs, "queue.restart_workers", queue=qname, timeout=30)

    assert result.ok, result.detail
    after = result.data["pid_after"]
    assert result.data == {
        "count": 1,
        "ids": ["rq-workers"],
        "pid_before": before,
        "pid_after": after,
        "signal": "SIGTERM",
    }
    assert result.detail == f"process of rq-workers restarted: pid {before} -> {after} (jobs)"
    assert after != before and alive(after) and not alive(before)
    # The new worker is a working RQ worker: it registers and runs a job.
    wait_for(lambda: after in idle_workers(rconn), what="the new worker to wait for jobs")
    queue.enqueue("tests.queues.jobs.record", f"{qname}:done", "x")
    wait_for(lambda: rconn.llen(f"{qname}:done") == 2, what="the new worker to run a job")


def test_a_dry_run_restarts_no_process(supervised_rq: tuple[str, Path, int], qname: str) -> None:
    url, pidfile, before = supervised_rq
    jobs = config(url, qname, str(pidfile), workers_process="rq-workers").target("jobs")
    assert jobs is not None

    result = act(jobs, "queue.restart_workers", queue=qname, dry_run=True)

    assert result.ok and result.detail.startswith("dry-run: would restart the workers")
    assert read_pidfile(str(pidfile)) == before and alive(before)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("stranger", "workers_process 'stranger' of jobs is not a registered process target"),
        ("consumer", "workers_process 'consumer' of jobs is not a registered process target"),
    ],
)
def test_check_config_refuses_a_workers_process_that_is_no_registered_process(
    name: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        config("redis://127.0.0.1:1/0", "default", "/nonexistent.pid", workers_process=name)
    assert [p.removeprefix("<root>: ") for p in caught.value.problems] == [
        f"playbooks[0].steps[0]: {expected}"
    ]


def test_a_target_names_its_workers_container_or_its_workers_process_not_both() -> None:
    with pytest.raises(ConfigError) as caught:
        config(
            "redis://127.0.0.1:1/0",
            "default",
            "/nonexistent.pid",
            workers_process="rq-workers",
            workers_container="consumer",
        )
    assert any(
        "give at most one of workers_container or workers_process" in p
        for p in caught.value.problems
    )


def test_a_registered_workers_process_passes_check_config() -> None:
    jobs = config(
        "redis://127.0.0.1:1/0", "default", "/nonexistent.pid", workers_process="rq-workers"
    ).target("jobs")
    assert isinstance(jobs, RqTarget) and jobs.workers is not None
    assert jobs.workers.pidfile == "/nonexistent.pid"
