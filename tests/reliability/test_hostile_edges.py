"""Issue 18, item 8: the edges a stolen or guessed token, or a careless install, probes.

Against real served processes and the real CLI:

- a token file (an API token, the Slack bot token, Prometheus's bearer token) that group or
  others may read is refused by ``check-config`` and ``serve``, with a message naming the file
  and the fix; ``remediator tokens`` writes files ``serve`` accepts;
  a file owned by another user (a compose or Kubernetes secret) is that user's business, unless
  anyone may write it;
- wrong credentials are throttled per client address: past ``auth.throttle.failures`` the address
  gets 429 with ``Retry-After`` whatever token it sends, except a valid alertmanager token, and
  another address is not affected; the metrics count failures and refusals, never an address;
- 404 and 405 answers are the API's JSON errors on every path, the webhook's included, and 405
  keeps ``Allow``.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import httpx2 as httpx
import pytest

from remediator.http.endpoints import OPERATIONS
from tests.reliability.conftest import Figures, Serve
from tests.reliability.support import ALERTS, EVENTS, HEALTH, alert, payload

OTHER_UID = 10001  # the image's user; any uid but ours


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "remediator", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def auth_config(directory: Path) -> dict[str, object]:
    return {
        "auth": {
            "tokens": [
                {"name": role, "role": role, "token_file": str(directory / f"{role}.token")}
                for role in ("alertmanager", "viewer", "admin")
            ]
        },
        "health": {"enabled": False},
    }


# -- token files ---------------------------------------------------------------------------------


def test_a_token_file_others_may_read_is_refused_naming_the_file_and_the_fix(
    serve: Serve, tmp_path: Path, figures: Figures
) -> None:
    directory = tmp_path / "tokens"
    made = cli("tokens", "--dir", str(directory), cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert os.stat(directory).st_mode & 0o777 == 0o700
    for role in ("alertmanager", "viewer", "admin"):
        assert os.stat(directory / f"{role}.token").st_mode & 0o777 == 0o600

    served = serve(auth_config(directory), start=False)
    checked = cli("check-config", str(served.config_path), cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr

    # `remediator tokens` + `serve`, as `make run` does: the files are accepted and used.
    served.start()
    admin = (directory / "admin.token").read_text().strip()
    answer = httpx.get(served.url + EVENTS, headers={"Authorization": f"Bearer {admin}"})
    assert answer.status_code == 200
    served.terminate()

    admin_file = directory / "admin.token"
    refused = 0
    for mode in (0o644, 0o640, 0o604, 0o620, 0o602):
        admin_file.chmod(mode)
        checked = cli("check-config", str(served.config_path), cwd=tmp_path)
        assert checked.returncode == 1, (oct(mode), checked.stdout)
        assert f"auth.tokens[2].token_file: {admin_file}: permissions {mode:04o}" in checked.stderr
        assert f"run `chmod 600 {admin_file}`" in checked.stderr
        refused += 1
    admin_file.chmod(0o644)
    with pytest.raises(RuntimeError, match="exited"):
        served.start()
    assert f"run `chmod 600 {admin_file}`" in served.log()

    # Owned by another user (a compose secret bind-mounted from the host, a Kubernetes Secret):
    # readable is its owner's decision, writable by anyone is not.
    os.chown(admin_file, OTHER_UID, OTHER_UID)
    checked = cli("check-config", str(served.config_path), cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    admin_file.chmod(0o646)
    checked = cli("check-config", str(served.config_path), cwd=tmp_path)
    assert checked.returncode == 1
    assert f"{admin_file}: anyone may write it (permissions 0646)" in checked.stderr
    refused += 1

    # The other secret files: the Slack bot token, Prometheus's bearer token and password.
    secrets = {name: tmp_path / name for name in ("slack.token", "prom.token", "prom.password")}
    for path in secrets.values():
        path.write_text("s" * 32 + "\n")
        path.chmod(0o644)
    admin_file.chmod(0o600)
    os.chown(admin_file, os.geteuid(), os.getegid())
    config = {
        **auth_config(directory),
        "notifications": {"slack": {"token_file": str(secrets["slack.token"]), "channel": "#o"}},
        "prometheus": {
            "url": "http://127.0.0.1:9",
            "bearer_token_file": str(secrets["prom.token"]),
        },
    }
    other = serve(config, start=False)
    checked = cli("check-config", str(other.config_path), cwd=tmp_path)
    assert checked.returncode == 1
    for field, name in (
        ("notifications.slack.token_file", "slack.token"),
        ("prometheus.bearer_token_file", "prom.token"),
    ):
        assert f"{field}: {secrets[name]}: permissions 0644 are too open" in checked.stderr
        refused += 1
    with pytest.raises(RuntimeError, match="exited"):
        other.start()
    for name in ("slack.token", "prom.token"):
        assert f"run `chmod 600 {secrets[name]}`" in other.log()
    figures(modes_refused=refused)


# -- throttling of failed authentication ---------------------------------------------------------


def test_wrong_credentials_are_throttled_per_address_but_never_a_valid_alertmanager_token(
    serve: Serve, figures: Figures
) -> None:
    failures = 5
    served = serve(
        {
            "health": {"enabled": False},
            "auth": {"throttle": {"failures": failures, "window": "10m"}},
        }
    )
    wrong = {"Authorization": "Bearer wrong-wrong-wrong-wrong"}
    body = payload([alert("feedfacefeedface", "Legit")])
    with (
        httpx.Client(base_url=served.url, timeout=10) as here,
        httpx.Client(
            base_url=served.url,
            timeout=10,
            transport=httpx.HTTPTransport(local_address="127.0.0.2"),
        ) as elsewhere,
    ):
        for _ in range(failures):
            assert here.get(EVENTS, headers=wrong).status_code == 401
        throttled = 0
        # Past the limit, every request with credentials from this address is refused alike,
        # a valid viewer or admin token included: a guess cannot be told from a hit.
        for path, headers in (
            (EVENTS, wrong),
            (EVENTS, served.headers("viewer")),
            (EVENTS, served.headers("admin")),
            (HEALTH, wrong),
            (HEALTH, served.headers("viewer")),
        ):
            answer = here.get(path, headers=headers)
            assert answer.status_code == 429, (path, answer.text)
            assert answer.json()["error"]["code"] == "RATE_LIMITED"
            assert 1 <= int(answer.headers["Retry-After"]) <= 600
            throttled += 1
        answer = here.post(ALERTS, json=body, headers=wrong)
        assert answer.status_code == 429 and "Retry-After" in answer.headers
        throttled += 1

        # A valid alertmanager token always gets through (Alertmanager drops a 429), as bearer
        # and as basic auth.
        assert (
            here.post(ALERTS, json=body, headers=served.headers("alertmanager")).status_code == 200
        )
        basic = base64.b64encode(f"am:{served.tokens['alertmanager']}".encode()).decode()
        basic_auth = {"Authorization": f"Basic {basic}"}
        assert here.post(ALERTS, json=body, headers=basic_auth).status_code == 200
        # Without credentials there is nothing to guess: the public health answer is unchanged.
        assert here.get(HEALTH).status_code == 200
        assert here.get(EVENTS).status_code == 401

        # Another address is not affected.
        assert elsewhere.get(EVENTS, headers=served.headers("viewer")).status_code == 200
        assert elsewhere.get(EVENTS, headers=wrong).status_code == 401

    assert served.metric("remediator_auth_failures_total", 'reason="invalid"') == failures + 1
    assert served.metric("remediator_auth_failures_total", 'reason="missing"') == 1
    assert served.metric("remediator_auth_throttled_total") == throttled
    text = httpx.get(served.url + "/metrics").text
    auth_lines = [line for line in text.splitlines() if line.startswith("remediator_auth_")]
    assert auth_lines and not any("127.0.0" in line for line in auth_lines)
    figures(failures_allowed=failures, refused_429=throttled)


# -- 404 and 405 ---------------------------------------------------------------------------------

METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH")


def concrete(path: str) -> str:
    return path.replace("{service}", "web").replace("{name}", "web").replace("{target}", "web")


def test_404_and_405_are_json_errors_on_every_path_and_405_keeps_allow(
    serve: Serve, figures: Figures
) -> None:
    served = serve({"health": {"enabled": False}})
    allowed: dict[str, set[str]] = {}
    for op in OPERATIONS:
        allowed.setdefault(concrete(op.path.replace("{id}", "p")), set()).add(op.method)
    answered = 0
    with httpx.Client(base_url=served.url, timeout=10) as client:
        for path, methods in allowed.items():
            for method in METHODS:
                if method in methods or (method == "HEAD" and "GET" in methods):
                    continue
                answer = client.request(method, path, headers=served.headers("admin"))
                assert answer.status_code == 405, (method, path, answer.status_code)
                assert answer.headers["content-type"] == "application/json"
                assert answer.json()["error"]["code"] == "METHOD_NOT_ALLOWED", (method, path)
                assert methods <= {m.strip() for m in answer.headers["allow"].split(",")}
                answered += 1
        # The webhook's own path: every other method, with and without a token.
        for method in ("GET", "PUT", "DELETE", "PATCH", "HEAD"):
            for headers in ({}, served.headers("alertmanager")):
                answer = client.request(method, ALERTS, headers=headers)
                assert answer.status_code == 405, (method, answer.status_code)
                assert answer.headers["allow"] == "POST"
                if method != "HEAD":
                    assert answer.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
                answered += 1
        for path in (
            "/",
            "/api",
            "/api/v1/recovery",
            "/api/v1/recovery/",
            "/api/v1/recovery/nope",
            "/api/v1/recovery/alerts/extra",
            "/metrics/extra",
            "/api/v1/recovery/%00",
            "/" + "a" * 4000,
        ):
            for method in METHODS:
                answer = client.request(method, path, headers=served.headers("admin"))
                assert answer.status_code == 404, (method, path, answer.status_code)
                assert answer.json()["error"]["code"] == "NOT_FOUND", (method, path)
                answered += 1
    figures(error_answers_checked=answered)
