"""The ``retention`` section: each table's setting, its floor, and the guards' windows it must
cover (the cooldown and ``max_per_window`` count the remediations retention keeps)."""

from __future__ import annotations

from typing import Any

import pytest

from remediator.config.model import parse
from remediator.errors import ConfigError

TARGET = {"name": "web", "type": "process", "pidfile": "/run/web.pid"}


def playbook(**fields: Any) -> dict[str, Any]:
    return {"name": "p", "match": ['alertname="X"'], "target": "web",
            "steps": [{"action": "process.signal", "signal": "SIGHUP"}], **fields}  # fmt: skip


def test_each_table_has_its_own_retention_with_defaults() -> None:
    cfg = parse({"retention": {"inbox": "2d", "outbox": "36h"}})
    assert (cfg.retention.inbox, cfg.retention.outbox) == (2 * 86400.0, 36 * 3600.0)
    assert (cfg.retention.episodes, cfg.retention.remediations) == (90 * 86400.0, 90 * 86400.0)


def test_a_retention_shorter_than_an_hour_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        parse({"retention": {"inbox": "10m"}})
    assert "keep finished rows at least 1h" in str(caught.value)


@pytest.mark.parametrize(
    "fields",
    [{"cooldown": "3d"}, {"max_per_window": {"count": 5, "window": "3d"}}],
)
def test_a_guard_window_longer_than_the_remediations_kept_is_refused(
    fields: dict[str, Any],
) -> None:
    data = {
        "targets": [TARGET],
        "playbooks": [playbook(**fields)],
        "retention": {"remediations": "2d"},
    }
    with pytest.raises(ConfigError) as caught:
        parse(data)
    assert "playbooks[0]: its cooldown and max_per_window.window must not exceed" in str(
        caught.value
    )
    parse({**data, "retention": {"remediations": "3d"}})
