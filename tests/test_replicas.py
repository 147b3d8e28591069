"""Several remediator replicas on one PostgreSQL database.

The singletons first (on both backends): reconciliation runs on the replica holding the
``reconcile`` lease only; the health monitor records state changes on the ``health`` lease
holder only, and a new holder picks up where the last one recorded.

Then the whole thing, for real: three ``remediator serve`` processes on one database, behind two
clustered Alertmanagers whose receiver lists all three replicas (every notification arrives
three times), acting on real containers:

* every alert leads to exactly one action (Docker's own "start" events, ``recovery:action``
  events, one remediation row per (playbook, fingerprint, episode));
* the replica running a slow restart is killed (SIGKILL) mid-way: another one takes the
  remediation over once its lease expired, finds the restart already done (the container
  started after the step began), and exactly one run completes with one restart;
* pausing through one replica stops actions on all of them, at once; resuming through another
  lets them run again;
* a target going down is seen by every replica (its own ``remediator_target_up``) but recorded
  once, by the ``health`` lease holder;
* ``remediator audit verify`` passes on the shared chain, and each lease has one live holder.

Last, a second Docker engine that goes down: only its targets' breakers open (once, though three
replicas act), a replica that never saw a failure refuses all the same, and every replica sees
the targets down while one records it.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import docker
import httpx2 as httpx
import psycopg
import pytest
import yaml

from remediator.audit import events as ev
from remediator.audit.events import EventBus
from remediator.checks.base import CheckResult
from remediator.clients import Clients
from remediator.clock import FakeClock
from remediator.config.model import AlertmanagerConfig, Config, parse
from remediator.config.targets import Target
from remediator.engine.guards import CircuitBreakers
from remediator.engine.health import LEAD_RENEW, LEAD_TTL, HealthMonitor
from remediator.engine.reconcile import Reconciler
from remediator.metrics import Metrics
from remediator.store import EventQuery, Store
from tests import waiting
from tests.alertmanager import Alertmanager
from tests.dockerd import SecondDockerd, run_sleepers
from tests.realservices import ContainerFactory
from tests.serving import Served, free_port
from tests.store_helpers import run, store_url
from tests.test_engine_docker import StartCounter, alert, post
from tests.test_engine_docker import config as engine_config
from tests.test_engine_docker import payload as engine_payload

__all__ = ["store_url"]  # the fixture
ROOT = Path(__file__).resolve().parents[1]
ALERTS = "/api/v1/recovery/alerts"
REPLICAS = 3
LEASE = 4.0  # worker.lease: how long a dead replica's claims and remediations stay its own
STOP_TIMEOUT = 3  # seconds a restart of the slow container takes (its PID 1 ignores SIGTERM)


# -- the singletons, on both backends ---------------------------------------------------------


def _am_alert(name: str, **labels: str) -> dict[str, Any]:
    return {
        "labels": {"alertname": name, "severity": "warning", **labels},
        "annotations": {"summary": f"{name} test"},
        "startsAt": datetime.now(UTC).isoformat(),
        "generatorURL": "http://127.0.0.1:9090/graph",
    }


@pytest.mark.prometheus
def test_reconciliation_runs_on_the_lease_holder_only(
    store_url: str, tmp_path: Path, alertmanager_bin: str
) -> None:
    am = Alertmanager(alertmanager_bin, tmp_path / "am")
    try:
        am.post([_am_alert("DiskFull", instance="a")])

        async def body(store: Store) -> None:
            clock = FakeClock(start=float(int(time.time())))
            settings = AlertmanagerConfig(url=am.url, reconcile_interval=60.0)

            def replica(owner: str) -> Reconciler:
                return Reconciler(
                    settings=settings, store=store, clock=clock, metrics=Metrics(), owner=owner
                )

            a, b = replica("a"), replica("b")
            try:
                first = await a.run_once()
                assert (first.ok, first.leader, first.fetched, first.new) == (True, True, 1, 1)
                other = await b.run_once()
                assert (other.ok, other.leader, other.fetched, other.new) == (True, False, 0, 0)
                clock.advance(60.0)
                assert (await a.run_once()).leader  # renewed for three intervals
                clock.advance(3 * 60.0 - 1)
                assert not (await b.run_once()).leader
                clock.advance(2.0)  # a missed its rounds: its lease expired, b takes over
                taken = await b.run_once()
                assert (taken.ok, taken.leader, taken.fetched, taken.duplicates) == (
                    True,
                    True,
                    1,
                    1,
                )
                assert not (await a.run_once()).leader
                assert await store.raw("SELECT owner FROM leases WHERE name = 'reconcile'") == [
                    ("b",)
                ]
            finally:
                await a.stop()
                await b.stop()

        run(store_url, body)
    finally:
        am.stop()


class FlippableCheck:
    """A docker_container check whose answer the test sets."""

    target_type: ClassVar[str] = "docker_container"

    def __init__(self) -> None:
        self.healthy = True

    async def check(self, target: Target, clients: Clients, *, timeout: float) -> CheckResult:
        return CheckResult(self.healthy, "up" if self.healthy else "down")


def _health_config() -> Config:
    return parse(
        {
            "targets": [{"name": "web", "type": "docker_container"}],
            "circuit_breaker": {"reset_timeout": "10s", "failure_threshold": 1},
        },
        env={},
    )


def test_health_changes_are_recorded_once_by_the_lease_holder(store_url: str) -> None:
    config = _health_config()
    [web] = config.targets

    async def body(store: Store) -> None:
        clock = FakeClock()
        check = FlippableCheck()
        clients = Clients()

        def replica(owner: str) -> tuple[HealthMonitor, Metrics]:
            metrics = Metrics()
            monitor = HealthMonitor(
                config=config,
                checks={"docker_container": check},
                clients=clients,
                store=store,
                metrics=metrics,
                clock=clock,
                bus=EventBus(),
                owner=owner,
            )
            return monitor, metrics

        async def recorded(kind: str) -> list[str]:
            found = await store.events(EventQuery(type=kind, target="web"))
            return [e.actor for e in found]

        def up(metrics: Metrics) -> float:
            value = metrics.registry.get_sample_value("remediator_target_up", {"target": "web"})
            assert value is not None
            return value

        (a, a_metrics), (b, b_metrics) = replica("a"), replica("b")
        try:
            await a.run_due()  # a takes the lease
            await b.run_due()
            check.healthy = False
            clock.advance(120.0)  # both checks due; the lease still renewed by a
            await a.run_due()
            await b.run_due()
            assert up(a_metrics) == 0 and up(b_metrics) == 0  # each replica's own metric
            assert await recorded(ev.SERVICE_DEGRADED) == ["health"]  # once, by a
            assert not await b.leading()
            # a dies. Meanwhile web recovers: b sees it, but does not hold the lease yet.
            check.healthy = True
            clock.advance(LEAD_RENEW)
            await b.check_now(web)
            assert up(b_metrics) == 1 and await recorded(ev.SERVICE_RECOVERED) == []
            clock.advance(LEAD_TTL)  # a's lease expired: b takes over from what was recorded
            await b.check_now(web)
            assert await b.leading()
            assert await recorded(ev.SERVICE_RECOVERED) == ["health"]
            assert await recorded(ev.SERVICE_DEGRADED) == ["health"]
            await b.check_now(web)
            assert await recorded(ev.SERVICE_RECOVERED) == ["health"]  # not twice
            assert await store.raw("SELECT owner FROM leases WHERE name = 'health'") == [("b",)]
        finally:
            await clients.aclose()

    run(store_url, body)


def test_only_the_lease_holder_probes_open_breakers(store_url: str) -> None:
    config = _health_config()

    async def body(store: Store) -> None:
        clock = FakeClock()
        clients = Clients()
        monitors = [
            HealthMonitor(
                config=config,
                checks={"docker_container": FlippableCheck()},
                clients=clients,
                store=store,
                metrics=Metrics(),
                clock=clock,
                bus=EventBus(),
                owner=owner,
            )
            for owner in ("a", "b")
        ]
        try:
            opened_ = await CircuitBreakers(store).report(
                "web",
                config.circuit_breaker,
                ok=False,
                now=clock.now(),
                events=lambda t: [],
            )
            assert opened_.changed_to == "open"
            await monitors[0].run_due()  # a leads; the breaker's reset timeout has not passed
            clock.advance(11.0)
            await monitors[1].run_due()  # b does not lead: leaves the breaker alone
            assert (await store.breaker("web")).state == "open"
            await monitors[0].run_due()  # a probes: healthy, so it closes
            assert (await store.breaker("web")).state == "closed"
            kinds = [e.type for e in await store.events(EventQuery(target="web"))]
            assert kinds == [ev.CIRCUIT_CLOSED, ev.CIRCUIT_HALF_OPEN]
        finally:
            await clients.aclose()

    run(store_url, body)


# -- three served replicas, two clustered Alertmanagers, real containers ----------------------


@dataclass
class Replica:
    served: Served
    index: int

    @property
    def pid(self) -> int:
        assert self.served.proc is not None
        return self.served.proc.pid

    @property
    def alive(self) -> bool:
        return self.served.proc is not None and self.served.proc.poll() is None

    def metrics(self) -> str:
        return httpx.get(self.served.url + "/metrics", timeout=10).text


class Cluster:
    """The replicas, the Alertmanagers, the containers, and the shared database."""

    def __init__(
        self,
        replicas: list[Replica],
        ams: list[Alertmanager],
        containers: dict[str, Any],
        db: str,
        client: docker.DockerClient,
    ) -> None:
        self.replicas = replicas
        self.ams = ams
        self.containers = containers
        self.db = db
        self.client = client
        self.since = time.time() - 2
        self.baseline = {key: self._starts(key) for key in containers}

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.db) as conn:
            return conn.execute(sql, params).fetchall()

    def events(self, kind: str, fingerprint: str | None = None) -> list[dict[str, Any]]:
        keys = ("type", "fingerprint", "target", "action", "outcome", "actor", "details", "time")
        sql = f"SELECT {', '.join(keys)} FROM events WHERE type = %s"
        params: tuple[Any, ...] = (kind,)
        if fingerprint is not None:
            sql += " AND fingerprint = %s"
            params += (fingerprint,)
        rows = self.query(sql + " ORDER BY id", params)
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def fingerprint(self, container: str, alertname: str) -> str | None:
        """The fingerprint Alertmanager gave the alert on ``container`` (from the inbox)."""
        for fingerprint, labels in self.query(
            "SELECT fingerprint, labels FROM inbox WHERE alertname = %s ORDER BY id", (alertname,)
        ):
            if json.loads(labels).get("container") == container:
                return str(fingerprint)
        return None

    def starts(self, container: str) -> int:
        """Docker "start" events of a container since the cluster was set up."""
        return self._starts(container) - self.baseline[container]

    def _starts(self, container: str) -> int:
        found = self.client.events(
            since=int(self.since),
            until=int(time.time()) + 1,
            decode=True,
            filters={"container": self.containers[container].id, "event": "start"},
        )
        return sum(1 for _ in found)

    def docker_events(self, container: str, action: str, since: float) -> int:
        found = self.client.events(
            since=int(since),
            until=int(time.time()) + 1,
            decode=True,
            filters={"container": self.containers[container].id, "event": action},
        )
        return sum(1 for _ in found)

    def post(self, alerts: list[dict[str, Any]]) -> None:
        """As Prometheus does: the same alerts to every Alertmanager."""
        for am in self.ams:
            am.post(alerts)

    def alert(self, alertname: str, container: str) -> list[dict[str, Any]]:
        return [_am_alert(alertname, container=container)]  # the target's name

    def by_owner(self, owner: str) -> Replica | None:
        """The replica whose worker name ("hostname:pid") is ``owner``."""
        return next((r for r in self.replicas if owner.endswith(f":{r.pid}")), None)

    def live(self) -> list[Replica]:
        return [r for r in self.replicas if r.alive]

    def diagnostics(self) -> str:
        """The replicas' logs (without routine lines), the shared state, Alertmanager logs."""
        routine = ('"logger": "httpx2"', "reconciled with alertmanager", '"logger": "uvicorn')
        parts = []
        for r in self.replicas:
            lines = r.served.log_path.read_text(errors="replace").splitlines()
            kept = [ln for ln in lines if ln.startswith("{") and not any(x in ln for x in routine)]
            parts.append(f"--- replica {r.index} (pid {r.pid})\n" + "\n".join(kept[-25:]))
        for table in ("remediations", "inbox", "leases"):
            with contextlib.suppress(psycopg.Error):
                rows = self.query(f"SELECT * FROM {table} ORDER BY 1")
                parts.append(f"--- {table}\n" + "\n".join(map(str, rows[-12:])))
        parts += [f"--- {am.url}\n{am.log_path.read_text()[-800:]}" for am in self.ams]
        return "\n".join(parts)


