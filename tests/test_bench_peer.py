"""``python -m bench peer``: the parts that need no Event-Driven Ansible installed (the rulebooks
it writes, the per-alert source plugin it loads into EDA, how it reads EDA's output, the table it
prints)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from bench import eda, peer
from bench.__main__ import _parser
from bench.eda_sources import alertmanager_alerts
from bench.wrk import WrkResult

DEBUG_OUTPUT = """\
2026-12-04 12:43:20,001 - ansible_rulebook.app - INFO - Starting sources

** 2026-12-04 12:43:27.752893 [debug] ******************************************
PEER_ACTION 5a000000000001
********************************************************************************

** 2026-12-04 12:43:27.800000 [debug: kwargs] **********************************
{'hosts': ['all']}
********************************************************************************

** 2026-12-04 12:43:28.5 [debug] ***********************************************
PEER_ACTION storm-7
********************************************************************************

** 2026-12-04 12:43:29.000001 [debug] ******************************************
PEER_ACTION 5a000000000001
********************************************************************************
"""


def _epoch(text: str) -> float:
    import datetime

    return datetime.datetime.fromisoformat(text).timestamp()


def test_the_rulebook_listens_on_loopback_with_a_token_and_runs_debug_per_notification() -> None:
    book = yaml.safe_load(eda.rulebook(port=18123, token="s3cret"))
    assert len(book) == 1
    ruleset = book[0]
    assert ruleset["hosts"] == "all"
    assert ruleset["sources"] == [
        {"eda.builtin.webhook": {"host": "127.0.0.1", "port": 18123, "token": "s3cret"}}
    ]
    (rule,) = ruleset["rules"]
    assert rule["condition"] == "event.payload.alerts is defined"
    assert rule["action"] == {"debug": {"msg": "PEER_ACTION {{ event.payload.groupLabels.bench }}"}}


def test_debug_banners_give_the_time_each_group_was_first_acted_on() -> None:
    found = eda.actions(DEBUG_OUTPUT)
    assert found == {
        "5a000000000001": _epoch("2026-12-04 12:43:27.752893"),
        "storm-7": _epoch("2026-12-04 12:43:28.500000"),
    }


def test_every_debug_action_is_listed_in_order_repeats_included() -> None:
    labels = [label for label, _ in eda.ran(DEBUG_OUTPUT)]
    assert labels == ["5a000000000001", "storm-7", "5a000000000001"]


def test_a_mark_without_its_debug_banner_is_not_an_action() -> None:
    text = "PEER_ACTION lost\n** 2026-12-04 12:00:00.0 [print_event] ***\nPEER_ACTION other\n"
    assert eda.actions(text) == {}


def test_the_version_line_names_rulebook_drools_and_ansible_core() -> None:
    output = (
        "ansible-rulebook [1.3.2]\n  Executable location = /x\n  Drools_jpy version = 0.4.1\n"
        "  Java home = /usr/lib/jvm/j\n  Ansible core version = 2.19.14\n"
    )
    assert eda.describe_version(output) == (
        "ansible-rulebook 1.3.2, drools_jpy 0.4.1, ansible-core 2.19.14"
    )
    assert eda.describe_version("") == "ansible-rulebook unknown"


def test_java_versions_old_and_new_style() -> None:
    assert eda.java_major('openjdk version "17.0.15" 2025-04-15') == 17
    assert eda.java_major('java version "1.8.0_392"') == 8
    assert eda.java_major('openjdk version "21" 2023-09-19') == 21
    assert eda.java_major("no java here") == 0


def test_the_peer_environment_puts_its_venv_first_and_names_java_home(tmp_path: Path) -> None:
    install = eda.Installation(tmp_path)
    install.java_home = Path("/usr/lib/jvm/java-17")
    env = install.env()
    assert env["PATH"].split(os.pathsep)[0] == str(tmp_path / "venv" / "bin")
    assert env["JAVA_HOME"] == "/usr/lib/jvm/java-17"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert "VIRTUAL_ENV" not in env


def test_a_kill_outcome_tells_before_after_and_never() -> None:
    assert peer.kill_outcome(before=True, after=True) == "ran before the kill"
    assert peer.kill_outcome(before=False, after=True) == "ran after restart"
    assert peer.kill_outcome(before=False, after=False) == "never ran"


def test_the_process_tree_holds_a_child_and_its_rss_is_counted() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        deadline = time.monotonic() + 10
        while child.pid not in peer.tree(os.getpid()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert child.pid in peer.tree(os.getpid())
        with peer.PeakRss(child.pid) as rss:
            time.sleep(0.2)
        assert rss.peak_kib > 1000  # a Python interpreter is megabytes
    finally:
        child.kill()
        child.wait()


def _wrk(rps: float) -> WrkResult:
    return WrkResult(
        requests=int(rps * 6), seconds=6.0, p50=0.004, p90=0.008, p99=0.012, max=0.02,
        errors=0, client_cpu=1.0, server_cpu=5.0,
    )  # fmt: skip


def test_the_table_puts_both_sides_on_every_row_and_says_who_is_ahead(tmp_path: Path) -> None:
    r = peer.Side("remediator", intake=_wrk(6500), storm_seconds=4.2, storm_done=10000)
    r.storm_rss_kib, r.latency = 120 * 1024, [0.003] * 98 + [0.009] * 2
    r.kills, r.kill_delays = ["ran after restart"] * 3, [0.1, 0.2, 9.5]
    r.storm_ok, r.storm_acked = 100, 0.9
    r.intake_work = "1 alert stored, 38,999 repeats counted"
    e = peer.Side("EDA", intake=_wrk(660), storm_seconds=13.0, storm_done=100)
    e.storm_ok, e.storm_acked = 100, 2.5
    e.intake_work = "3,900 actions by the end of the run, 3,960 in all"
    e.storm_rss_kib, e.latency = 300 * 1024, [0.004] * 98 + [0.030] * 2
    e.kills = ["never ran", "never ran", "ran before the kill"]
    e.storm_per_alert = peer.Side("EDA, one event per alert", storm_seconds=10.2)
    e.storm_per_alert.storm_done, e.storm_per_alert.storm_ok = 10000, 100
    e.storm_per_alert.storm_acked, e.storm_per_alert.storm_rss_kib = 10.1, 200 * 1024
    install = eda.Installation(tmp_path)  # not installed: the version reads "unknown"
    text = peer.table(r, e, peer.Settings(), install).render()
    lines = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("|")}
    intake = lines["intake req/s, same notification repeated, 32 conns (wrk)"]
    assert "6,500" in intake and "660" in intake and intake.rstrip(" |").endswith("yes")
    work = lines["intake: what the repeats became (warm-up included)"]
    assert "1 alert stored, 38,999 repeats counted" in work
    assert "3,960 in all (one per request)" in work
    per_alert = next(row for name, row in lines.items() if name.startswith("storm, one action"))
    assert "4.2 s (10,000 alerts decided)" in per_alert
    assert "10.2 s (10,000 actions, one per firing alert)" in per_alert
    assert per_alert.rstrip(" |").endswith("yes")
    per_group = next(row for name, row in lines.items() if name.startswith("storm, EDA one"))
    assert "13.0 s (100 actions, one per notification)" in per_group
    assert per_group.rstrip(" |").endswith("not like for like")
    acked = next(row for name, row in lines.items() if name.startswith("storm: until the last"))
    assert "0.90 s (100 x 2xx)" in acked and "10.10 s (100 x 2xx) / 2.50 s (100 x 2xx)" in acked
    rss = next(row for name, row in lines.items() if name.startswith("storm: peak RSS"))
    assert "120 MB" in rss and "200 MB / 300 MB" in rss and rss.rstrip(" |").endswith("yes")
    latency = lines["2xx -> action p50 / p99 (200 single-alert notifications, idle)"]
    assert "3.0 ms / 9.0 ms" in latency and "4.0 ms / 30.0 ms" in latency
    kill = lines["kill -9 right after the 2xx: the action ran after restart"]
    assert (
        "3 of 3 (0.1-9.5 s after the restart began)" in kill
        and "0 of 3 (1 ran before the kill)" in kill
    )
    assert "machine: " in text and "ansible-rulebook unknown" in text


def test_a_slower_remediator_is_reported_as_behind(tmp_path: Path) -> None:
    r = peer.Side("remediator", intake=_wrk(100), storm_seconds=20.0, storm_done=10000)
    e = peer.Side("EDA", intake=_wrk(660), storm_seconds=None, storm_done=40)
    e.storm_per_alert = peer.Side("EDA, one event per alert", storm_seconds=9.0)
    text = peer.table(r, e, peer.Settings(), eda.Installation(tmp_path)).render()
    intake = next(line for line in text.splitlines() if line.startswith("| intake"))
    assert intake.rstrip(" |").endswith("NO")
    per_alert = next(line for line in text.splitlines() if line.startswith("| storm, one action"))
    assert "20.0 s (10,000 alerts decided)" in per_alert
    assert per_alert.rstrip(" |").endswith("NO")  # EDA's 10,000 actions took 9 s
    per_group = next(line for line in text.splitlines() if line.startswith("| storm, EDA one"))
    assert "not all (60 s) (40 actions, one per notification)" in per_group


def test_the_per_alert_rulebook_loads_the_bench_source_and_acts_on_firing_alerts() -> None:
    book = yaml.safe_load(eda.rulebook(port=18124, token="s3cret", per_alert=True))
    (ruleset,) = book
    assert ruleset["sources"] == [
        {"alertmanager_alerts": {"host": "127.0.0.1", "port": 18124, "token": "s3cret"}}
    ]
    (rule,) = ruleset["rules"]
    assert rule["condition"] == 'event.alert.status == "firing"'
    assert rule["action"] == {"debug": {"msg": "PEER_ACTION {{ event.alert.fingerprint }}"}}
    assert (eda.SOURCE_DIR / f"{eda.PER_ALERT_SOURCE}.py").is_file()


def test_the_per_alert_source_queues_one_event_per_alert_behind_its_token() -> None:
    events = asyncio.run(_serve_the_per_alert_source())
    assert [e["alert"] for e in events] == [{"fingerprint": f"f{i}"} for i in range(3)]
    assert events[0]["meta"] == {"endpoint": "api/v1/recovery/alerts"}


async def _serve_the_per_alert_source() -> list[dict[str, Any]]:
    """Run the plugin on a free loopback port, POST a notification of three alerts (and a wrong
    token, and a body that is not JSON); the events it queued."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    args = {"host": "127.0.0.1", "port": port, "token": "s3cret"}
    server = asyncio.create_task(alertmanager_alerts.main(queue, args))
    url = f"http://127.0.0.1:{port}/api/v1/recovery/alerts"
    body = {"status": "firing", "alerts": [{"fingerprint": f"f{i}"} for i in range(3)]}
    good = {"Authorization": "Bearer s3cret"}
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(100):  # the site starts in the task
                try:
                    async with session.post(url, json={}, headers=good) as answer:
                        assert answer.status == 200
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.02)
            async with session.post(url, json=body, headers=good) as answer:
                assert answer.status == 200
            bad = {"Authorization": "Bearer wrong"}
            async with session.post(url, json=body, headers=bad) as answer:
                assert answer.status == 401
            async with session.post(url, data=b"{not json", headers=good) as answer:
                assert answer.status == 400
    finally:
        server.cancel()
        await asyncio.gather(server, return_exceptions=True)
    return [queue.get_nowait() for _ in range(queue.qsize())]


def test_the_command_line_has_peer_with_its_directory() -> None:
    args = _parser().parse_args(["peer", "--dir", "/tmp/elsewhere", "--kills", "5"])
    assert (args.which, args.dir, args.kills) == ("peer", "/tmp/elsewhere", 5)
    assert _parser().parse_args(["peer"]).dir == str(eda.DEFAULT_DIR)
