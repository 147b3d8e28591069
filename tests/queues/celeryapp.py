"""The Celery app the real Celery worker of the queue tests runs (``celery -A tests.queues.celeryapp``)."""

from __future__ import annotations

import os

import redis
from celery import Celery

app = Celery(
    "remediator-tests", broker=os.environ.get("QUEUE_TEST_REDIS_URL", "redis://127.0.0.1:1/0")
)
app.conf.worker_pool_restarts = True
app.conf.worker_hijack_root_logger = False
app.conf.broker_connection_retry_on_startup = True


@app.task(name="tests.record")  # type: ignore[untyped-decorator]
def record(key: str, value: str) -> str:
    conn = redis.Redis.from_url(os.environ["QUEUE_TEST_REDIS_URL"])
    try:
        conn.rpush(key, value)
    finally:
        conn.close()
    return value