def wait_for(check: Callable[[], Any], *, timeout: float, what: str, cluster: Cluster) -> Any:
    """The shared poll, with the cluster's diagnostics added to a timeout."""
    try:
        return waiting.wait_for(check, timeout=timeout, what=what, every=0.2)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{cluster.diagnostics()}") from None


def _replica_config(db: str, containers: dict[str, Any]) -> dict[str, Any]:
    def target(key: str, **extra: Any) -> dict[str, Any]:
        name = containers[key].name
        return {"name": key, "type": "docker_container", "container": name, **extra}

    def playbook(name: str, alertname: str, stop_timeout: int) -> dict[str, Any]:
        return {
            "name": name,
            "match": [f'alertname="{alertname}"'],
            "target": "{{ labels.container }}",
            # timeout: how long a heir waits for the effect of a restart its dead owner began
            "steps": [{"action": "docker.restart", "stop_timeout": stop_timeout, "timeout": "10s"}],
            "cooldown": "0s",
            "max_per_window": None,
            "retry": {"max_attempts": 1},
        }

    return {
        "store": {"url": f"{db}?pool_size=5"},
        "targets": [
            *(target(key) for key in containers if key != "watched"),
            target("watched", check_interval="1s"),
        ],
        "playbooks": [
            playbook("restart-fast", "ReplicaFast", 1),
            playbook("restart-slow", "ReplicaSlow", STOP_TIMEOUT),
        ],
        "worker": {"lease": f"{LEASE:.0f}s", "poll_interval": "200ms"},
        "safety": {"blast_radius": 1.0},
        "health": {"enabled": True},
        # The test reads every replica's API often; keep it from rate-limiting the test.
        "api": {"rate_limit": {"rate": 1000, "burst": 1000}},
    }


