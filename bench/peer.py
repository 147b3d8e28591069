"""Benchmark: remediator beside a peer, Event-Driven Ansible (``ansible-rulebook``).

Both sides get the same payloads from the same load generators (``bench/payloads.py``; wrk for
intake, aiohttp for the storm and the samples), on 127.0.0.1, one fresh process per row:

- intake: the same single-alert notification repeated, 32 connections, wrk;
- storm: 10,000 alerts in 100 notifications sent at once; the time until all are decided
  (remediator) or all actions ran (EDA), and the peak RSS of the server's process tree (EDA's
  JVM runs inside the ansible-rulebook process, through jpy);
- latency: single-alert notifications one at a time; the 2xx -> first action call;
- kill -9 right after the 2xx of a new alert, restart on the same store / rulebook: did the
  action run after the restart?

What the peer is and how it is installed: ``bench/eda.py``.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Final

import aiohttp
import httpx2 as httpx

from bench import eda, latency, payloads, storm, wrk
from bench.procs import (
    ALERTS_PATH,
    BenchError,
    Remediator,
    Server,
    Workdir,
    bench_config,
    status_kib,
    uvicorn_impl,
)
from bench.table import Table, machine, ms, percentile

PROBES: Final = latency.PROBES
KILL_SPACE: Final = 0x6B
SAMPLE_SPACE: Final = latency.SAMPLE_SPACE
STORM_TARGETS: Final = [f"bench-{i:02d}" for i in range(storm.TARGET_COUNT)]


@dataclass(frozen=True)
class Settings:
    directory: Path = eda.DEFAULT_DIR
    seconds: float = 6.0
    warmup: float = 1.0
    connections: int = 32
    samples: int = 200
    spacing: float = 0.03
    kills: int = 3
    restart_wait: float = 30.0  # seconds to wait for the action after a restart
    lease: float = 10.0  # remediator's worker.lease in the kill row (default 60 s)
    keep: bool = False


@dataclass
class Side:
    """One system's numbers."""

    name: str
    intake: wrk.WrkResult | None = None
    intake_work: str = ""  # what the repeats became
    storm_seconds: float | None = None  # None: not all done before the deadline
    storm_done: int = 0  # decisions (remediator) or actions (EDA) when measured
    storm_ok: int = 0  # notifications answered 2xx
    storm_acked: float = 0.0  # seconds until the last 2xx
    storm_rss_kib: int = 0
    # EDA only: the storm with one event per alert (bench/eda_sources), 10,000 actions
    storm_per_alert: Side | None = None
    latency: list[float] = field(default_factory=list)  # 2xx -> first action, seconds
    latency_missing: int = 0
    kills: list[str] = field(default_factory=list)  # one outcome per trial
    kill_delays: list[float] = field(default_factory=list)  # restart -> action ran, seconds


def kill_outcome(*, before: bool, after: bool) -> str:
    """What became of the action of an alert acknowledged just before a kill -9."""
    if before:
        return "ran before the kill"
    return "ran after restart" if after else "never ran"


# -- process trees ----------------------------------------------------------------------------


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants, from /proc."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo += parents.get(current, [])
    return out


class PeakRss:
    """Samples the RSS of a process tree every 50 ms while ``with``; ``peak_kib`` is the largest
    sum seen, or the root's VmHWM if larger."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _sample(self) -> int:
        total = 0
        for pid in tree(self.pid):
            try:
                total += status_kib(pid, "VmRSS")
            except (OSError, BenchError):
                continue
        return total

    def _loop(self) -> None:
        while not self._stop.wait(0.05):
            self.peak_kib = max(self.peak_kib, self._sample())

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_kib = max(self.peak_kib, self._sample(), status_kib(self.pid, "VmHWM"))


def kill9(server: Server) -> None:
    """SIGKILL by the PID the bench started, and reap it."""
    if server.proc is not None and server.proc.poll() is None:
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(15)


# -- load -------------------------------------------------------------------------------------


def intake_load(server_pid: int, url: str, token: str, wd: Workdir, s: Settings) -> wrk.WrkResult:
    """A warm-up, then the measured wrk run: the same notification every time."""
    binary = wrk.ensure_wrk()
    body = payloads.single(payloads.fingerprint(0xDD, 1), "bench-00").decode()
    result: wrk.WrkResult | None = None
    for seconds in (s.warmup, s.seconds):
        lua = wrk.script(
            wd.path / f"peer-{server_pid}-{seconds}.lua",
            url_path=ALERTS_PATH,
            body=body,
            token=token,
            vary=False,
        )
        result = wrk.run(
            binary, url, lua, connections=s.connections, seconds=seconds, threads=2,
            server_pid=server_pid,
        )  # fmt: skip
    assert result is not None
    return result


async def _samples(url: str, token: str, s: Settings) -> list[latency.Sample]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    out = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
        for i in range(s.samples):
            fp = payloads.fingerprint(SAMPLE_SPACE, i)
            body = payloads.single(fp, PROBES[i % len(PROBES)])
            sent = time.time()
            async with session.post(url, data=body, headers=headers) as answer:
                acked = time.time()
                status = answer.status
                await answer.read()
            out.append(latency.Sample(fp, sent, acked, status))
            await asyncio.sleep(s.spacing)
    return out


def post_then_kill(server: Server, url: str, token: str, fp: str) -> int:
    """POST a new single-alert notification and kill -9 the server as soon as the 2xx is read."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    answer = httpx.post(url, content=payloads.single(fp, PROBES[0]), headers=headers, timeout=10)
    kill9(server)
    return int(answer.status_code)


