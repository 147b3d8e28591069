"""Webhook bodies built from the real Alertmanager payloads in ``tests/fixtures/alertmanager``.

The fixture ``firing_single.json`` (one ``HighMemoryUsage`` alert, version 4) is used as is,
with two changes: a ``container`` label naming the registered target the benchmark playbook acts
on, and, where the benchmark wants new alerts, a fresh 16-hex-digit fingerprint per alert.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any, Final

from bench.procs import ROOT, BenchError

FIXTURE: Final = "firing_single.json"
FINGERPRINT_MARK: Final = "__FP__"
CONTAINER_MARK: Final = "__CT__"


def fixtures_dir() -> Path:
    """``$BENCH_FIXTURES_DIR``, else the repository's ``tests/fixtures/alertmanager``."""
    configured = os.environ.get("BENCH_FIXTURES_DIR")
    return Path(configured) if configured else ROOT / "tests" / "fixtures" / "alertmanager"


def fixture(name: str = FIXTURE) -> dict[str, Any]:
    path = fixtures_dir() / name
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BenchError(
            f"cannot read the Alertmanager fixture {path}: {exc.strerror} "
            "(set BENCH_FIXTURES_DIR to the folder of the fixtures)"
        ) from None
    return data


def template_alert() -> dict[str, Any]:
    alerts = fixture()["alerts"]
    if len(alerts) != 1:
        raise BenchError(f"{FIXTURE} should hold one alert, it holds {len(alerts)}")
    alert: dict[str, Any] = alerts[0]
    return alert


def alert(fingerprint: str, container: str) -> dict[str, Any]:
    """The fixture's alert with this fingerprint and ``container`` label."""
    one = copy.deepcopy(template_alert())
    one["fingerprint"] = fingerprint
    one["labels"]["container"] = container
    return one


def notification(alerts: list[dict[str, Any]], group: str) -> dict[str, Any]:
    """The fixture's notification around these alerts, with its own group key."""
    body = fixture()
    body["alerts"] = alerts
    body["groupKey"] = f'{{}}:{{alertname="HighMemoryUsage", bench="{group}"}}'
    body["groupLabels"] = {**body["groupLabels"], "bench": group}
    return body


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def single(fingerprint: str, container: str) -> bytes:
    """One notification with one alert, as bytes."""
    return encode(notification([alert(fingerprint, container)], group=fingerprint))


def marked_template() -> str:
    """One notification with one alert whose fingerprint and container are placeholders (the
    wrk script substitutes them per request)."""
    return encode(notification([alert(FINGERPRINT_MARK, CONTAINER_MARK)], group="wrk")).decode()


def fingerprint(space: int, number: int) -> str:
    """A 16-hex-digit fingerprint, distinct for every (space < 256, number < 2**56)."""
    return f"{space:02x}{number:014x}"