@pytest.fixture
def cluster(
    tmp_path: Path,
    tokens: dict[str, str],
    pg_database: str,
    alertmanager_bin: str,
    docker_client: docker.DockerClient,
    container_factory: ContainerFactory,
) -> Iterator[Cluster]:
    prefix = f"remediator-replicas-{uuid.uuid4().hex[:6]}"
    containers: dict[str, Any] = {
        key: container_factory(("sleep", "3600"), init=True, name_prefix=f"{prefix}-{key}")
        for key in ("web1", "web2", "web3", "calm", "watched")
    }
    # No init: busybox sleep as PID 1 ignores SIGTERM, so a restart waits stop_timeout.
    containers["slow"] = container_factory(("sleep", "3600"), name_prefix=f"{prefix}-slow")
    replicas: list[Replica] = []
    ams: list[Alertmanager] = []
    try:
        config = _replica_config(pg_database, containers)
        for n in range(REPLICAS):
            workdir = tmp_path / f"replica{n}"
            workdir.mkdir()
            replicas.append(Replica(Served(workdir, config, tokens), n))
        cluster_ports = [free_port(), free_port()]
        for n, own in enumerate(cluster_ports):
            ams.append(
                Alertmanager(
                    alertmanager_bin,
                    tmp_path / f"am{n}",
                    token=tokens["alertmanager"],
                    webhook_urls=[r.served.url + ALERTS for r in replicas],
                    cluster_port=own,
                    peers=[p for p in cluster_ports if p != own],
                )
            )
        for replica in replicas:  # reconciliation reads the first Alertmanager
            path = replica.served.config_path
            data = yaml.safe_load(path.read_text())
            data["alertmanager"] = {"url": ams[0].url, "reconcile_interval": "2s"}
            path.write_text(yaml.safe_dump(data))
        with ThreadPoolExecutor(REPLICAS) as pool:
            list(pool.map(lambda r: r.served.start(timeout=40), replicas))
        yield Cluster(replicas, ams, containers, pg_database, docker_client)
    finally:
        for replica in replicas:
            replica.served.stop()  # by the PID of the process it started
        for am in ams:
            am.stop()


