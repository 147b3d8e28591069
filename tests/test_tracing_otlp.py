"""A served remediator exports its spans by OTLP/HTTP to a receiver on 127.0.0.1 that decodes
them with the protobuf classes, only when tracing is enabled."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.conftest import ALERTS, fixture_names, fixture_payload
from tests.serving import Served


class Receiver:
    """An OTLP/HTTP traces endpoint: every request decoded, with its headers."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], ExportTraceServiceRequest]] = []
        received = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                received.append(({k.lower(): v for k, v in self.headers.items()}, request))
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def spans(self) -> list[tuple[str, str]]:
        """(service.name, span name) of every span received."""
        found = []
        for _, request in self.requests:
            for resource_spans in request.resource_spans:
                service = next(
                    a.value.string_value
                    for a in resource_spans.resource.attributes
                    if a.key == "service.name"
                )
                for scope in resource_spans.scope_spans:
                    found += [(service, span.name) for span in scope.spans]
        return found

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _one_alert(tmp_path: Path, tokens: dict[str, str], config: dict[str, Any]) -> None:
    served = Served(tmp_path, config, tokens)
    served.start()
    try:
        payload = fixture_payload(fixture_names()[0])
        answer = httpx.post(
            served.url + ALERTS, json=payload, headers=served.headers("alertmanager")
        )
        assert answer.status_code == 200
        assert served.terminate() == 0  # SIGTERM: the worker drains, the exporter flushes
    finally:
        served.stop()


@pytest.mark.parametrize("enabled", [True, False])
def test_spans_reach_a_local_otlp_receiver_only_when_tracing_is_enabled(
    tmp_path: Path,
    tokens: dict[str, str],
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    enabled: bool,
) -> None:
    monkeypatch.setenv("OTLP_TEST_AUTHORIZATION", "Bearer otlp-test")
    tracing = {
        "enabled": enabled,
        "otlp_endpoint": receiver.url,
        "headers_env": {"Authorization": "OTLP_TEST_AUTHORIZATION"},
        "service_name": "remediator-otlp-test",
    }
    _one_alert(tmp_path, tokens, {"tracing": tracing})
    if not enabled:
        assert receiver.requests == []
        return
    assert ("remediator-otlp-test", "decision") in receiver.spans()
    assert {headers["authorization"] for headers, _ in receiver.requests} == {"Bearer otlp-test"}
