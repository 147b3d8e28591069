"""Issue 20: what an attacker reaches through the probes, the reload endpoint and the new
self-monitoring.

Against a real served process:

- webhook requests an attacker shapes (forged tokens, bodies that are not JSON or not a
  payload, alert text posing as metric labels, a body over the limit) are refused with a 4xx
  before anything is stored, and each is counted in ``remediator_webhook_rejected_total`` under
  one of the fixed error codes: no request text ever becomes a label value;
- ``POST /-/reload`` without the admin role (no token, a guessed or forged one, the
  alertmanager or viewer token) is refused before the configuration file is read: a changed
  file stays unapplied and the reload metrics do not move;
- ``/-/healthy`` and ``/-/ready`` answer reads only.
"""

from __future__ import annotations

import base64
import re

import httpx2 as httpx
import yaml

from tests.reliability.conftest import Serve
from tests.reliability.support import ALERTS, alert, payload

# The error codes a webhook can be refused with (remediator/metrics.py: WEBHOOK_REJECTIONS).
REASONS = {"MALFORMED_JSON", "VALIDATION_FAILED", "UNAUTHORIZED", "FORBIDDEN",
           "PAYLOAD_TOO_LARGE", "RATE_LIMITED"}  # fmt: skip
SAMPLE = re.compile(r'^remediator_webhook_rejected_total\{reason="(?P<reason>[^"]*)"\} (?P<v>\S+)$')


def test_hostile_webhooks_and_reloads_touch_nothing(serve: Serve) -> None:
    served = serve({"health": {"enabled": False}, "server": {"max_body_bytes": 4096}})
    url = served.url
    am = served.headers("alertmanager")
    posing = alert(
        "f00d",
        'HostDown"} 1\nremediator_webhook_rejected_total{reason="pwned',
        labels={"reason": "pwned", "code": "200"},
        annotations={"summary": '"} 1\n# EOF'},
    )
    attempts: list[tuple[dict[str, str], bytes]] = [
        ({}, b"{}"),  # no token
        ({"Authorization": "Bearer " + served.tokens["alertmanager"][:-1] + "x"}, b"{}"),
        ({"Authorization": 'Bearer reason="pwned"} 1 X-Injected'}, b"{}"),
        ({"Authorization": "Basic " + base64.b64encode(b"admin:admin").decode()}, b"{}"),
        (served.headers("viewer"), yaml.safe_dump(payload([posing])).encode()),  # role, YAML
        (am, b'{"version": "4", "alerts": "' + b"A" * 8192 + b'"}'),  # over max_body_bytes
        (am, b'{"version": "4", "status": "firing", "alerts": [{"labels": 7}]}'),
        (am, b'["reason", "pwned"]'),
        (am, b'{"receiver": "x", "alerts": [' + b"{" * 50),
    ]
    statuses = []
    for headers, body in attempts:
        answer = httpx.post(url + ALERTS, content=body, headers=headers, timeout=10)
        statuses.append(answer.status_code)
    assert all(400 <= s < 500 for s in statuses), statuses

    metrics = httpx.get(url + "/metrics", timeout=5).text
    counted = {
        m["reason"]: float(m["v"]) for line in metrics.splitlines() if (m := SAMPLE.match(line))
    }
    assert set(counted) == REASONS, counted
    assert sum(counted.values()) == len(attempts)
    assert "pwned" not in metrics and "X-Injected" not in metrics
    assert served.events("alert:received") == []

    # A valid, changed file is on disk; nobody but an admin may make remediator read it.
    data = yaml.safe_load(served.config_path.read_text())
    data["patterns"] = [{"id": "planted", "pattern": ".*", "category": "memory"}]
    served.config_path.write_text(yaml.safe_dump(data))
    before = served.metric("remediator_config_last_reload_success_timestamp_seconds")
    for headers in (
        {},
        am,
        served.headers("viewer"),
        {"Authorization": "Bearer " + served.tokens["admin"] + "x"},
        {"Authorization": "Basic " + base64.b64encode(b"admin:" + b"a" * 32).decode()},
    ):
        refused = httpx.post(url + "/-/reload", headers=headers, timeout=10)
        assert refused.status_code in (401, 403, 429), refused.text
        assert refused.json()["error"]["code"] in ("UNAUTHORIZED", "FORBIDDEN", "RATE_LIMITED")
    assert served.metric("remediator_config_last_reload_success_timestamp_seconds") == before
    assert served.metric("remediator_config_last_reload_successful") == 1
    assert served.events("config:changed") == []
    assert "planted" not in served.log()

    for path in ("/-/healthy", "/-/ready"):
        assert httpx.get(url + path, timeout=5).status_code == 200
        written = httpx.post(url + path, content=b"{}", headers=served.headers("admin"), timeout=5)
        assert (
            written.status_code == 405 and written.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
        )
