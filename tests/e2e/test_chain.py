"""The whole chain, by itself: a leak breaches the rule, Prometheus fires, Alertmanager posts to
remediator with its bearer token, remediator restarts the container, the metric drops, the alert
resolves, Alertmanager posts the resolution and remediator records the recovery with a real MTTR.

Nothing is posted by the test: it only starts the stack (tests/e2e/stack.py) and watches. The
chain runs once per module (the ``chain`` fixture); each test asserts on what it recorded.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

import httpx2 as httpx
import pytest

from tests.e2e.stack import (
    ALERTNAME,
    PLAYBOOK,
    REMEDIATOR_JOB,
    RULE_FOR_SECONDS,
    ChainResult,
    Leak,
    Stack,
)
from tests.slackapi import SlackAPI
from tests.smtpserver import SMTPServer
from tests.waiting import wait_for

SLACK_TOKEN_ENV: Final = "REMEDIATOR_E2E_SLACK_TOKEN"
SLACK_CHANNEL: Final = "#alerts"
ONCALL: Final = "oncall@example.test"
# Seconds from the container's start until usage/limit passes the threshold. Long enough for
# remediator, Alertmanager and Prometheus to start, short enough to keep the test quick; the
# next breach after the restart comes as late, after every assertion here.
BREACH_AFTER: Final = 10.0


@dataclass
class ChainRun:
    stack: Stack
    result: ChainResult
    slack: SlackAPI
    smtp: SMTPServer
    seconds: float  # from starting the stack until every link of the chain was seen


@pytest.fixture(scope="module")
def chain(
    tmp_path_factory: pytest.TempPathFactory,
    docker_host: str,
    test_image: str,
    prometheus_bin: str,
    alertmanager_bin: str,
) -> Iterator[ChainRun]:
    began = time.monotonic()
    with SlackAPI() as slack, SMTPServer() as smtp:
        stack = Stack(
            workdir=tmp_path_factory.mktemp("e2e"),
            docker_host=docker_host,
            image=test_image,
            prometheus_bin=prometheus_bin,
            alertmanager_bin=alertmanager_bin,
            leak=Leak(breach_after=BREACH_AFTER),
            notifications={
                "slack": {
                    "api_url": slack.url,
                    "token_env": SLACK_TOKEN_ENV,
                    "channel": SLACK_CHANNEL,
                },
                "email": {
                    "host": smtp.host,
                    "port": smtp.port,
                    "tls": "none",
                    "sender": "remediator@example.test",
                    "to": [ONCALL],
                    "timeout": "5s",
                },
            },
            extra_env={SLACK_TOKEN_ENV: slack.token},
        )
        with stack:
            result = stack.follow_chain()
            yield ChainRun(stack, result, slack, smtp, time.monotonic() - began)


def test_the_chain_runs_by_itself(chain: ChainRun) -> None:
    stack, result = chain.stack, chain.result
    print()
    print(result.format_timeline())
    print(f"chain complete {chain.seconds:.1f}s after the stack began starting")

    # 1. The rule fired in Prometheus, on our container, with the project rule's labels.
    alert = result.prometheus_alert
    assert alert["state"] == "firing"
    assert alert["labels"]["container"] == result.target
    assert alert["labels"]["severity"] == "warning"
    assert float(alert["value"]) > result.threshold
    assert result.leak_started < result.breach < result.firing_seen

    # 2. remediator received it from Alertmanager, as Alertmanager sent it.
    received = result.received
    assert received["actor"] == "alertmanager:remediator"
    assert received["status"] == "firing"
    assert received["alertname"] == ALERTNAME
    # Prometheus sends the moment the alert fired as startsAt: its activeAt plus ``for``.
    assert result.breach + RULE_FOR_SECONDS - 1e-3 <= result.starts_at <= result.firing_seen
    assert result.starts_at < float(received["ts"])
    # ... with the bearer token from the credentials_file: every webhook call was accepted.
    codes = webhook_codes(stack.remediator.metrics())
    assert codes.get("200", 0) >= 2, codes  # the firing and the resolved notification
    assert {code for code, n in codes.items() if n} == {"200"}, codes  # others exported at 0
    # Alertmanager's side: both notifications delivered. A failed attempt (a transport error:
    # remediator counted no error answer) is retried by Alertmanager; it is reported, not fatal.
    attempts = alertmanager_metric(stack, "alertmanager_notifications_total", "webhook")
    failed = alertmanager_metric(stack, "alertmanager_notifications_failed_total", "webhook")
    assert attempts - failed >= 2, stack.diagnostics()
    if failed:
        print(f"note: {failed:.0f} of {attempts:.0f} webhook attempts failed and were retried")

    # 3. The container was restarted, once: the engine's own event stream says so.
    assert result.restart["outcome"] == "success"
    assert result.restart["target"] == result.target
    assert result.restart["playbook"] == PLAYBOOK
    assert result.verified["outcome"] == "success"
    assert result.restarts == 1
    assert result.started_at_after != result.started_at_before
    assert float(received["ts"]) < result.restarted_at
    stack.container.reload()
    assert stack.container.attrs["State"]["Running"]

    # 4. The metric dropped, as Prometheus scraped it after the restart.
    assert result.ratio_peak > result.threshold > result.ratio_after
    assert result.ratio_after_at > result.restarted_at

    # 5. The alert resolved after the restart, and Alertmanager told remediator.
    resolved = result.resolved
    assert resolved["actor"] == "alertmanager:remediator"
    assert resolved["status"] == "resolved"
    assert result.restarted_at < result.ends_at < float(resolved["ts"])
    assert stack.prometheus_alert("pending") is None

    # 6. service:recovered carries the real MTTR: endsAt - startsAt as Alertmanager sent them.
    recovered = result.recovered
    assert recovered["target"] == result.target
    assert recovered["playbook"] == PLAYBOOK
    assert result.mttr == pytest.approx(result.ends_at - result.starts_at, abs=1e-6)
    assert 0 < result.mttr < 60

    # One remediation, nothing skipped, failed or escalated.
    fingerprint = result.fingerprint
    assert len(stack.remediator.events("recovery:started", fingerprint=fingerprint)) == 1
    for kind in ("recovery:skipped", "recovery:failed", "recovery:escalated"):
        assert stack.remediator.events(kind, fingerprint=fingerprint) == [], kind


def test_prometheus_scrapes_remediator_and_sees_the_recovery(chain: ChainRun) -> None:
    prometheus = chain.stack.prometheus
    assert prometheus.value(f'up{{job="{REMEDIATOR_JOB}"}}') == 1.0
    restarts = (
        f'remediator_action_attempts_total{{job="{REMEDIATOR_JOB}", playbook="{PLAYBOOK}", '
        'action="docker.restart", outcome="success"}'
    )
    recoveries = f'sum(remediator_time_to_recovery_seconds_count{{job="{REMEDIATOR_JOB}", playbook="{PLAYBOOK}"}})'
    wait_for(lambda: prometheus.value(restarts) == 1.0, timeout=10, what=restarts)
    wait_for(lambda: prometheus.value(recoveries) == 1.0, timeout=10, what=recoveries)


# The chain fixture already runs with notifications.slack pointing at the
# Slack stand-in (token in $REMEDIATOR_E2E_SLACK_TOKEN) and notifications.email at a real aiosmtpd
# server; passes against the outbox of commit aeaaa0a (run it with
# ``pytest tests/e2e -o python_functions="test pending_test"``).
def test_the_chain_notifies_slack_and_email(chain: ChainRun) -> None:
    result, slack, smtp = chain.result, chain.slack, chain.smtp
    remediator = chain.stack.remediator

    wait_for(
        lambda: remediator.events("recovery:succeeded", fingerprint=result.fingerprint) or None,
        timeout=30,
        what="recovery:succeeded",
        every=0.25,
    )
    # The email goes out for recovery:succeeded, the incident's last event; Slack writes are
    # paced (1/s per channel), so wait until they stop coming.
    wait_for(lambda: smtp.to(ONCALL) or None, timeout=30, what=f"an email to {ONCALL}")
    settle(lambda: len(slack.messages), quiet=2.5, timeout=30, what="Slack messages to settle")

    # Slack: one message for the incident in the configured channel, updated as it moved, the
    # steps threaded under it, ending recovered; every call accepted.
    channel = slack.channel_id(SLACK_CHANNEL)
    assert {m.channel for m in slack.messages} == {channel}
    assert [status for _, status in slack.requests if status != 200] == []
    [incident] = [m for m in slack.messages if m.method == "chat.postMessage" and not m.thread_ts]
    assert ALERTNAME in incident.text and result.target in incident.text, incident.text
    updates = [m for m in slack.messages if m.method == "chat.update" and m.ts == incident.ts]
    assert updates, "the incident message was never updated"
    assert "[RECOVERED]" in updates[-1].text, updates[-1].text
    replies = [m.text for m in slack.messages if m.thread_ts == incident.ts]
    assert any(result.target in text for text in replies), replies  # "restarted container ..."

    # Email: one message to the on-call address, for the outcome of the remediation.
    [mail] = smtp.to(ONCALL)
    assert str(mail.message["Subject"]) == f"[RECOVERED] {ALERTNAME} on {result.target}"


# `remediator audit verify` on the chain's store, exactly as an operator would run it.
def test_the_audit_log_of_the_chain_verifies(chain: ChainRun) -> None:
    remediator = chain.stack.remediator
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "remediator",
            "audit",
            "verify",
            "--config",
            str(remediator.config_path),
        ],
        cwd=remediator.workdir,
        env=remediator.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "intact" in done.stdout, done.stdout


# ------------------------------------------------------------------------------------------------


_SAMPLE = re.compile(r'^remediator_webhook_requests_total\{code="(\d+)"\} ([0-9.e+]+)$', re.M)


def webhook_codes(metrics: str) -> dict[str, float]:
    """remediator_webhook_requests_total by code, from remediator's /metrics."""
    return {code: float(value) for code, value in _SAMPLE.findall(metrics)}


def settle(count: Callable[[], int], *, quiet: float, timeout: float, what: str) -> None:
    """Wait until ``count()`` has not changed for ``quiet`` seconds."""
    deadline = time.monotonic() + timeout
    last, since = count(), time.monotonic()
    while time.monotonic() - since < quiet:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)
        now = count()
        if now != last:
            last, since = now, time.monotonic()


def alertmanager_metric(stack: Stack, name: str, integration: str) -> float:
    """A counter of Alertmanager's own /metrics, for one integration."""
    text = httpx.get(stack.alertmanager.url + "/metrics", timeout=5).text
    pattern = re.compile(
        rf'^{name}\{{[^}}]*integration="{integration}"[^}}]*\}} ([0-9.e+]+)$', re.M
    )
    values = [float(v) for v in pattern.findall(text)]
    assert values, f"{name}{{integration={integration!r}}} not in Alertmanager's metrics"
    return sum(values)