def _sees_down(replica: Replica, target: str) -> bool:
    return f'remediator_target_up{{target="{target}"}} 0.0' in replica.metrics()


def _served_config(cluster: Cluster, tmp_path: Path) -> Path:
    """A configuration naming the shared store, for the CLI."""
    path = tmp_path / "cli.yml"
    path.write_text(f"store: {{url: '{cluster.db}'}}\n")
    return path


@pytest.mark.postgres
@pytest.mark.docker
@pytest.mark.prometheus
def test_three_replicas_behind_an_alertmanager_pair(
    cluster: Cluster, tmp_path: Path, tokens: dict[str, str]
) -> None:
    began = time.monotonic()
    c = cluster
    wait_for(
        lambda: all(am.cluster_peers() == 2 for am in c.ams),
        timeout=20,
        what="the Alertmanagers to see each other",
        cluster=c,
    )

    # 1. Three alerts, each delivered to every replica: one action each. -------------------
    c.post([a for key in ("web1", "web2", "web3") for a in c.alert("ReplicaFast", key)])
    fast = {
        key: wait_for(
            functools.partial(c.fingerprint, key, "ReplicaFast"),
            timeout=20,
            what=f"the alert on {key} stored",
            cluster=c,
        )
        for key in ("web1", "web2", "web3")
    }
    wait_for(
        lambda: len(c.events(ev.RECOVERY_SUCCEEDED)) >= 3,
        timeout=30,
        what="three remediations",
        cluster=c,
    )
    time.sleep(2.0)  # room for a wrong second action (late deliveries, reconcile rounds)
    for key, fingerprint in fast.items():
        assert c.starts(key) == 1, key
        actions = c.events(ev.RECOVERY_ACTION, fingerprint)
        assert [(a["action"], a["outcome"]) for a in actions] == [("docker.restart", "success")]
        assert len(c.events(ev.RECOVERY_SUCCEEDED, fingerprint)) == 1
        # Every replica got the notification: stored once, the other copies duplicates (the
        # first one recorded, the next within audit.duplicate_interval counted on its row).
        assert len(c.events("alert:received", fingerprint)) == 1
        assert len(c.events("alert:duplicate", fingerprint)) >= 1
        repeats = c.query("SELECT sum(repeats) FROM inbox WHERE fingerprint = %s", (fingerprint,))[
            0
        ][0]
        assert repeats >= REPLICAS - 1
    rows = c.query(
        "SELECT playbook, fingerprint, episode_id, state, owner FROM remediations ORDER BY id"
    )
    assert sorted((r[0], r[1], r[3]) for r in rows) == sorted(
        ("restart-fast", fp, "succeeded") for fp in fast.values()
    )
    assert all(c.by_owner(str(r[4])) is not None for r in rows)
    for replica in c.replicas:  # each received the webhooks itself
        assert 'remediator_webhook_requests_total{code="200"}' in replica.metrics()
        received = [
            line
            for line in replica.metrics().splitlines()
            if line.startswith('remediator_webhook_requests_total{code="200"}')
        ]
        assert received and float(received[0].split()[-1]) >= 1, replica.index

    # 2. The replica running a slow restart dies mid-way: another completes it, once. -------
    slow_since = time.time()
    c.post(c.alert("ReplicaSlow", "slow"))
    wait_for(
        lambda: c.docker_events("slow", "kill", slow_since - 1) >= 1,
        timeout=20,
        what="the slow restart to begin (SIGTERM sent)",
        cluster=c,
    )
    [(rid, owner, state)] = c.query(
        "SELECT id, owner, state FROM remediations WHERE playbook = 'restart-slow'"
    )
    assert state == "running"
    victim = c.by_owner(str(owner))
    assert victim is not None, owner
    time.sleep(1.0)  # well inside the restart (stop_timeout 3s)
    victim.served.kill9()
    killed_at = time.time()
    slow_fp = c.fingerprint("slow", "ReplicaSlow")
    assert slow_fp is not None
    wait_for(
        lambda: c.query("SELECT state FROM remediations WHERE id = %s", (rid,)) == [("succeeded",)],
        timeout=40,
        what="the taken-over remediation to succeed",
        cluster=c,
    )
    [(new_owner, attempts)] = c.query(
        "SELECT owner, attempts FROM remediations WHERE id = %s", (rid,)
    )
    heir = c.by_owner(str(new_owner))
    assert heir is not None and heir is not victim and heir.alive
    assert attempts == 1  # the heir's one attempt
    assert len(c.events(ev.RECOVERY_SUCCEEDED, slow_fp)) == 1
    assert [(a["action"], a["outcome"]) for a in c.events(ev.RECOVERY_ACTION, slow_fp)] == [
        ("docker.restart", "already_done")
    ]
    started = c.events("recovery:started", slow_fp)
    assert len(started) == 2  # the dead replica's, and the heir's takeover
    assert started[1]["time"] >= killed_at + 1.0  # only once the dead one's lease expired
    # dockerd finishes the restart the dead replica asked for (a client's death does not
    # cancel it); the heir finds its intent, sees the container started since, and does not
    # restart it again: one start, one completed run.
    time.sleep(1.0)
    assert c.starts("slow") == 1
    [(inbox_state, inbox_attempts)] = c.query(
        "SELECT state, attempts FROM inbox WHERE fingerprint = %s", (slow_fp,)
    )
    assert (inbox_state, inbox_attempts) == ("done", 2)

    # 3. Pause through one replica: the next alert, through the other, does nothing. -------
    first, second = c.live()
    paused = httpx.post(
        first.served.url + "/api/v1/recovery/pause",
        json={"reason": "replicas test"},
        headers=first.served.headers("admin"),
        timeout=10,
    )
    assert paused.status_code == 200, paused.text
    paused_at = time.time()

    def webhook(replica: Replica, fingerprint: str) -> None:
        body = {
            "version": "4",
            "groupKey": '{}:{alertname="ReplicaFast"}',
            "truncatedAlerts": 0,
            "status": "firing",
            "receiver": "remediator",
            "groupLabels": {"alertname": "ReplicaFast"},
            "commonLabels": {},
            "commonAnnotations": {},
            "externalURL": c.ams[0].url,
            "alerts": [
                {
                    "status": "firing",
                    "labels": {"alertname": "ReplicaFast", "container": "calm"},
                    "annotations": {},
                    "startsAt": datetime.now(UTC).isoformat(),
                    "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "http://127.0.0.1:9090/graph",
                    "fingerprint": fingerprint,
                }
            ],
        }
        answer = httpx.post(
            replica.served.url + ALERTS,
            json=body,
            headers=replica.served.headers("alertmanager"),
            timeout=10,
        )
        assert answer.status_code == 200, answer.text

    webhook(second, "feed0000000000a1")
    assert time.time() - paused_at < 1.0
    [skipped] = wait_for(
        lambda: c.events(ev.RECOVERY_SKIPPED, "feed0000000000a1"),
        timeout=10,
        what="the paused alert decided",
        cluster=c,
    )
    assert skipped["outcome"] == "paused"
    assert c.events(ev.RECOVERY_ACTION, "feed0000000000a1") == []
    assert c.query(
        "SELECT state, reason FROM remediations WHERE fingerprint = 'feed0000000000a1'"
    ) == [("blocked", "paused")]
    resumed = httpx.post(
        second.served.url + "/api/v1/recovery/resume",
        headers=second.served.headers("admin"),
        timeout=10,
    )
    assert resumed.status_code == 200, resumed.text
    webhook(first, "feed0000000000a2")
    wait_for(
        lambda: c.events(ev.RECOVERY_SUCCEEDED, "feed0000000000a2"),
        timeout=15,
        what="an action after resuming",
        cluster=c,
    )
    assert c.starts("calm") == 1  # the resumed one only

    # 4. A target goes down: every replica sees it, one records it. ------------------------
    c.containers["watched"].kill()
    for replica in c.live():
        wait_for(
            functools.partial(_sees_down, replica, "watched"),
            timeout=10,
            what=f"replica {replica.index} to see the target down",
            cluster=c,
        )
    # The holder may have been the killed replica: a new one takes over within LEAD_TTL.
    wait_for(
        lambda: [e for e in c.events(ev.SERVICE_DEGRADED) if e["target"] == "watched"],
        timeout=LEAD_TTL + LEAD_RENEW + 5,
        what="service:degraded recorded",
        cluster=c,
    )
    time.sleep(3.0)  # three more checks on every replica
    degraded = [e for e in c.events(ev.SERVICE_DEGRADED) if e["target"] == "watched"]
    assert [e["actor"] for e in degraded] == ["health"]

    # 5. One chain, intact; one live holder per lease. -------------------------------------
    verified = subprocess.run(
        [sys.executable, "-m", "remediator", "audit", "verify", "--config",
         str(_served_config(c, tmp_path))],
        capture_output=True, text=True, timeout=60, check=False, cwd=ROOT, env=dict(os.environ),
    )  # fmt: skip
    assert verified.returncode == 0, verified.stderr
    assert "audit chain intact" in verified.stdout
    leases = c.query("SELECT name, owner, until FROM leases ORDER BY name")
    names = [name for name, _, _ in leases]
    assert len(names) == len(set(names))
    assert {"health", "reconcile", "retention"} <= set(names)
    now = time.time()
    for name, owner, until in leases:
        holder = c.by_owner(str(owner))
        assert holder is not None, (name, owner)
        assert until > now, name
        # Renewed every few seconds, these moved to a live replica; retention renews hourly
        # (a 3-hour lease), so its holder may be the killed replica until that expires.
        if name in ("health", "reconcile"):
            assert holder.alive, (name, owner)
    # Reconciliation rounds ran on one replica at a time: the holder, and (before it died)
    # possibly the killed one.
    holder = c.by_owner(str(dict((n, o) for n, o, _ in leases)["reconcile"]))
    rounds = {
        r.index
        for r in c.replicas
        if "reconciled with alertmanager" in r.served.log_path.read_text()
    }
    assert rounds <= {holder.index if holder else -1, victim.index}, rounds
    assert time.monotonic() - began < 120


