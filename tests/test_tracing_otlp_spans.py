"""A served remediator's spans as a local OTLP/HTTP receiver decodes them: the webhook's
``traceparent`` continued through intake, decision, guards, attempt and step, with their
attributes and parent links (docs/tracing.md)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from tests.conftest import ALERTS, fixture_payload
from tests.serving import Served
from tests.test_tracing_otlp import Receiver

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def decoded(receiver: Receiver) -> list[dict[str, Any]]:
    """Every span received: name, trace id, span id, parent span id (hex) and attributes."""
    found = []
    for _, request in receiver.requests:
        for resource_spans in request.resource_spans:
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    attributes: dict[str, Any] = {}
                    for a in span.attributes:
                        kind = a.value.WhichOneof("value")
                        attributes[a.key] = getattr(a.value, kind) if kind else None
                    found.append(
                        {
                            "name": span.name,
                            "trace": span.trace_id.hex(),
                            "id": span.span_id.hex(),
                            "parent": span.parent_span_id.hex(),
                            "attributes": attributes,
                        }
                    )
    return found


def test_the_receiver_decodes_the_tree_of_one_alert_in_alertmanagers_trace(
    tmp_path: Path, tokens: dict[str, str], receiver: Receiver
) -> None:
    payload = fixture_payload("firing_single.json")
    alertname = payload["alerts"][0]["labels"]["alertname"]
    config = {
        "tracing": {"enabled": True, "otlp_endpoint": receiver.url},
        "health": {"enabled": False},
        "targets": [{"name": "web", "type": "docker_container"}],
        "playbooks": [
            {
                "name": "escalate-only",
                "match": [f'alertname="{alertname}"'],
                "target": "web",
                "steps": [{"action": "escalate", "reason": "traced"}],
                "cooldown": "0s",
            }
        ],
    }
    served = Served(tmp_path, config, tokens)
    served.start()
    try:
        answer = httpx.post(
            served.url + ALERTS,
            json=payload,
            headers={
                **served.headers("alertmanager"),
                "traceparent": f"00-{TRACE_ID}-{PARENT_SPAN}-01",
            },
        )
        assert answer.status_code == 200
        assert served.terminate() == 0  # SIGTERM: the worker drains, the exporter flushes
    finally:
        served.stop()
    spans = decoded(receiver)
    by_name: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        by_name.setdefault(span["name"], []).append(span)
    assert {"intake", "decision", "guard", "attempt", "step"} <= set(by_name), served.log()
    assert {span["trace"] for span in spans} == {TRACE_ID}
    (intake,) = by_name["intake"]
    (decision,) = by_name["decision"]
    (attempt,) = by_name["attempt"]
    (step,) = by_name["step"]
    assert intake["parent"] == PARENT_SPAN
    assert intake["attributes"]["new"] == 1
    assert decision["parent"] == intake["id"]
    assert decision["attributes"]["alertname"] == alertname
    assert len(by_name["guard"]) == 6
    assert {g["parent"] for g in by_name["guard"]} == {decision["id"]}
    assert attempt["parent"] == decision["id"]
    assert attempt["attributes"]["playbook"] == "escalate-only"
    assert attempt["attributes"]["attempt"] == 1
    assert attempt["attributes"]["outcome"] == "success"
    assert step["parent"] == attempt["id"]
    assert step["attributes"]["action"] == "escalate"
    assert step["attributes"]["target"] == "web"
    assert step["attributes"]["outcome"] == "success"