def _wait(done: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if done():
            return True
        time.sleep(0.05)
    return done()


# -- remediator -------------------------------------------------------------------------------


def _acted(rem: Remediator, fp: str) -> bool:
    sql = "SELECT count(*) FROM events WHERE type = 'recovery:action' AND fingerprint = ?"
    return bool(rem.query(sql, (fp,))[0][0])


def measure_remediator(wd: Workdir, s: Settings) -> Side:
    side = Side("remediator")
    with Remediator(wd.sub("r-intake"), bench_config(targets=[PROBES[0], "bench-00"])) as rem:
        side.intake = intake_load(rem.pid, rem.alerts_url, rem.intake_token, wd, s)
        stored, repeats = rem.query("SELECT count(*), coalesce(sum(repeats), 0) FROM inbox")[0]
        side.intake_work = f"{stored} alert stored, {repeats:,} repeats counted"
    storm_settings = storm.Settings()
    items = storm.bodies(storm_settings)
    with Remediator(wd.sub("r-storm"), bench_config(targets=STORM_TARGETS)) as rem:
        with PeakRss(rem.pid) as rss:
            started = time.monotonic()
            sent = asyncio.run(storm.send_all(rem.alerts_url, rem.intake_token, items, len(items)))
            side.storm_seconds = storm.wait_decided(
                rem, storm_settings.alerts, started, storm_settings.deadline, []
            )
        side.storm_ok, side.storm_acked = sent.ok, sent.seconds
        side.storm_rss_kib = rss.peak_kib
        side.storm_done = int(
            rem.query("SELECT count(*) FROM inbox WHERE state != 'pending'")[0][0]
        )
    with Remediator(wd.sub("r-latency"), bench_config(targets=PROBES)) as rem:
        samples = asyncio.run(_samples(rem.alerts_url, rem.intake_token, s))
        latency.collect(rem, samples)
        side.latency = latency.Scenario("idle", samples).values("action")
        side.latency_missing = len(samples) - len(side.latency)
    config = bench_config(targets=PROBES, workers={"lease": f"{s.lease:g}s"})
    rem = Remediator(wd.sub("r-kill"), config)
    with rem:
        for trial in range(s.kills):
            fp = payloads.fingerprint(KILL_SPACE, trial)
            status = post_then_kill(rem, rem.alerts_url, rem.intake_token, fp)
            if not 200 <= status < 300:
                raise BenchError(f"remediator answered {status} to the kill trial")
            before = _acted(rem, fp)
            restarted = time.monotonic()
            rem.start()
            after = before or _wait(partial(_acted, rem, fp), s.restart_wait)
            if after and not before:
                side.kill_delays.append(time.monotonic() - restarted)
            side.kills.append(kill_outcome(before=before, after=after))
    return side


# -- EDA --------------------------------------------------------------------------------------


def _settled(peer: eda.Eda) -> bool:
    """True once a second passes without a new action."""
    before = len(eda.ran(peer.output()))
    time.sleep(1.0)
    return len(eda.ran(peer.output())) == before


def _ran_since(peer: eda.Eda, offset: int, label: str) -> bool:
    return label in eda.actions(peer.output()[offset:])


def measure_eda(wd: Workdir, s: Settings, install: eda.Installation) -> Side:
    side = Side("EDA")
    token = secrets.token_urlsafe(24)
    with eda.Eda(wd.sub("e-intake"), install, token) as peer:
        side.intake = intake_load(peer.pid, peer.url + ALERTS_PATH, token, wd, s)
        at_end = len(eda.ran(peer.output()))
        _wait(partial(_settled, peer), 30.0)
        side.intake_work = (
            f"{at_end:,} actions by the end of the run, {len(eda.ran(peer.output())):,} in all"
        )
    side.storm_per_alert = Side("EDA, one event per alert")
    for part, per_alert in ((side, False), (side.storm_per_alert, True)):
        _eda_storm(part, wd.sub("e-storm-alerts" if per_alert else "e-storm"), install, token)
    with eda.Eda(wd.sub("e-latency"), install, token) as peer:
        samples = asyncio.run(_samples(peer.url + ALERTS_PATH, token, s))
        _wait(lambda: {x.fingerprint for x in samples} <= peer.actions().keys(), 30.0)
        ran = peer.actions()
        side.latency = [ran[x.fingerprint] - x.acked for x in samples if x.fingerprint in ran]
        side.latency_missing = len(samples) - len(side.latency)
    peer = eda.Eda(wd.sub("e-kill"), install, token)
    with peer:
        for trial in range(s.kills):
            fp = payloads.fingerprint(KILL_SPACE, trial)
            status = post_then_kill(peer, peer.url + ALERTS_PATH, token, fp)
            if not 200 <= status < 300:
                raise BenchError(f"EDA answered {status} to the kill trial")
            offset = len(peer.output())
            before = fp in peer.actions()
            peer.start()
            after = _wait(partial(_ran_since, peer, offset, fp), s.restart_wait)
            side.kills.append(kill_outcome(before=before, after=after))
    return side


def _eda_storm(side: Side, workdir: Path, install: eda.Installation, token: str) -> None:
    """The storm against EDA: one action per notification (the built-in webhook), or with
    ``side.name`` naming the per-alert source, one action per firing alert."""
    per_alert = "per alert" in side.name
    storm_settings = storm.Settings()
    items = storm.bodies(storm_settings)
    if per_alert:
        space = storm.FINGERPRINTS
        wanted = {payloads.fingerprint(space, number) for number in range(storm_settings.alerts)}
    else:
        wanted = {f"storm-{n}" for n in range(storm_settings.notifications)}
    with eda.Eda(workdir, install, token, per_alert=per_alert) as peer:
        with PeakRss(peer.pid) as rss:
            started_wall, started = time.time(), time.monotonic()
            sent = asyncio.run(storm.send_all(peer.url + ALERTS_PATH, token, items, len(items)))

            def all_ran() -> bool:
                return wanted <= peer.actions().keys()

            deadline = storm_settings.deadline - (time.monotonic() - started)
            finished = _wait(all_ran, max(deadline, 0.0))
        ran = {k: v for k, v in peer.actions().items() if k in wanted}
        side.storm_ok, side.storm_acked = sent.ok, sent.seconds
        side.storm_done = len(ran)
        side.storm_rss_kib = rss.peak_kib
        side.storm_seconds = max(ran.values()) - started_wall if finished and ran else None


# -- table ------------------------------------------------------------------------------------


def _seconds(value: float | None) -> str:
    return f"{value:.1f} s" if value is not None else "not all (60 s)"


def _p(values: list[float]) -> str:
    if not values:
        return "none"
    return f"{ms(percentile(values, 50))} / {ms(percentile(values, 99))}"


def _ran_after(kills: list[str], delays: list[float]) -> str:
    after = kills.count("ran after restart")
    text = f"{after} of {len(kills)}"
    if delays:
        text += f" ({min(delays):.1f}-{max(delays):.1f} s after the restart began)"
    before = kills.count("ran before the kill")
    return text + (f" ({before} ran before the kill)" if before else "")


def table(r: Side, e: Side, s: Settings, install: eda.Installation) -> Table:
    t = Table(
        "Peer: remediator vs Event-Driven Ansible (ansible-rulebook), same payloads and load",
        ["row", "remediator", "EDA", "remediator ahead"],
    )

    def ahead(better: bool | None) -> str:
        return "n/a" if better is None else ("yes" if better else "NO")

    ri, ei = r.intake, e.intake
    if ri and ei:
        t.add(
            f"intake req/s, same notification repeated, {s.connections} conns (wrk)",
            f"{ri.rps:,.0f} (p99 {ms(ri.p99)}, {ri.errors} errors)",
            f"{ei.rps:,.0f} (p99 {ms(ei.p99)}, {ei.errors} errors)",
            ahead(ri.rps > ei.rps),
        )
        t.add(
            "intake: what the repeats became (warm-up included)",
            r.intake_work,
            e.intake_work + " (one per request)",
            "",
        )
    rs, es = r.storm_seconds, e.storm_seconds
    pa = e.storm_per_alert or Side("EDA, one event per alert")
    pas = pa.storm_seconds
    t.add(
        "storm, one action per alert: 10,000 alerts in 100 notifications, until all decided / "
        "all 10,000 actions ran (EDA: the per-alert source of bench/eda_sources)",
        _seconds(rs) + f" ({r.storm_done:,} alerts decided)",
        _seconds(pas) + f" ({pa.storm_done:,} actions, one per firing alert)",
        ahead(None if rs is None else pas is None or rs < pas),
    )
    t.add(
        "storm, EDA one action per notification (its built-in webhook source): not the same "
        "work, shown for reference",
        _seconds(rs) + f" ({r.storm_done:,} alerts decided)",
        _seconds(es) + f" ({e.storm_done} actions, one per notification)",
        "not like for like",
    )
    t.add(
        "storm: until the last of the 100 notifications was answered (EDA: per-alert source / "
        "built-in webhook)",
        f"{r.storm_acked:.2f} s ({r.storm_ok} x 2xx)",
        f"{pa.storm_acked:.2f} s ({pa.storm_ok} x 2xx) / {e.storm_acked:.2f} s "
        f"({e.storm_ok} x 2xx)",
        ahead(
            r.storm_ok >= max(e.storm_ok, pa.storm_ok)
            and r.storm_acked < min(e.storm_acked, pa.storm_acked)
        ),
    )
    t.add(
        "storm: peak RSS of the server process tree (EDA: with its JVM; per-alert source / "
        "built-in webhook)",
        f"{r.storm_rss_kib / 1024:.0f} MB",
        f"{pa.storm_rss_kib / 1024:.0f} MB / {e.storm_rss_kib / 1024:.0f} MB",
        ahead(r.storm_rss_kib < min(e.storm_rss_kib, pa.storm_rss_kib)),
    )
    both = r.latency and e.latency
    t.add(
        f"2xx -> action p50 / p99 ({s.samples} single-alert notifications, idle)",
        _p(r.latency) + (f", {r.latency_missing} without action" if r.latency_missing else ""),
        _p(e.latency) + (f", {e.latency_missing} without action" if e.latency_missing else ""),
        ahead(percentile(r.latency, 99) < percentile(e.latency, 99) if both else None),
    )
    t.add(
        "kill -9 right after the 2xx: the action ran after restart",
        _ran_after(r.kills, r.kill_delays),
        _ran_after(e.kills, e.kill_delays),
        ahead(r.kills.count("ran after restart") > e.kills.count("ran after restart")),
    )
    t.add(
        "what one request does",
        "commits every alert (SQLite, synchronous=FULL) before the 2xx; repeats deduplicated "
        "by fingerprint; one decision per alert",
        "one event per notification (built-in webhook) or per alert (per-alert source) into an "
        "in-memory queue; no durability, no dedup",
        "",
    )
    t.note(machine())
    t.note(f"remediator: {uvicorn_impl()}; dry-run playbook docker.restart + verify.health")
    t.note(
        f"EDA: {install.version()}; {install.java_version()}; installed in {install.venv}; "
        "source eda.builtin.webhook on 127.0.0.1 with a bearer token (ansible.eda.alertmanager "
        "is not on the package index), and for the per-alert storm bench/eda_sources/"
        "alertmanager_alerts.py (ours: one event per alert, loaded with --source-dir); action "
        "debug (in process, the cheapest), whose banner stamps the time it ran"
    )
    t.note(
        "storm: remediator polled until no inbox row is pending; EDA: the latest debug stamp; "
        "latency: remediator's first recovery:action (time - duration), EDA's debug stamp, "
        "minus the client's 2xx (same host clock)"
    )
    t.note(
        "EDA's built-in webhook makes one event of each notification (one action per "
        "notification); the per-alert source of this bench makes one event per alert, as the "
        "ansible.eda collection's Alertmanager source does (not installable here), and its rule "
        "acts on firing alerts only"
    )
    if ei is not None and ei.errors:
        t.note(f"EDA intake: {ei.errors} errors (non-2xx, timeouts) of {ei.requests:,} requests")
    t.note(
        f"kill -9: {s.kills} trials, a new alert each; waited {s.restart_wait:.0f} s after the "
        f"restart (remediator: same SQLite store, worker.lease {s.lease:g} s instead of 60 s: an "
        "alert the killed worker had claimed is claimed again when its lease ends; EDA: same "
        "rulebook, default settings)"
    )
    return t


def run(settings: Settings | None = None) -> list[Table]:
    s = settings or Settings()
    install = eda.Installation(s.directory)
    install.ensure()
    with Workdir("peer", keep=s.keep) as wd:
        r = measure_remediator(wd, s)
        e = measure_eda(wd, s, install)
    return [table(r, e, s, install)]