# -- a second Docker engine: only its targets' breakers open, on every replica -------------


@pytest.mark.postgres
@pytest.mark.docker
def test_an_engine_that_is_down_opens_only_its_targets_breakers_for_every_replica(
    tmp_path: Path,
    tokens: dict[str, str],
    pg_database: str,
    far_engine: SecondDockerd,
    container_factory: ContainerFactory,
    docker_client: docker.DockerClient,
    test_image: str,
) -> None:
    near = [container_factory(("sleep", "3600"), init=True) for _ in range(2)]
    far = run_sleepers(far_engine, test_image, 2)
    targets: list[dict[str, Any]] = [
        {"name": f"near-{i}", "type": "docker_container", "container": c.name}
        for i, c in enumerate(near)
    ] + [
        {"name": f"far-{i}", "type": "docker_container", "container": c.name,
         "docker_host": far_engine.url}
        for i, c in enumerate(far)
    ]  # fmt: skip
    config = engine_config(targets, max_per_window=None)
    config.update(
        store={"url": f"{pg_database}?pool_size=5"},
        circuit_breaker={"failure_threshold": 2, "reset_timeout": "1h"},
        safety={"blast_radius": 1.0},
        health={"enabled": True, "service_interval": "1s"},
        worker={"lease": f"{LEASE:.0f}s", "poll_interval": "200ms"},
        api={"rate_limit": {"rate": 1000, "burst": 1000}},
    )
    counters = [StartCounter(docker_client, c.id) for c in near]
    replicas: list[Served] = []
    try:
        for n in range(REPLICAS):
            workdir = tmp_path / f"replica{n}"
            workdir.mkdir()
            replicas.append(Served(workdir, config, tokens))
        with ThreadPoolExecutor(REPLICAS) as pool:
            list(pool.map(lambda r: r.start(timeout=40), replicas))

        def query(sql: str) -> list[tuple[Any, ...]]:
            with psycopg.connect(pg_database) as conn:
                return conn.execute(sql).fetchall()

        def count(kind: str) -> int:
            return int(query(f"SELECT count(*) FROM events WHERE type = '{kind}'")[0][0])

        far_engine.stop()
        # Two rounds, each alert through another replica than the last: the far engine's
        # targets fail twice (the threshold), the near ones are restarted.
        for round_ in range(2):
            for i, target in enumerate(targets):
                replica = replicas[(i + round_) % REPLICAS]
                post(replica, engine_payload(alert(f"r{round_}{target['name']}", target["name"])))
            deadline = time.monotonic() + 60
            while count(ev.RECOVERY_ACTION) < 4 * (round_ + 1):
                assert time.monotonic() < deadline, f"round {round_} not done"
                time.sleep(0.2)
        opened = sorted(t for (t,) in query(
            "SELECT target FROM events WHERE type = 'circuit:open' ORDER BY target"
        ))  # fmt: skip
        trail = query(
            "SELECT id, type, target, outcome, fingerprint, message FROM events "
            "WHERE target LIKE 'far-%' ORDER BY id"
        )
        breakers = query("SELECT * FROM breakers ORDER BY target")
        # once each, though three replicas acted
        assert opened == ["far-0", "far-1"], "\n".join(map(str, [*trail, *breakers]))
        assert dict(query("SELECT target, state FROM breakers")) == {
            "near-0": "closed", "near-1": "closed", "far-0": "open", "far-1": "open",
        }  # fmt: skip
        assert [c.count() for c in counters] == [2, 2]  # the near engine kept working
        # The third replica never saw a far failure; it refuses all the same.
        post(replicas[2], engine_payload(alert("r2far-0", "far-0")))
        deadline = time.monotonic() + 20
        while not query(
            "SELECT 1 FROM events WHERE type = 'recovery:skipped' AND outcome = 'circuit_open' "
            "AND fingerprint = 'r2far-0'"
        ):
            assert time.monotonic() < deadline, "the shared breaker did not refuse"
            time.sleep(0.2)
        assert count(ev.RECOVERY_ACTION) == 8  # refused without touching Docker
        for replica in replicas:  # every replica checks the far targets itself
            metrics = ""
            deadline = time.monotonic() + 15
            while 'remediator_target_up{target="far-0"} 0.0' not in metrics:
                assert time.monotonic() < deadline, "far-0 not seen down"
                time.sleep(0.2)
                metrics = httpx.get(replica.url + "/metrics", timeout=10).text
            assert 'remediator_target_up{target="near-0"} 1.0' in metrics
        recorded = (
            "SELECT target, count(*) FROM events WHERE type = 'service:degraded' "
            "AND actor = 'health' AND target LIKE 'far-%' GROUP BY target"
        )
        deadline = time.monotonic() + 20
        while len(query(recorded)) < 2:
            assert time.monotonic() < deadline, "far targets not recorded degraded"
            time.sleep(0.2)
        time.sleep(2.0)  # two more checks on every replica
        assert dict(query(recorded)) == {"far-0": 1, "far-1": 1}  # once, by the lease holder
    finally:
        for replica in replicas:
            replica.stop()


