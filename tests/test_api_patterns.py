"""Patterns added through the API: stored on both backends, kept across SIGHUP, PUT
/configuration and restarts, listed with their source; the rules when the file and the API share
an id; and every pattern and matcher regex on RE2 (linear time, what it cannot compile refused)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
import yaml

from remediator import cli, reload
from remediator.store import Store
from remediator.store.api_patterns import StoredPattern
from tests.serving import Served
from tests.store_helpers import chain_ok, event, run, store_url
from tests.test_management import (
    API,
    CACHE,
    DB,
    RESTART,
    WEB,
    MakeMgmt,
    error_code,
    make_mgmt,
    payload,
)

__all__ = ["make_mgmt", "store_url"]  # the fixtures

CACHE_FULL = {"id": "cache_full", "pattern": "CacheFull|evicting", "category": "memory"}
DISK_IO = {"id": "disk_io", "pattern": "iowait", "category": "disk"}


class Client:
    """HTTP calls to one served process, as one role."""

    def __init__(self, served: Served, tokens: dict[str, str]) -> None:
        self.served, self.tokens = served, tokens

    def __call__(self, method: str, path: str, role: str = "admin", **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[role]}"}
        url = f"{self.served.url}{API}{path}"
        return httpx.request(method, url, headers=headers, timeout=10, **kw)

    def sources(self) -> dict[str, str]:
        answer = self("GET", "/patterns")
        assert answer.status_code == 200, answer.text
        return {p["id"]: p["source"] for p in answer.json()["patterns"]}

    def sighup(self, until: Any) -> None:
        assert self.served.proc is not None
        self.served.proc.send_signal(1)  # SIGHUP
        deadline = time.monotonic() + 10
        while not until() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert until(), self.served.log()


def test_an_api_pattern_lasts_through_sighup_and_restarts_and_its_delete_too(
    store_url: str, tmp_path: Path, tokens: dict[str, str]
) -> None:
    config = {"store": {"url": store_url}, "health": {"enabled": False}, "patterns": [DISK_IO]}
    served = Served(tmp_path, config, tokens)
    call = Client(served, tokens)
    served.start()
    try:
        added = call("POST", "/patterns", json=CACHE_FULL)
        assert added.status_code == 201, added.text
        assert added.json()["pattern"]["source"] == "api"
        sources = call.sources()
        assert list(sources)[:2] == ["disk_io", "cache_full"]  # the file's, then the API's
        assert (sources["disk_io"], sources["cache_full"], sources["oom"]) == (
            "file", "api", "builtin",
        )  # fmt: skip

        # SIGHUP with a file that changed: the API pattern stays, after the file's.
        data = yaml.safe_load(served.config_path.read_text())
        data["patterns"] = [{**DISK_IO, "id": "disk_io2"}]
        served.config_path.write_text(yaml.safe_dump(data))
        call.sighup(until=lambda: "disk_io2" in call.sources())
        assert list(call.sources())[:2] == ["disk_io2", "cache_full"]
        assert call.sources()["cache_full"] == "api"
    finally:
        assert served.terminate() == 0

    served.start()  # a restart
    try:
        assert call.sources()["cache_full"] == "api"
        trace = call("POST", "/test", json=payload("f1", "CacheFull")).json()["traces"][0]
        assert trace["pattern"] == "cache_full"
        deleted = call("DELETE", "/patterns/cache_full")
        assert deleted.status_code == 200, deleted.text
        assert "cache_full" not in call.sources()
    finally:
        assert served.terminate() == 0

    served.start()  # the delete lasts too
    try:
        assert "cache_full" not in call.sources()
        assert call("DELETE", "/patterns/cache_full").status_code == 404
    finally:
        assert served.terminate() == 0


def test_a_file_that_defines_an_api_patterns_id_wins_and_the_api_one_is_dropped(
    make_mgmt: MakeMgmt, store_url: str, tmp_path: Path
) -> None:
    base = {
        "store": {"url": store_url},
        "health": {"enabled": False},
        "targets": [WEB, CACHE, DB],
        "playbooks": [RESTART],
    }
    mgmt = make_mgmt(**base)
    assert mgmt.request("POST", "/patterns", json=CACHE_FULL).status_code == 201
    assert mgmt.request("POST", "/patterns", json=DISK_IO).status_code == 201
    path = tmp_path / "remediator.yml"
    mine = {**CACHE_FULL, "pattern": "OutOfCache"}
    path.write_text(yaml.safe_dump({**base, "patterns": [mine]}))

    applied = mgmt.call(reload.reload_file, mgmt.rt, path)
    assert applied is not None and applied.changed
    listed = {p["id"]: p for p in mgmt.request("GET", "/patterns").json()["patterns"]}
    assert listed["cache_full"]["source"] == "file"
    assert listed["cache_full"]["pattern"] == "OutOfCache"
    assert listed["disk_io"]["source"] == "api"
    [dropped] = mgmt.events("pattern:dropped")
    assert dropped.actor == "sighup" and dropped.config_version == applied.version
    assert dropped.details["pattern"]["pattern"] == "CacheFull|evicting"
    assert [p.id for p in mgmt.call(mgmt.rt.store.api_patterns)] == ["disk_io"]

    # Gone from the store: a file without it does not bring the API one back.
    path.write_text(yaml.safe_dump(base))
    assert mgmt.call(reload.reload_file, mgmt.rt, path) is not None
    assert [p["id"] for p in mgmt.request("GET", "/patterns").json()["patterns"]][:2] == [
        "disk_io", "oom",
    ]  # fmt: skip
    mgmt.close()

    # At start-up the file wins the same way.
    again = make_mgmt(**base, patterns=[{**DISK_IO, "pattern": "iowait2"}])
    disk = again.request("GET", "/patterns").json()["patterns"][0]
    assert (disk["id"], disk["source"], disk["pattern"]) == ("disk_io", "file", "iowait2")
    [*_, startup] = again.events("pattern:dropped")
    assert startup.actor == "startup" and startup.details["pattern"]["pattern"] == "iowait"
    assert again.call(again.rt.store.api_patterns) == []


def test_put_configuration_keeps_api_patterns_and_refuses_another_with_their_id(
    make_mgmt: MakeMgmt,
) -> None:
    mgmt = make_mgmt(patterns=[DISK_IO])
    assert mgmt.request("POST", "/patterns", json=CACHE_FULL).status_code == 201
    document = mgmt.request("GET", "/configuration").json()["configuration"]
    assert [p["id"] for p in document["patterns"]] == ["disk_io", "cache_full"]

    # Sent back as read: nothing changes, and the API pattern stays one.
    same = mgmt.request("PUT", "/configuration", json=document)
    assert same.status_code == 200 and same.json()["changed"] is False
    assert {p["id"]: p["source"] for p in mgmt.request("GET", "/patterns").json()["patterns"]}[
        "cache_full"
    ] == "api"

    other = {**document, "patterns": [DISK_IO, {**CACHE_FULL, "pattern": "other"}]}
    refused = mgmt.request("PUT", "/configuration", json=other)
    assert refused.status_code == 409 and error_code(refused) == "PATTERN_EXISTS"
    assert "DELETE /patterns" in refused.json()["error"]["message"]

    # A document without it does not delete it: it is not the configuration's.
    without = mgmt.request("PUT", "/configuration", json={**document, "patterns": []})
    assert without.status_code == 200, without.text
    listed = mgmt.request("GET", "/patterns").json()["patterns"]
    assert [(p["id"], p["source"]) for p in listed][:2] == [("cache_full", "api"), ("oom", "builtin")]  # fmt: skip
    assert [p.id for p in mgmt.call(mgmt.rt.store.api_patterns)] == ["cache_full"]


def test_regexes_re2_cannot_compile_are_refused_by_the_api_and_check_config(
    make_mgmt: MakeMgmt, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mgmt = make_mgmt()
    for regex in (r"(a)\1", "foo(?=bar)", "(?<!x)y"):
        answer = mgmt.request("POST", "/patterns", json={**CACHE_FULL, "pattern": regex})
        assert answer.status_code == 422, (regex, answer.text)
        [detail] = answer.json()["error"]["details"]
        assert detail.startswith("pattern: invalid regex") and "RE2" in detail
    assert mgmt.call(mgmt.rt.store.api_patterns) == []

    path = tmp_path / "bad.yml"
    book = {**RESTART, "match": ['alertname=~"(?!Watchdog).*"']}
    bad = {**CACHE_FULL, "pattern": r"(\w+) \1"}
    path.write_text(yaml.safe_dump({"targets": [WEB], "patterns": [bad], "playbooks": [book]}))
    assert cli.main(["check-config", str(path)]) == 1
    err = capsys.readouterr().err
    assert "patterns[0].pattern" in err and "invalid regex" in err
    assert "playbooks[0]" in err and "invalid regex in matcher" in err


def test_a_catastrophic_regex_on_a_long_label_is_decided_quickly(
    tmp_path: Path, tokens: dict[str, str]
) -> None:
    book = {
        "name": "never",
        "match": ['payload=~"(a+)+b"'],
        "target": "web",
        "steps": [{"action": "docker.restart"}],
    }
    config = {"health": {"enabled": False}, "targets": [WEB], "playbooks": [book]}
    served = Served(tmp_path, config, tokens)
    call = Client(served, tokens)
    served.start()
    evil = {"id": "evil", "pattern": "(a+)+$", "fields": ["labels.payload"], "category": "cpu"}
    slow: list[float] = []
    stop = threading.Event()

    def watch() -> None:  # the server keeps answering while it classifies
        while not stop.is_set():
            started = time.monotonic()
            try:
                ok = httpx.get(f"{served.url}{API}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                ok = False
            if not ok:
                slow.append(time.monotonic() - started)
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    try:
        assert call("POST", "/patterns", json=evil).status_code == 201
        watcher.start()
        answer = call("POST", "/alerts", "alertmanager", json=payload("redos", "Evil", payload="a" * 100_000 + "!"))  # fmt: skip
        assert answer.status_code == 200, answer.text
        deadline = time.monotonic() + 5

        def decided() -> list[dict[str, Any]]:
            found = call("GET", "/events", params={"fingerprint": "redos"})
            events: list[dict[str, Any]] = (
                found.json()["events"] if found.status_code == 200 else []
            )
            return [e for e in events if e["type"].startswith("recovery:")]

        while not decided() and time.monotonic() < deadline:
            time.sleep(0.1)
        # Neither regex matched: the built-in `memory` (the summary), and no playbook.
        outcomes = {(e["type"], e["outcome"], e["details"]["pattern"]) for e in decided()}
        assert ("recovery:skipped", "no_playbook", "memory") in outcomes
        stop.set()
        watcher.join(5)
        assert slow == []
    finally:
        stop.set()
        try:
            served.terminate(timeout=10)
        except Exception:
            served.kill9()


def test_the_store_keeps_api_patterns_in_order_and_one_per_id(store_url: str) -> None:
    def record(pattern_id: str, position: int | None = None) -> StoredPattern:
        spec = {**CACHE_FULL, "id": pattern_id}
        return StoredPattern(pattern_id, spec, actor="admin", added_at=5.0, position=position)

    async def body(store: Store) -> None:
        first = await store.add_api_pattern(record("b"), events=[event(1)])
        assert first is not None and first.position == 1
        assert await store.add_api_pattern(record("a"), events=[]) is not None
        assert await store.add_api_pattern(record("b"), events=[event(2)]) is None
        assert [(p.id, p.position) for p in await store.api_patterns()] == [("b", 1), ("a", 2)]
        assert (await store.api_patterns())[0] == record("b", 1)
        assert await store.delete_api_patterns(["b", "nope"], events=[event(3)]) == ["b"]
        assert await store.delete_api_patterns(["b"], events=[event(4)]) == []
        # Put back where it was (what a failed DELETE does).
        assert await store.add_api_pattern(record("b", 1), events=[]) is not None
        assert [p.id for p in await store.api_patterns()] == ["b", "a"]
        assert [e.message for e in await chain_ok(store)] == ["event 1", "event 3"]

    run(store_url, body)
