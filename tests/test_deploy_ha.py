"""The highly available Kubernetes overlay (deploy/kubernetes-ha): the base's objects less its
Deployment and volume, plus a three-replica StatefulSet on the PostgreSQL store, the headless
Service naming each replica, a PodDisruptionBudget, and the Alertmanager receiver (plain and as an
AlertmanagerConfig) listing every replica. The overlay is composed here the way kustomize does it
for the features it uses (resources, ``$patch: delete``)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from remediator.config import model as config_mod
from tests.test_deploy import (
    ALERTS_PATH,
    DEPLOY,
    K8S_DIR,
    check_remediator_receiver,
    env_refs,
    load_docs,
    load_one,
    run,
)

HA_DIR = DEPLOY / "kubernetes-ha"
Doc = dict[str, Any]


def _key(doc: Doc) -> tuple[str, str]:
    return doc["kind"], doc["metadata"]["name"]


def _resources(directory: Path) -> list[Doc]:
    """The objects a kustomization directory makes, for what these kustomizations use."""
    kustomization = load_one(directory / "kustomization.yml")
    objects: list[Doc] = []
    for resource in kustomization["resources"]:
        path = (directory / resource).resolve()
        if path.is_dir():
            objects += _resources(path)
        else:
            objects += [d for d in load_docs(path) if d]
    for patch in kustomization.get("patches", []):
        for doc in load_docs(directory / patch["path"]):
            assert doc.pop("$patch") == "delete", "the overlay only deletes"
            found = [o for o in objects if _key(o) == _key(doc)]
            assert len(found) == 1, f"{patch['path']}: deletes {_key(doc)}, found {len(found)}"
            objects.remove(found[0])
    return objects


def _one(objects: list[Doc], kind: str, name: str | None = None) -> Doc:
    found = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def _base_pod() -> Doc:
    deployment = _one(_resources(K8S_DIR), "Deployment", "remediator")
    pod: Doc = deployment["spec"]["template"]["spec"]
    return pod


def _replica_urls(objects: list[Doc]) -> list[str]:
    """Where Alertmanager reaches each replica: its stable name through the headless Service."""
    sts = _one(objects, "StatefulSet", "remediator")
    headless = _one(objects, "Service", sts["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    namespace = load_one(HA_DIR / "kustomization.yml")["namespace"]
    port = headless["spec"]["ports"][0]["port"]
    return [
        f"http://remediator-{i}.{sts['spec']['serviceName']}.{namespace}.svc:{port}{ALERTS_PATH}"
        for i in range(sts["spec"]["replicas"])
    ]


def test_the_overlay_replaces_the_single_replica_with_three_on_postgresql() -> None:
    objects = _resources(HA_DIR)
    kinds = {_key(o) for o in objects}
    assert ("Deployment", "remediator") not in kinds
    assert ("PersistentVolumeClaim", "remediator-data") not in kinds
    for kept in ("Service", "ServiceMonitor", "PrometheusRule", "ConfigMap", "ServiceAccount"):
        assert any(kind == kept for kind, _ in kinds), kept
    sts = _one(objects, "StatefulSet", "remediator")["spec"]
    assert sts["replicas"] == 3
    pod_labels = sts["template"]["metadata"]["labels"]
    assert sts["selector"]["matchLabels"].items() <= pod_labels.items()
    for service in (o for o in objects if o["kind"] == "Service"):
        assert service["spec"]["selector"].items() <= pod_labels.items(), service["metadata"]
    budget = _one(objects, "PodDisruptionBudget", "remediator")["spec"]
    assert budget["selector"]["matchLabels"].items() <= pod_labels.items()
    assert budget["maxUnavailable"] == 1 < sts["replicas"] - 1  # two always serve


def test_the_replicas_run_the_base_pod_without_its_volume() -> None:
    """Same image, probes, security and mounts as the single replica (a change to the base's pod
    must be made here too), less the SQLite volume, plus the store's address and spreading."""
    pod = copy.deepcopy(_one(_resources(HA_DIR), "StatefulSet", "remediator"))
    spec: Doc = pod["spec"]["template"]["spec"]
    assert spec.pop("topologySpreadConstraints")[0]["topologyKey"] == "kubernetes.io/hostname"
    container = spec["containers"][0]
    added = [e for e in container["env"] if e["name"] in ("REMEDIATOR_STORE__URL", "PGPASSWORD")]
    assert len(added) == 2
    container["env"] = [e for e in container["env"] if e not in added]
    base = copy.deepcopy(_base_pod())
    base["volumes"] = [v for v in base["volumes"] if "persistentVolumeClaim" not in v]
    names = {v["name"] for v in base["volumes"]}
    for c in base["containers"]:
        c["volumeMounts"] = [m for m in c["volumeMounts"] if m["name"] in names]
    assert spec == base


