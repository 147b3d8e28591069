"""Jobs the real RQ workers of the queue tests run (imported by the worker processes)."""

from __future__ import annotations

import os

import redis


def record(key: str, value: str) -> str:
    """Append ``value`` to the Redis list ``key`` (what a test counts), then return it."""
    conn = redis.Redis.from_url(os.environ["QUEUE_TEST_REDIS_URL"])
    try:
        conn.rpush(key, value)
    finally:
        conn.close()
    return value


def fail_unless_flag(key: str, value: str, exception: str) -> str:
    """Raise ``exception`` (ValueError or KeyError) until the Redis key ``key:ok`` exists, then
    record like :func:`record`."""
    conn = redis.Redis.from_url(os.environ["QUEUE_TEST_REDIS_URL"])
    try:
        ok = conn.exists(f"{key}:ok")
    finally:
        conn.close()
    if not ok:
        raise {"ValueError": ValueError, "KeyError": KeyError}[exception](value)
    return record(key, value)