# -- killed mid-restart, again and again: never a second restart ----------------------------

KILL_CONTAINERS = 5  # slow containers per round, alerted at once (all restarting together:
# a replica runs its Docker calls on the default thread pool, 6 threads on 2 cores)
KILL_TAKEOVERS = 20  # restarts taken over from a killed replica, at least, over the rounds


@pytest.fixture
def kill_cluster(
    tmp_path: Path,
    tokens: dict[str, str],
    pg_database: str,
    docker_client: docker.DockerClient,
    container_factory: ContainerFactory,
) -> Iterator[Cluster]:
    """Three replicas on one database (webhooks posted to them directly), acting on slow
    containers: busybox sleep as PID 1 ignores SIGTERM, so each restart waits stop_timeout."""
    prefix = f"remediator-kills-{uuid.uuid4().hex[:6]}"
    containers: dict[str, Any] = {
        f"slow{n}": container_factory(("sleep", "3600"), name_prefix=f"{prefix}-slow{n}")
        for n in range(KILL_CONTAINERS)
    }
    containers["watched"] = container_factory(("sleep", "3600"), init=True, name_prefix=prefix)
    config = _replica_config(pg_database, containers)
    config["safety"]["max_concurrent_actions"] = KILL_CONTAINERS
    config["health"] = {"enabled": False}
    replicas = []
    try:
        for n in range(REPLICAS):
            workdir = tmp_path / f"replica{n}"
            workdir.mkdir()
            replicas.append(Replica(Served(workdir, config, tokens), n))
        with ThreadPoolExecutor(REPLICAS) as pool:
            list(pool.map(lambda r: r.served.start(timeout=40), replicas))
        yield Cluster(replicas, [], containers, pg_database, docker_client)
    finally:
        for replica in replicas:
            replica.served.stop()  # by the PID of the process it started


