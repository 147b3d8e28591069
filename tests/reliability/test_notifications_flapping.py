"""Slack and SMTP flap — down, up, down, up — while the outbox is delivering: afterwards every
notification has arrived exactly once.

``tests/test_notifications_outage.py`` covers providers that are down and then come back (with
a kill -9 in between). Here they go down and come back several times *during* delivery, so
retries interleave with successes. Slack "down" answers 503 (as a load balancer would); SMTP
"down" stops listening (connections refused). Exactly once means: one top-level Slack message
per incident, one thread reply per remediation step, no text posted twice in a thread (updates
are idempotent and may be repeated by a retry), and one email per remediation outcome with
distinct Message-IDs.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from typing import Any

import pytest

from tests.reliability.conftest import Counters, Figures, Serve
from tests.reliability.support import alert, db_rows, payload
from tests.slackapi import SlackAPI
from tests.smtpserver import SMTPServer
from tests.waiting import wait_for

N = 12
SLACK_ENV = "REMEDIATOR_TEST_SLACK_TOKEN"


def flap(slack: SlackAPI, smtp: SMTPServer, rng: random.Random, cycles: int) -> int:
    """Take both providers down and up ``cycles`` times; the number of outages."""
    outages = 0
    for _ in range(cycles):
        slack.down()
        smtp.down()
        outages += 1
        time.sleep(rng.uniform(0.3, 0.7))
        slack.up()
        smtp.up()
        time.sleep(rng.uniform(0.2, 0.5))
    return outages


def test_flapping_slack_and_smtp_still_deliver_every_notification_exactly_once(
    serve: Serve, counters: Counters, figures: Figures, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = counters("app")
    rng = random.Random(11)
    with SlackAPI() as slack, SMTPServer() as smtp:
        monkeypatch.setenv(SLACK_ENV, slack.token)
        config: dict[str, Any] = {
            "health": {"enabled": False},
            "targets": [{"name": "app", "type": "process", "pidfile": str(app.pidfile)}],
            "playbooks": [
                {
                    "name": "nudge",
                    "match": ['alertname="AppStuck"'],
                    "target": "app",
                    "steps": [{"action": "process.signal", "signal": "SIGRTMIN"}],
                    "cooldown": "0s",
                    "max_per_window": None,
                    "retry": {"max_attempts": 1},
                }
            ],
            "notifications": {
                "slack": {
                    "api_url": slack.url,
                    "token_env": SLACK_ENV,
                    "channel": "#ops",
                    "pace": "0s",
                },
                "email": smtp.email_config().model_dump(mode="json"),
            },
        }
        served = serve(config, extra_env={SLACK_ENV: slack.token})
        outages = 0
        flapper_done = threading.Event()

        def flapper() -> None:
            nonlocal outages
            outages = flap(slack, smtp, rng, cycles=6)
            flapper_done.set()

        thread = threading.Thread(target=flapper, daemon=True)
        thread.start()
        for start in range(0, N, 4):
            batch = [
                alert(f"{i:016x}", "AppStuck", labels={"n": str(i)})
                for i in range(start, start + 4)
            ]
            assert served.post(payload(batch)) == 200
            time.sleep(0.3)
        thread.join(30)
        assert flapper_done.is_set()
        db = served.db_path

        def delivered() -> bool:
            [(total, sent)] = db_rows(db, "SELECT count(*), sum(state = 'sent') FROM outbox")
            return bool(total) and total == sent

        wait_for(delivered, timeout=90, what="every notification to be delivered", every=0.5)
        time.sleep(1.5)  # anything delivered twice would arrive now
        rows = Counter(channel for (channel,) in db_rows(db, "SELECT channel FROM outbox"))
        assert app.count() == N
        # Slack: one incident message each, one reply per step, nothing posted twice.
        top = [m for m in slack.messages if m.method == "chat.postMessage" and not m.thread_ts]
        replies = [m for m in slack.messages if m.method == "chat.postMessage" and m.thread_ts]
        assert len(top) == N
        assert len({m.ts for m in top}) == N
        assert Counter(m.thread_ts for m in replies) == Counter({m.ts: 1 for m in top})
        assert len({(m.thread_ts, m.text) for m in replies}) == len(replies)
        # Email: one message per remediation outcome, each Message-ID once.
        ids = Counter(m.message["Message-ID"] for m in smtp.messages)
        assert len(smtp.messages) == rows["email"] == N
        assert set(ids.values()) == {1}
        refused_slack = sum(1 for _, status in slack.requests if status == 503)
        failures = sum(
            1 for (n,) in db_rows(db, "SELECT attempts FROM outbox") for _ in range(max(n - 1, 0))
        )
    figures(
        remediations=N,
        outages=outages,
        slack_calls_refused=refused_slack,
        delivery_retries=failures,
        outbox_rows=dict(rows),
        slack_top_level=len(top),
        slack_replies=len(replies),
        emails=len(smtp.messages),
        duplicates=len(smtp.messages)
        - len(ids)
        + len(replies)
        - len(set(m.thread_ts for m in replies)),
    )
