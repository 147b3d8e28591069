"""Operated like Prometheus: liveness and readiness apart, POST /-/reload, self-monitoring.

The served process keeps its store in a real PostgreSQL reached through a TCP proxy the test
owns: stopping the proxy is a real database outage (connections cut, new ones refused).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx2 as httpx
import pytest
import yaml

from remediator import reload
from remediator.clock import FakeClock
from remediator.config.model import AlertmanagerConfig
from remediator.engine.reconcile import Reconciler
from remediator.metrics import Metrics
from remediator.store import create_store
from tests.alertmanager import Alertmanager
from tests.conftest import AppHarness, fixture_payload
from tests.reliability.support import Proxy
from tests.serving import Served

ALERTS = "/api/v1/recovery/alerts"


def _via(dsn: str, port: int) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit(":", 1)[0] + f":{port}"))


def _sample(text: str, name: str, **labels: str) -> float | None:
    """One sample of a /metrics exposition, by name and exact labels."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    series = f"{name}{{{want}}}" if labels else name
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        if key == series:
            return float(value)
    return None


def _until(check: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


@pytest.fixture
def proxied_postgres(pg_database: str) -> Iterator[tuple[Proxy, str]]:
    port = urlsplit(pg_database).port
    assert port is not None
    proxy = Proxy(port)
    proxy.start()
    yield proxy, _via(pg_database, proxy.port)
    proxy.close()


def test_a_store_outage_makes_the_process_unready_but_not_unhealthy(
    tmp_path: Path, tokens: dict[str, str], proxied_postgres: tuple[Proxy, str]
) -> None:
    proxy, dsn = proxied_postgres
    served = Served(tmp_path, {"health": {"enabled": False}, "store": {"url": dsn}}, tokens)
    served.start()
    try:
        healthy = httpx.get(f"{served.url}/-/healthy", timeout=5)
        assert healthy.status_code == 200 and healthy.json()["status"] == "healthy"
        assert httpx.get(f"{served.url}/-/ready", timeout=5).json()["status"] == "ready"

        proxy.stop()  # the database goes away
        assert _until(lambda: httpx.get(f"{served.url}/-/ready", timeout=10).status_code == 503)
        down = httpx.get(f"{served.url}/-/ready", timeout=10)
        assert down.json() == {"status": "not ready", "reason": "store unavailable"}
        assert httpx.get(f"{served.url}/-/healthy", timeout=5).status_code == 200
        # The old, store-dependent health endpoint is what used to restart every pod.
        assert httpx.get(f"{served.url}/api/v1/recovery/health", timeout=10).status_code == 503

        proxy.start()
        assert _until(lambda: httpx.get(f"{served.url}/-/ready", timeout=10).status_code == 200)
    finally:
        served.stop()


def test_post_reload_reads_the_file_again_and_metrics_say_whether_it_worked(
    tmp_path: Path, tokens: dict[str, str]
) -> None:
    served = Served(tmp_path, {"health": {"enabled": False}}, tokens)
    served.start()
    try:
        url = f"{served.url}/-/reload"
        first = _sample(
            httpx.get(f"{served.url}/metrics").text,
            "remediator_config_last_reload_success_timestamp_seconds",
        )
        assert first is not None and abs(first - time.time()) < 60
        assert httpx.post(url, timeout=5).status_code == 401
        assert httpx.post(url, headers=served.headers("viewer"), timeout=5).status_code == 403

        data = yaml.safe_load(served.config_path.read_text())
        data["patterns"] = [{"id": "disk_io", "pattern": "iowait", "category": "disk"}]
        served.config_path.write_text(yaml.safe_dump(data))
        applied = httpx.post(url, headers=served.headers("admin"), timeout=10)
        assert applied.status_code == 200, applied.text
        assert applied.json()["version"] == 2 and applied.json()["changed"] is True
        metrics = httpx.get(f"{served.url}/metrics").text
        assert _sample(metrics, "remediator_config_last_reload_successful") == 1
        reloaded = _sample(metrics, "remediator_config_last_reload_success_timestamp_seconds")
        assert reloaded is not None and reloaded >= first

        served.config_path.write_text("playbooks: [")
        refused = httpx.post(url, headers=served.headers("admin"), timeout=10)
        assert refused.status_code == 422 and refused.json()["error"]["details"], refused.text
        metrics = httpx.get(f"{served.url}/metrics").text
        assert _sample(metrics, "remediator_config_last_reload_successful") == 0
        assert (
            _sample(metrics, "remediator_config_last_reload_success_timestamp_seconds") == reloaded
        )
        patterns = httpx.get(
            f"{served.url}/api/v1/recovery/patterns", headers=served.headers("admin"), timeout=5
        )
        assert "disk_io" in {p["id"] for p in patterns.json()["patterns"]}
    finally:
        assert served.terminate() == 0


def test_reload_without_a_configuration_file_is_a_conflict(
    harness: AppHarness, headers: Callable[[str], dict[str, str]]
) -> None:
    answer = harness.client.post("/-/reload", headers=headers("admin"))
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "NO_CONFIG_FILE"


def test_a_failed_sighup_reload_sets_the_gauge_to_zero(harness: AppHarness, tmp_path: Path) -> None:
    rt = harness.runtime
    path = tmp_path / "broken.yml"
    path.write_text("playbooks: [")
    portal = harness.client.portal
    assert portal is not None
    assert portal.call(reload.reload_file, rt, path) is None
    assert rt.metrics.registry.get_sample_value("remediator_config_last_reload_successful") == 0


def test_webhooks_refused_with_a_4xx_are_counted_by_reason(
    harness: AppHarness, headers: Callable[[str], dict[str, str]]
) -> None:
    client = harness.client
    registry = harness.runtime.metrics.registry

    def rejected(reason: str) -> float | None:
        return registry.get_sample_value("remediator_webhook_rejected_total", {"reason": reason})

    assert rejected("UNAUTHORIZED") == 0 and rejected("MALFORMED_JSON") == 0
    assert client.post(ALERTS, json=fixture_payload("firing_single.json")).status_code == 401
    bad = client.post(ALERTS, content=b"{", headers=headers("alertmanager"))
    assert bad.status_code == 400
    wrong = client.post(ALERTS, json={"version": "4"}, headers=headers("alertmanager"))
    assert wrong.status_code == 422
    assert client.post(ALERTS, json=fixture_payload("firing_single.json"),
                       headers=headers("viewer")).status_code == 403  # fmt: skip
    good = client.post(ALERTS, json=fixture_payload("firing_single.json"),
                       headers=headers("alertmanager"))  # fmt: skip
    assert good.status_code == 200
    assert (rejected("UNAUTHORIZED"), rejected("MALFORMED_JSON"), rejected("VALIDATION_FAILED"),
            rejected("FORBIDDEN")) == (1, 1, 1, 1)  # fmt: skip


def test_process_and_gc_collectors_and_build_info_are_exported(harness: AppHarness) -> None:
    text = harness.client.get("/metrics").text
    assert (_sample(text, "process_resident_memory_bytes") or 0) > 0
    assert (_sample(text, "process_open_fds") or 0) > 0
    assert _sample(text, "python_gc_collections_total", generation="0") is not None
    assert any(line.startswith("remediator_build_info{") for line in text.splitlines())


@pytest.mark.prometheus
def test_reconcile_rounds_are_counted_by_outcome(tmp_path: Path, alertmanager_bin: str) -> None:
    am = Alertmanager(alertmanager_bin, tmp_path / "am")
    try:

        async def main() -> dict[str, Any]:
            store = create_store(f"sqlite:///{tmp_path}/s.db")
            await store.open()
            metrics = Metrics()

            def count(outcome: str) -> float | None:
                return metrics.registry.get_sample_value(
                    "remediator_reconcile_rounds_total", {"outcome": outcome}
                )

            def reconciler(url: str, owner: str) -> Reconciler:
                return Reconciler(
                    settings=AlertmanagerConfig(url=url, reconcile_interval=60.0),
                    store=store, clock=FakeClock(start=time.time()), metrics=metrics, owner=owner,
                )  # fmt: skip

            seen: dict[str, Any] = {"before": count("failure")}
            good = reconciler(am.url, "a")
            assert (await good.run_once()).ok
            other = reconciler(am.url, "b")  # the lease is a's: b stands by
            assert (await other.run_once()).leader is False
            am.stop()
            assert not (await good.run_once()).ok  # Alertmanager is gone
            seen.update(success=count("success"), standby=count("standby"),
                        failure=count("failure"))  # fmt: skip
            for r in (good, other):
                await r.stop()
            await store.close()
            return seen

        seen = asyncio.run(main())
        assert seen == {"before": 0, "success": 1, "standby": 1, "failure": 1}
    finally:
        am.stop()