def _slow_alerts(round_: int, keys: list[str]) -> dict[str, Any]:
    """One notification of every slow container's alert, with this round's fingerprints."""
    alerts = [
        {
            "status": "firing",
            "labels": {"alertname": "ReplicaSlow", "container": key},
            "annotations": {},
            "startsAt": datetime.now(UTC).isoformat(),
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://127.0.0.1:9090/graph",
            "fingerprint": f"{round_:04x}{n:012x}",
        }
        for n, key in enumerate(keys)
    ]
    return {
        "version": "4",
        "groupKey": '{}:{alertname="ReplicaSlow"}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "remediator",
        "groupLabels": {"alertname": "ReplicaSlow"},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "alerts": alerts,
    }


class StartStream:
    """Docker "start" events of some containers, counted live from the engine's event stream
    (its history keeps only the last few hundred events, too few for many rounds)."""

    def __init__(self, client: docker.DockerClient, ids: list[str]) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self._stream = client.events(decode=True, filters={"event": "start", "container": ids})
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with contextlib.suppress(Exception):  # the stream closed
            for found in self._stream:
                self.counts[found["id"]] += 1

    def close(self) -> None:
        self._stream.close()
        self._thread.join(5)


def _restarts_began(cluster: Cluster, keys: list[str], since: float) -> bool:
    """Whether dockerd sent each container its stop signal (a restart began) since then."""
    found = cluster.client.events(
        since=since,
        until=time.time(),  # in the past: the query does not wait for new events
        decode=True,
        filters={"event": "kill", "container": [cluster.containers[k].id for k in keys]},
    )
    return {e["id"] for e in found} >= {cluster.containers[k].id for k in keys}