def test_the_replicas_configuration_is_the_configmap_on_the_postgresql_store(
    tmp_path: Path,
) -> None:
    objects = _resources(HA_DIR)
    text: str = _one(objects, "ConfigMap", "remediator-config")["data"]["remediator.yml"]
    path = tmp_path / "remediator.yml"
    path.write_text(text, encoding="utf-8")
    container = _one(objects, "StatefulSet")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value", "from-a-secret") for e in container["env"]}
    assert env_refs(text) <= set(env)
    cfg = config_mod.load(path, env=env)
    assert cfg.store.url == env["REMEDIATOR_STORE__URL"]
    assert cfg.store.url.startswith("postgresql://remediator@")  # the password: PGPASSWORD
    assert "secretKeyRef" in next(e for e in container["env"] if e["name"] == "PGPASSWORD")["valueFrom"]  # fmt: skip


@pytest.mark.prometheus
def test_the_receiver_lists_every_replica_and_is_a_valid_alertmanager_config(
    amtool_bin: str, tmp_path: Path
) -> None:
    snippet = load_one(HA_DIR / "alertmanager-receiver.yml")
    hooks = snippet["receivers"][0]["webhook_configs"]
    assert [h["url"] for h in hooks] == _replica_urls(_resources(HA_DIR))
    token = tmp_path / "remediator.token"
    token.write_text("x" * 32 + "\n", encoding="utf-8")
    for hook in hooks:
        assert hook["send_resolved"] is True
        hook["http_config"]["authorization"]["credentials_file"] = str(token)
    full: Doc = {
        "route": {"receiver": "team", "routes": snippet["route"]["routes"]},
        "receivers": [{"name": "team"}, *snippet["receivers"]],
    }
    one = copy.deepcopy(full)
    one["receivers"][1]["webhook_configs"] = hooks[:1]
    check_remediator_receiver(one)  # the same route and receiver as the single replica's
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(full, sort_keys=False), encoding="utf-8")
    assert "SUCCESS" in run([amtool_bin, "check-config", str(path)])


def test_the_alertmanagerconfig_matches_the_receiver() -> None:
    config = load_one(HA_DIR / "alertmanagerconfig.example.yml")
    assert (config["apiVersion"], config["kind"]) == (
        "monitoring.coreos.com/v1alpha1",
        "AlertmanagerConfig",
    )
    snippet = load_one(HA_DIR / "alertmanager-receiver.yml")
    route, plain = config["spec"]["route"], snippet["route"]["routes"][0]
    assert route["receiver"] == plain["receiver"] == config["spec"]["receivers"][0]["name"]
    assert route["groupBy"] == plain["group_by"]
    timings = ("group_wait", "group_interval", "repeat_interval", "continue")
    camel = ("groupWait", "groupInterval", "repeatInterval", "continue")
    assert [route[c] for c in camel] == [plain[t] for t in timings]
    [matcher] = route["matchers"]
    assert f'{matcher["name"]}{matcher["matchType"]}"{matcher["value"]}"' == plain["matchers"][0]
    hooks = config["spec"]["receivers"][0]["webhookConfigs"]
    assert [h["url"] for h in hooks] == _replica_urls(_resources(HA_DIR))
    for hook in hooks:
        assert hook["sendResolved"] is True and hook["maxAlerts"] == 0
        assert hook["httpConfig"]["authorization"]["credentials"]["key"] == "token"
