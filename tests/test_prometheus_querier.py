"""The Prometheus querier's transport: TLS verified by default against a real Prometheus
served over HTTPS, credentials and extra headers sent, templates checked at load, and
``check-config`` warning about ``insecure_skip_verify``."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from urllib3.exceptions import InsecureRequestWarning

from remediator import cli
from remediator.config import model as config_mod
from remediator.config.promql import compile_query, escape
from remediator.config.steps import VerifyPrometheus
from remediator.engine.prometheus import PrometheusQuerier
from remediator.errors import ConfigError
from tests.realservices import free_port


@pytest.fixture(scope="module")
def tls_prometheus(
    tmp_path_factory: pytest.TempPathFactory, prometheus_bin: str
) -> Iterator[tuple[str, Path]]:
    """A real Prometheus answering only HTTPS, with a self-signed certificate for 127.0.0.1;
    yields its URL and the certificate (the CA file to trust)."""
    work = tmp_path_factory.mktemp("tls-prometheus")
    cert, key = work / "cert.pem", work / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    web = work / "web.yml"
    web.write_text(
        yaml.safe_dump({"tls_server_config": {"cert_file": str(cert), "key_file": str(key)}})
    )
    conf = work / "prometheus.yml"
    conf.write_text(yaml.safe_dump({"global": {"scrape_interval": "1s"}, "scrape_configs": []}))
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    with (work / "log").open("wb") as log:
        proc = subprocess.Popen(
            [prometheus_bin, f"--config.file={conf}", f"--storage.tsdb.path={work / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", f"--web.config.file={web}"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{url}/-/ready", verify=str(cert), timeout=1).ok:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, (work / "log").read_text()
            time.sleep(0.1)
        yield url, cert
    finally:
        proc.terminate()
        proc.wait(10)


def _ask(settings: config_mod.PrometheusConfig, promql: str = "vector(5)") -> Any:
    querier = PrometheusQuerier(settings, env={"PROM_TOKEN": "s3cret-token"})

    async def main() -> Any:
        try:
            return await querier(promql)
        except Exception as exc:
            return exc

    try:
        return asyncio.run(main())
    finally:
        querier.close()


def test_tls_is_verified_by_default_and_a_ca_file_or_an_explicit_skip_lets_it_through(
    tls_prometheus: tuple[str, Path],
) -> None:
    url, cert = tls_prometheus
    refused = _ask(config_mod.PrometheusConfig(url=url, timeout=5))
    assert isinstance(refused, requests.exceptions.SSLError)
    assert _ask(config_mod.PrometheusConfig(url=url, timeout=5, ca_file=str(cert))) == (5.0,)
    skipped = config_mod.PrometheusConfig(url=url, timeout=5, insecure_skip_verify=True)
    with pytest.warns(InsecureRequestWarning):  # urllib3 still says so, once per place
        assert _ask(skipped) == (5.0,)


class Recording:
    """Answers ``/api/v1/query`` with one series and keeps each request's headers."""

    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []
        recording = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                recording.headers.append(dict(self.headers))
                body = json.dumps(
                    {"status": "success", "data": {"resultType": "vector", "result": [
                        {"metric": {}, "value": [1, "1"]}]}}
                ).encode()  # fmt: skip
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def recording() -> Iterator[Recording]:
    served = Recording()
    yield served
    served.server.shutdown()
    served.server.server_close()


def test_a_bearer_token_basic_auth_and_extra_headers_are_sent(
    recording: Recording, tmp_path: Path
) -> None:
    bearer = config_mod.PrometheusConfig(
        url=recording.url, bearer_token_env="PROM_TOKEN", headers={"X-Scope-OrgID": "team-a"}
    )
    assert _ask(bearer) == (1.0,)
    (tmp_path / "password").write_text("pa55word\n")
    (tmp_path / "password").chmod(0o600)  # a secret file others may read is refused
    basic = config_mod.PrometheusConfig(
        url=recording.url,
        basic_auth={"username": "remediator", "password_file": str(tmp_path / "password")},
    )
    assert _ask(basic) == (1.0,)
    first, second = recording.headers
    assert first["Authorization"] == "Bearer s3cret-token"
    assert first["X-Scope-OrgID"] == "team-a"
    assert second["Authorization"] == "Basic cmVtZWRpYXRvcjpwYTU1d29yZA=="  # remediator:pa55word