def _all_succeeded(cluster: Cluster, fingerprints: list[str]) -> bool:
    sql = "SELECT count(*) FROM remediations WHERE state = 'succeeded' AND fingerprint = ANY(%s)"
    return cluster.query(sql, (fingerprints,)) == [(len(fingerprints),)]


@pytest.mark.postgres
@pytest.mark.docker
def test_a_replica_killed_mid_restart_never_gets_a_container_restarted_twice(
    kill_cluster: Cluster,
) -> None:
    """Round after round, every slow container is alerted at once; once all the restarts
    began, the replicas running them (all but one replica at most) are killed. The heirs take
    them over, find each restart already done, and each container starts exactly once per
    round, until at least KILL_TAKEOVERS restarts were taken over."""
    began = time.monotonic()
    c = kill_cluster
    keys = [key for key in c.containers if key != "watched"]
    ids = {key: c.containers[key].id for key in keys}
    starts = StartStream(c.client, list(ids.values()))
    taken_over = 0
    round_ = 0
    while taken_over < KILL_TAKEOVERS:
        round_ += 1
        assert round_ <= 8, f"only {taken_over} restarts taken over in {round_ - 1} rounds"
        since = time.time()
        sender = c.live()[0]
        answer = httpx.post(
            sender.served.url + ALERTS,
            json=_slow_alerts(round_, keys),
            headers=sender.served.headers("alertmanager"),
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        wait_for(
            functools.partial(_restarts_began, c, keys, since),
            timeout=20,
            what=f"every restart to begin (round {round_})",
            cluster=c,
        )
        time.sleep(0.5)  # inside the restarts (stop_timeout 3s)
        fingerprints = [f"{round_:04x}{n:012x}" for n in range(len(keys))]
        rows = c.query(
            "SELECT fingerprint, owner FROM remediations WHERE state = 'running' "
            "AND fingerprint = ANY(%s)",
            (fingerprints,),
        )
        owners: dict[str, list[str]] = {}
        for fingerprint, owner in rows:
            owners.setdefault(str(owner), []).append(str(fingerprint))
        # The busiest owners die; one replica at least lives to take their work over.
        doomed = sorted(owners, key=lambda o: len(owners[o]), reverse=True)[: REPLICAS - 1]
        victims = [r for r in (c.by_owner(o) for o in doomed) if r is not None]
        assert victims, rows
        for victim in victims:
            victim.served.kill9()
        heirs = {fp for o in doomed for fp in owners[o]}
        wait_for(
            functools.partial(_all_succeeded, c, fingerprints),
            timeout=40,
            what=f"round {round_}'s remediations to succeed",
            cluster=c,
        )
        time.sleep(1.0)  # room for a wrong second restart
        assert {key: starts.counts[ids[key]] for key in keys} == dict.fromkeys(keys, round_)
        for fingerprint in fingerprints:
            outcomes = [a["outcome"] for a in c.events(ev.RECOVERY_ACTION, fingerprint)]
            assert outcomes == ["already_done" if fingerprint in heirs else "success"], (
                fingerprint,
                outcomes,
            )
        taken_over += len(heirs)
        print(f"round {round_}: {len(heirs)} restarts taken over, {time.monotonic() - began:.0f}s")
        with ThreadPoolExecutor(len(victims)) as pool:  # back to three replicas
            list(pool.map(lambda r: r.served.start(timeout=40), victims))
    starts.close()
    assert time.monotonic() - began < 150
