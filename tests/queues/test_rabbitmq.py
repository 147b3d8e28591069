"""RabbitMQ queue recovery against the test RabbitMQ's management API (tests/services.sh)."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from remediator.checks.queue import QueueCheckResult, export_queues
from remediator.config.targets import Target
from remediator.metrics import Metrics
from tests.queues.actions import act, check, target
from tests.queues.conftest import Rabbit
from tests.realservices import load_services_env
from tests.waiting import wait_for


def rabbit_target(rabbit: Rabbit, tmp_path: Path, **extra: object) -> Target:
    secret = tmp_path / "rabbit-password"
    secret.write_text(rabbit.password + "\n", encoding="utf-8")
    return target(
        type="rabbitmq",
        name="broker",
        api_url=rabbit.api_url,
        username=rabbit.user,
        password_file=str(secret),
        vhost=rabbit.vhost,
        queues=["orders"],
        dead_letters={"orders": "orders.dlq"},
        **extra,
    )


def dead_letter(rabbit: Rabbit, count: int) -> list[str]:
    """``count`` messages published to ``orders``, rejected there and dead-lettered to
    ``orders.dlq`` by RabbitMQ itself."""
    rabbit.declare("orders.dlq")
    rabbit.declare(
        "orders", {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "orders.dlq"}
    )
    payloads = [f"order-{i}" for i in range(count)]
    for payload in payloads:
        rabbit.publish("orders", payload)
    body = {"count": count, "ackmode": "reject_requeue_false", "encoding": "auto"}
    assert len(rabbit.call("POST", f"/api/queues/{rabbit.v}/orders/get", body).json()) == count
    wait_for(lambda: rabbit.stats("orders.dlq").get("messages_ready") == count, what="dead letters")
    return payloads


def test_a_dead_letter_queue_is_requeued_to_its_source_without_losing_or_duplicating(
    rabbit: Rabbit, tmp_path: Path
) -> None:
    payloads = dead_letter(rabbit, 40)

    result = act(rabbit_target(rabbit, tmp_path), "queue.requeue_failed", queue="orders")

    assert result.ok, result.detail
    assert result.data["count"] == 40
    back = rabbit.take("orders", 1000)
    assert sorted(back) == sorted(payloads)  # every message once: none lost, none twice
    assert len(back) == len(set(back)) == 40
    assert rabbit.take("orders.dlq", 1000) == []


def test_max_jobs_bounds_a_rabbitmq_requeue(rabbit: Rabbit, tmp_path: Path) -> None:
    payloads = dead_letter(rabbit, 25)

    result = act(
        rabbit_target(rabbit, tmp_path), "queue.requeue_failed", queue="orders", max_jobs=10
    )

    assert result.ok and result.data["count"] == 10
    back, left = rabbit.take("orders", 1000), rabbit.take("orders.dlq", 1000)
    assert len(back) == 10 and len(left) == 15
    assert sorted(back + left) == sorted(payloads)


def test_a_rabbitmq_purge_is_refused_without_allow_purge(rabbit: Rabbit, tmp_path: Path) -> None:
    rabbit.declare("orders")
    for i in range(6):
        rabbit.publish("orders", f"m{i}")
    wait_for(lambda: rabbit.stats("orders").get("messages_ready") == 6, what="6 messages")

    refused = act(rabbit_target(rabbit, tmp_path), "queue.purge", queue="orders")

    assert not refused.ok and "allow_purge" in refused.detail
    assert len(rabbit.take("orders", 100, requeue=True)) == 6
    done = act(rabbit_target(rabbit, tmp_path, allow_purge=True), "queue.purge", queue="orders")
    assert done.ok
    assert rabbit.take("orders", 100) == []


def test_the_rabbitmq_health_metrics_match_the_real_counts(rabbit: Rabbit, tmp_path: Path) -> None:
    dead_letter(rabbit, 3)
    for i in range(9):
        rabbit.publish("orders", f"m{i}")
    wait_for(lambda: rabbit.stats("orders").get("messages_ready") == 9, what="9 messages")

    result = check(rabbit_target(rabbit, tmp_path))
    metrics = Metrics()
    export_queues(metrics, "broker", result)

    assert isinstance(result, QueueCheckResult)
    assert not result.healthy  # no consumer: paused
    value = metrics.registry.get_sample_value
    labels = {"target": "broker", "queue": "orders"}
    assert value("remediator_queue_jobs", {**labels, "state": "queued"}) == 9
    assert value("remediator_queue_jobs", {**labels, "state": "failed"}) == 3
    assert value("remediator_queue_consumers", labels) == 0
    assert value("remediator_queue_paused", labels) == 1
    assert len(rabbit.take("orders", 100)) == 9 and len(rabbit.take("orders.dlq", 100)) == 3


def _listeners(port: int) -> set[str]:
    """The local addresses (hex, as /proc/net/tcp{,6} write them) listening on ``port``."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text(encoding="ascii").splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].rsplit(":", 1)
            if int(hex_port, 16) == port and fields[3] == "0A":  # LISTEN
                found.add(address)
    return found


def test_the_test_rabbitmq_listens_on_loopback_only(rabbit_session: tuple[str, str, str]) -> None:
    env = {**load_services_env(), **os.environ}
    loopback = {"0100007F", "00000000000000000000000001000000"}  # 127.0.0.1, ::1
    for url in (env["RABBITMQ_API_URL"], env["RABBITMQ_AMQP_URL"]):
        port = urlsplit(url).port
        assert port is not None
        listening = _listeners(port)
        assert listening and listening <= loopback, (url, listening)
