"""Issue 19: the intake no longer appends to the audit chain; the worker's claim chains each
alert's arrival (remediator/store/arrivals.py). Against a real served process on PostgreSQL:

- while another transaction holds the chain's head row, a notification of hostile alerts (text
  posing as SQL, JSON and log lines; control characters, right-to-left marks; a 4 kB severity
  label; a receiver with quotes) is still acknowledged with 200: the 2xx needs the inbox row only;
- the process is killed (SIGKILL) right after the 2xx, before any arrival could be chained; after
  the lock is gone and the process started again, each hostile alert's ``alert:received`` is in
  the chain exactly once, with its text exactly as sent, and the chain verifies.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx2 as httpx
import psycopg
import pytest

from tests.reliability.conftest import Figures, Serve
from tests.reliability.support import ALERTS, alert, payload
from tests.store_helpers import chain_ok, opened
from tests.waiting import wait_for

HOSTILE = {
    "a1": "Down'); DELETE FROM events; --",
    "a2": '{"type": "alert:resolved"}\nlevel=error msg="forged"',
    "a3": "\u202eHighMemory\u0007\u001b[31m\u00a0",
    "a4": "N" * 3000,
}
RECEIVER = 'am"\\ receiver\u2028'


@pytest.mark.postgres
def test_hostile_alerts_are_acked_without_the_chain_and_chained_once_after_a_kill(
    serve: Serve, pg_database: str, figures: Figures
) -> None:
    served = serve({"health": {"enabled": False}, "store": {"url": pg_database}})
    assert served.post(payload([alert("c0", "Calm")])) == 200
    wait_for(
        lambda: len(served.events("alert:received")) == 1,
        timeout=30,
        what="the first arrival chained",
    )
    hostile = [
        alert(fp, name, labels={"severity": "S" * 4096 if fp == "a4" else "critical"})
        for fp, name in HOSTILE.items()
    ]
    with psycopg.connect(pg_database) as holder:
        holder.execute("SELECT last_id FROM audit_head WHERE id = 1 FOR UPDATE")
        answer = httpx.post(
            served.url + ALERTS,
            json=payload(hostile, receiver=RECEIVER),
            headers=served.headers("alertmanager"),
            timeout=5,
        )
        assert answer.status_code == 200, answer.text
        served.kill9()
        holder.rollback()
    served.start()
    wait_for(
        lambda: len(served.events("alert:received")) == 5, timeout=30, what="the arrivals chained"
    )

    async def check() -> None:
        async with opened(pg_database) as store:
            chained = [e for e in await chain_ok(store) if e.type == "alert:received"]
            assert Counter(e.fingerprint for e in chained) == Counter(["c0", *HOSTILE])
            for e in chained[1:]:
                assert e.alertname == HOSTILE[e.fingerprint]
                assert e.actor == f"alertmanager:{RECEIVER}"
                assert e.severity == ("S" * 4096 if e.fingerprint == "a4" else "critical")

    asyncio.run(check())
    figures(hostile_alerts_acked_while_the_chain_head_was_locked=len(HOSTILE))