def test_a_missing_credential_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="PROM_MISSING is not set"):
        PrometheusQuerier(
            config_mod.PrometheusConfig(url="http://127.0.0.1:1", bearer_token_env="PROM_MISSING"),
            env={},
        )


def test_check_config_warns_about_insecure_skip_verify(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.yml"
    path.write_text(
        yaml.safe_dump(
            {"prometheus": {"url": "https://127.0.0.1:9090", "insecure_skip_verify": True}}
        )
    )
    assert cli.main(["check-config", str(path)]) == 0
    err = capsys.readouterr().err
    assert "warning: prometheus.insecure_skip_verify: TLS certificates" in err
    path.write_text(yaml.safe_dump({"prometheus": {"url": "https://127.0.0.1:9090"}}))
    assert cli.main(["check-config", str(path)]) == 0
    assert "warning" not in capsys.readouterr().err


@pytest.mark.parametrize(
    "query",
    [
        "up{job={{ labels.job }}}",  # bare in the selector: would change the structure
        "up > {{ labels.threshold }}",
        "up{job=`{{ labels.job }}`}",  # raw strings have no escapes
        'up # "{{ labels.job }}"',  # a comment
        'up{job="{{ labels.job }}}',  # unterminated
        'up{job="{{ annotations.job }}"}',  # only labels
    ],
)
def test_a_placeholder_outside_a_quoted_string_is_refused_at_load(query: str) -> None:
    step = {"action": "verify.prometheus", "query": query}
    data = {
        "targets": [{"name": "web", "type": "docker_container"}],
        "playbooks": [{"name": "p", "match": ['alertname="A"'], "target": "web", "steps": [step]}],
    }
    with pytest.raises(ConfigError) as raised:
        config_mod.parse(data, env={})
    assert raised.value.problems[0].startswith("playbooks[0].steps[0]: ")


def test_values_are_escaped_for_their_literal() -> None:
    assert escape("a\\b\"c'd\ne\rf\tg\x00h") == "a\\\\b\\\"c'd\\ne\\rf\\tg\\x00h"
    assert escape('it\'s "x"', quote="'") == 'it\\\'s "x"'
    template = compile_query("sum(x{a=\"{{ labels.a }}\", b='{{labels.b}}'}) > 1")
    assert template.labels == ("a", "b")
    assert template.render({"a": '"} or vector(1) #', "b": "'"}) == (
        "sum(x{a=\"\\\"} or vector(1) #\", b='\\''}) > 1"
    )
    assert template.render({}) == "sum(x{a=\"\", b=''}) > 1"


def test_the_condition_is_a_count_of_series_or_a_bound_on_every_value() -> None:
    def step(**fields: Any) -> VerifyPrometheus:
        return VerifyPrometheus(action="verify.prometheus", query="up", **fields)

    assert step().holds((0.0,)) and not step().holds(())
    assert step(expect="empty").holds(()) and not step(expect="empty").holds((0.0,))
    below = step(below=10)
    assert below.holds((1.0, 9.5)) and not below.holds((1.0, 10.0)) and not below.holds(())
    assert not below.holds((math.nan,))
    band = step(above=1, below=3)
    assert band.holds((2.0,)) and not band.holds((1.0,))
    assert band.condition() == "every series below 3 and above 1"
    assert step(expect="empty").condition() == "no series"


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        ({"insecure_skip_verify": True, "ca_file": "/ca.pem"}, "ca_file has no effect"),
        ({"bearer_token_env": "A", "bearer_token_file": "/t"}, "at most one of"),
        (
            {"bearer_token_env": "A", "basic_auth": {"username": "u", "password_env": "P"}},
            "not both",
        ),
        ({"basic_auth": {"username": "u"}}, "exactly one of password_env or password_file"),
    ],
)
def test_contradictory_prometheus_settings_are_refused(
    section: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ConfigError, match=problem):
        config_mod.parse({"prometheus": {"url": "https://127.0.0.1:9090", **section}}, env={})


def test_below_or_above_with_expect_empty_is_refused() -> None:
    step = {"action": "verify.prometheus", "query": "up", "expect": "empty", "below": 1}
    data = {
        "targets": [{"name": "web", "type": "docker_container"}],
        "playbooks": [{"name": "p", "match": ['alertname="A"'], "target": "web", "steps": [step]}],
    }
    with pytest.raises(ConfigError, match="'below' and 'above' need expect: non_empty"):
        config_mod.parse(data, env={})
