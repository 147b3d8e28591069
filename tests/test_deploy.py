"""The deployable stack in ``deploy/`` is consistent, valid and safe. Nothing here starts a
container or pulls an image.

- every YAML file under ``deploy/`` parses (multi-document aware);
- the compose stack: its build, bind mounts and secrets exist, Prometheus (``promtool check
  config``, with the mounted rule paths mapped back to the repository) and Alertmanager
  (``amtool check-config``) accept their configurations, and the services point at each other;
- every remediator configuration (compose, Kubernetes ConfigMap, systemd, ``make run``) passes
  ``remediator check-config`` and agrees with where it is deployed (listen address, store on a
  volume, token files that are mounted);
- the Alertmanager snippet in ``deploy/alertmanager/receiver.yml`` makes a valid configuration;
- the Dockerfile runs as non-root with a health check; the Kubernetes Deployment runs as
  non-root with liveness on /-/healthy, readiness on /-/ready and a single replica;
- the PrometheusRule holds exactly the rules of ``rules/*.rules.yml``.
"""

from __future__ import annotations

import configparser
import copy
import fnmatch
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, cast
from urllib.parse import urlsplit

import pytest
import yaml

from remediator.config import model as config_mod
from remediator.config.auth import load_credentials
from remediator.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
COMPOSE_DIR = DEPLOY / "compose"
K8S_DIR = DEPLOY / "kubernetes"
RULES_DIR = ROOT / "rules"
HEALTH_PATH = "/api/v1/recovery/health"
ALERTS_PATH = "/api/v1/recovery/alerts"
DATA_DIR = "/var/lib/remediator"
ENV_REF = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)\}")
NOTIFICATIONS_BLOCK = re.compile(
    r"^# BEGIN notifications example\n(?P<body>.*?)^# END notifications example$",
    re.DOTALL | re.MULTILINE,
)
MIN_TOKEN_LENGTH = 16  # remediator.config.auth refuses shorter tokens

Doc = dict[str, Any]


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------


def yaml_files() -> list[Path]:
    found = [*DEPLOY.rglob("*.yml"), *DEPLOY.rglob("*.yaml")]
    return sorted(p for p in found if p.is_file())


def load_docs(path: Path) -> list[Any]:
    with path.open(encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc is not None]


def load_one(path: Path) -> Doc:
    docs = load_docs(path)
    assert len(docs) == 1, f"{path}: expected one YAML document, found {len(docs)}"
    assert isinstance(docs[0], dict), f"{path}: not a mapping"
    return cast(Doc, docs[0])


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def run(args: list[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None) -> str:
    """Run a command; fail the test with its output unless it exits 0."""
    done = subprocess.run(
        args,
        cwd=cwd,
        env=None if env is None else dict(env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = (done.stdout + done.stderr).strip()
    assert done.returncode == 0, f"{shlex.join(args)} exited {done.returncode}:\n{output}"
    return output


def env_refs(text: str) -> set[str]:
    return set(ENV_REF.findall(text))


def check_config(path: Path, extra_env: Mapping[str, str] | None = None) -> config_mod.Config:
    """``remediator check-config PATH`` (the real command) must pass; then the parsed config.

    Every ``${VAR}`` the file uses is set to a placeholder, as the deployment would set it.
    """
    text = path.read_text(encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("REMEDIATOR_")}
    placeholders = {name: f"placeholder-{name.lower()}" for name in env_refs(text)}
    env.update(placeholders)
    env.update(extra_env or {})
    out = run([sys.executable, "-m", "remediator", "check-config", str(path)], cwd=ROOT, env=env)
    assert "valid" in out, out
    return config_mod.load(path, env=env)


def url_host_port(url: str) -> tuple[str, int | None]:
    parts = urlsplit(url if "://" in url else f"//{url}")
    assert parts.hostname, f"no host in {url!r}"
    return parts.hostname, parts.port


def sqlite_file(url: str) -> PurePosixPath:
    assert url.startswith("sqlite:////"), f"store url {url!r} is not an absolute sqlite path"
    return PurePosixPath(url.removeprefix("sqlite:///"))


def under(path: PurePosixPath | str, directory: str) -> bool:
    return PurePosixPath(path).is_relative_to(PurePosixPath(directory))


def rule_groups(paths: list[Path]) -> list[Doc]:
    groups: list[Doc] = []
    for path in paths:
        groups.extend(load_one(path)["groups"])
    return groups


def repo_rule_files() -> list[Path]:
    files = sorted(RULES_DIR.glob("*.rules.yml"))
    assert files, "no rules/*.rules.yml"
    return files


# ------------------------------------------------------------------------------------------------
# every YAML file
# ------------------------------------------------------------------------------------------------


def test_deploy_has_yaml_files() -> None:
    names = {rel(p) for p in yaml_files()}
    for expected in (
        "deploy/compose/compose.yml",
        "deploy/compose/prometheus.yml",
        "deploy/compose/alertmanager.yml",
        "deploy/compose/remediator.yml",
        "deploy/alertmanager/receiver.yml",
        "deploy/kubernetes/deployment.yml",
        "deploy/kubernetes/prometheusrule.yml",
    ):
        assert expected in names


@pytest.mark.parametrize("path", yaml_files(), ids=rel)
def test_yaml_parses(path: Path) -> None:
    docs = load_docs(path)
    assert docs, f"{rel(path)} has no YAML document"
    for doc in docs:
        assert isinstance(doc, dict), f"{rel(path)}: every document must be a mapping"


# ------------------------------------------------------------------------------------------------
# compose
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    read_only: bool

    @property
    def is_bind(self) -> bool:
        return self.source.startswith(("/", "."))

    def host_path(self) -> Path:
        return (COMPOSE_DIR / self.source).resolve()


def compose() -> Doc:
    return load_one(COMPOSE_DIR / "compose.yml")


def service(name: str) -> Doc:
    services: dict[str, Doc] = compose()["services"]
    assert name in services, f"compose.yml has no service {name!r}"
    return services[name]


def mounts(svc: Doc) -> list[Mount]:
    out: list[Mount] = []
    for volume in svc.get("volumes", []):
        if isinstance(volume, str):
            parts = volume.split(":")
            assert len(parts) in (2, 3), f"unexpected volume syntax {volume!r}"
            options = parts[2].split(",") if len(parts) == 3 else []
            out.append(Mount(parts[0], parts[1], "ro" in options))
        else:
            out.append(Mount(volume["source"], volume["target"], bool(volume.get("read_only"))))
    return out


def container_path(svc: Doc, path: str) -> Path:
    """The host path of ``path`` inside a compose service, through its bind mounts."""
    best: Mount | None = None
    for mount in mounts(svc):
        longer = best is None or len(mount.target) > len(best.target)
        if mount.is_bind and under(path, mount.target) and longer:
            best = mount
    assert best is not None, f"{path} is not on a bind mount"
    return best.host_path() / PurePosixPath(path).relative_to(best.target)


def service_secret_paths(svc: Doc) -> dict[str, str]:
    """Secret name -> where compose mounts it in the service."""
    out: dict[str, str] = {}
    for item in svc.get("secrets", []):
        if isinstance(item, str):
            out[item] = f"/run/secrets/{item}"
        else:
            out[item["source"]] = item.get("target", f"/run/secrets/{item['source']}")
    return out


def test_compose_builds_remediator_from_the_dockerfile() -> None:
    build = service("remediator")["build"]
    context = (COMPOSE_DIR / build["context"]).resolve()
    assert context == ROOT, "the build context must be the repository root (pip install .)"
    dockerfile = context / build["dockerfile"]
    assert dockerfile == DEPLOY / "Dockerfile"
    assert dockerfile.is_file()


def test_compose_bind_mounts_exist_and_named_volumes_are_declared() -> None:
    doc = compose()
    declared = set(doc.get("volumes") or {})
    for name, svc in doc["services"].items():
        for mount in mounts(svc):
            if mount.source.startswith("."):
                assert mount.host_path().exists(), (
                    f"service {name}: {mount.source} does not exist relative to deploy/compose"
                )
                assert mount.read_only, f"service {name}: mount {mount.source} read-only"
            elif not mount.source.startswith("/"):
                assert mount.source in declared, f"service {name}: volume {mount.source}"


def test_compose_grafana_is_provisioned_from_the_repository() -> None:
    grafana = service("grafana")
    sources = {m.target: m.host_path() for m in mounts(grafana) if m.is_bind}
    assert (
        sources["/etc/grafana/provisioning/datasources"]
        == ROOT / "grafana/provisioning/datasources"
    )
    assert (
        sources["/etc/grafana/provisioning/dashboards"] == ROOT / "grafana/provisioning/dashboards"
    )
    assert sources["/var/lib/grafana/dashboards"] == ROOT / "grafana/dashboards"
    datasource = load_one(ROOT / "grafana/provisioning/datasources/prometheus.yml")
    host, port = url_host_port(datasource["datasources"][0]["url"])
    assert host in compose()["services"] and port == 9090


def test_compose_secrets_have_examples_and_are_not_committed() -> None:
    doc = compose()
    secrets: dict[str, Doc] = doc["secrets"]
    for name, spec in secrets.items():
        path = (COMPOSE_DIR / spec["file"]).resolve()
        assert path.parent == COMPOSE_DIR / "secrets", f"secret {name} outside secrets/"
        example = path.with_name(path.name + ".example")
        assert example.is_file(), f"secret {name}: {rel(example)} is missing"
        value = example.read_text(encoding="utf-8").strip()
        assert "CHANGE-ME" in value
        assert len(value) < MIN_TOKEN_LENGTH, "an example must not be usable as a real token"
    for name, svc in doc["services"].items():
        for secret in service_secret_paths(svc):
            assert secret in secrets, f"service {name} uses undeclared secret {secret}"
    text = (COMPOSE_DIR / "secrets" / ".gitignore").read_text(encoding="utf-8")
    ignore = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert ignore[0] == "*" and "!*.example" in ignore
    assert (COMPOSE_DIR / "secrets" / "README.md").is_file()


def test_example_tokens_are_refused(tmp_path: Path) -> None:
    """A copied ``CHANGE-ME`` makes remediator refuse to start instead of using it."""
    example = COMPOSE_DIR / "secrets" / "alertmanager.token.example"
    token = tmp_path / "alertmanager.token"
    token.write_text(example.read_text(encoding="utf-8"), encoding="utf-8")
    token.chmod(0o600)
    auth = config_mod.AuthConfig.model_validate(
        {"tokens": [{"name": "am", "role": "alertmanager", "token_file": str(token)}]}
    )
    with pytest.raises(ConfigError, match="shorter than 16"):
        load_credentials(auth, env={})


def test_compose_docker_access_goes_through_the_socket_proxy() -> None:
    doc = compose()
    remediator = doc["services"]["remediator"]
    proxy = doc["services"]["docker-socket-proxy"]
    host, port = url_host_port(remediator["environment"]["DOCKER_HOST"])
    assert host == "docker-socket-proxy" and port == 2375
    assert not any("docker.sock" in m.source for m in mounts(remediator))
    assert any(m.source == "/var/run/docker.sock" for m in mounts(proxy))
    env = {k: str(v) for k, v in proxy["environment"].items()}
    assert env["CONTAINERS"] == env["POST"] == env["ALLOW_RESTARTS"] == "1"
    for dangerous in ("EXEC", "IMAGES", "VOLUMES", "NETWORKS", "BUILD", "SECRETS", "AUTH"):
        assert env.get(dangerous, "0") == "0", f"{dangerous} must stay denied"
    assert doc["networks"]["docker-api"]["internal"] is True
    on_api = sorted(n for n, s in doc["services"].items() if "docker-api" in s.get("networks", []))
    assert on_api == ["docker-socket-proxy", "remediator"]
    assert "ports" not in proxy


def test_compose_publishes_on_loopback_only() -> None:
    for name, svc in compose()["services"].items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"service {name} publishes {port}"


def test_compose_remediator_config() -> None:
    path = COMPOSE_DIR / "remediator.yml"
    cfg = check_config(path)
    remediator = service("remediator")
    assert any(
        m.target == "/etc/remediator/remediator.yml" and m.host_path() == path
        for m in mounts(remediator)
    )
    assert cfg.server.host == "0.0.0.0"
    assert any(p.endswith(f":{cfg.server.port}") for p in remediator["ports"])
    # The store is on the named volume, and every token file is a secret of the service.
    store = sqlite_file(cfg.store.url)
    data = [m for m in mounts(remediator) if not m.is_bind and under(store, m.target)]
    assert data and data[0].target == DATA_DIR
    secret_paths = set(service_secret_paths(remediator).values())
    roles = {spec.role for spec in cfg.auth.tokens}
    assert roles == {"alertmanager", "viewer", "admin"}
    for spec in cfg.auth.tokens:
        assert spec.token_file in secret_paths, f"{spec.token_file} is not a mounted secret"
    # Targets name the stack's own containers and services.
    services = compose()["services"]
    container_names = {s.get("container_name") for s in services.values()}
    for target in cfg.targets:
        if target.type == "docker_container":
            assert target.container_name in container_names
        elif target.type == "redis":
            assert url_host_port(target.url)[0] in services
    assert cfg.alertmanager.url and url_host_port(cfg.alertmanager.url)[0] in services
    assert cfg.prometheus.url and url_host_port(cfg.prometheus.url)[0] in services
    # The playbooks the stack promises.
    matched = {m for book in cfg.playbooks for m in book.match}
    for alert in ("ContainerMemoryHigh", "ContainerCpuHigh", "RedisMemoryHigh"):
        assert f'alertname="{alert}"' in matched
    actions = {step.action for book in cfg.playbooks for step in book.steps}
    assert {"docker.restart", "verify.health", "redis.memory_purge", "redis.delete_keys"} <= actions


def test_compose_notifications_example_is_valid() -> None:
    text = (COMPOSE_DIR / "remediator.yml").read_text(encoding="utf-8")
    found = NOTIFICATIONS_BLOCK.search(text)
    assert found, "the commented notifications example is missing"
    lines = found.group("body").splitlines()
    assert all(line.startswith("#") for line in lines)
    example = yaml.safe_load("\n".join(re.sub(r"^# ?", "", line) for line in lines))
    assert set(example) == {"notifications", "escalation"}
    data = yaml.safe_load(text)
    data.update(example)
    env = {name: f"placeholder-{name.lower()}" for name in env_refs(found.group("body"))}
    cfg = config_mod.parse(data, env=env)
    assert cfg.notifications.slack is not None and cfg.notifications.slack.token_env
    assert cfg.escalation.levels


def prometheus_rule_patterns() -> list[str]:
    patterns: list[str] = load_one(COMPOSE_DIR / "prometheus.yml")["rule_files"]
    assert patterns
    return patterns


def test_compose_prometheus_rule_files_map_to_the_repository() -> None:
    prometheus = service("prometheus")
    loaded: set[Path] = set()
    for pattern in prometheus_rule_patterns():
        host = container_path(prometheus, pattern)
        matches = sorted(host.parent.glob(host.name))
        assert matches, f"rule_files entry {pattern} ({host}) matches no file"
        loaded.update(matches)
    missing = set(repo_rule_files()) - loaded
    assert not missing, f"rules not loaded by the compose Prometheus: {sorted(map(rel, missing))}"
    names = {p.name for p in loaded}
    assert all(fnmatch.fnmatch(n, "*.rules.yml") for n in names)


@pytest.mark.prometheus
def test_compose_prometheus_config_passes_promtool(promtool_bin: str, tmp_path: Path) -> None:
    prometheus = service("prometheus")
    config_mount = [m for m in mounts(prometheus) if m.target == "/etc/prometheus/prometheus.yml"]
    assert config_mount and config_mount[0].host_path() == COMPOSE_DIR / "prometheus.yml"
    doc = load_one(COMPOSE_DIR / "prometheus.yml")
    # The mount paths differ from the repository's: point rule_files at the files themselves.
    doc["rule_files"] = [str(container_path(prometheus, p)) for p in doc["rule_files"]]
    copy_path = tmp_path / "prometheus.yml"
    copy_path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    out = run([promtool_bin, "check", "config", str(copy_path)])
    assert "SUCCESS" in out
    for rules in repo_rule_files():
        assert str(rules) in out, f"promtool did not check {rel(rules)}"


def test_compose_prometheus_scrapes_the_stack() -> None:
    doc = load_one(COMPOSE_DIR / "prometheus.yml")
    services = compose()["services"]
    jobs: dict[str, list[str]] = {}
    for job in doc["scrape_configs"]:
        jobs[job["job_name"]] = [t for sc in job["static_configs"] for t in sc["targets"]]
    for target in (t for targets in jobs.values() for t in targets):
        host = url_host_port(target)[0]
        assert host == "localhost" or host in services, f"scrape target {target}"
    cfg = config_mod.load(COMPOSE_DIR / "remediator.yml", env={})
    assert jobs["remediator"] == [f"remediator:{cfg.server.port}"]  # rules select job="remediator"
    assert {"prometheus", "node", "cadvisor"} <= set(jobs)
    assert [url_host_port(t)[0] for t in jobs["node"]] == ["node-exporter"]
    assert [url_host_port(t)[0] for t in jobs["cadvisor"]] == ["cadvisor"]
    alerting = [
        t
        for am in doc["alerting"]["alertmanagers"]
        for sc in am["static_configs"]
        for t in sc["targets"]
    ]
    assert alerting == ["alertmanager:9093"]


@pytest.mark.prometheus
def test_compose_stack_rules_pass_their_tests(promtool_bin: str) -> None:
    tests = sorted((COMPOSE_DIR / "rules").glob("*.test.yml"))
    assert tests
    run([promtool_bin, "test", "rules", *(t.name for t in tests)], cwd=COMPOSE_DIR / "rules")


def webhook(doc: Doc, receiver: str) -> Doc:
    for item in doc["receivers"]:
        if item["name"] == receiver:
            configs: list[Doc] = item["webhook_configs"]
            assert len(configs) == 1
            return configs[0]
    raise AssertionError(f"no receiver {receiver!r}")


def remediator_route(doc: Doc) -> Doc:
    routes: list[Doc] = [r for r in doc["route"].get("routes", []) if r["receiver"] == "remediator"]
    assert len(routes) == 1
    return routes[0]


def check_remediator_receiver(doc: Doc) -> Doc:
    route = remediator_route(doc)
    assert doc["route"]["routes"][0] is route, "the remediator route must come first"
    assert route["continue"] is True, "alerts must still reach the other receivers"
    assert {"alertname", "container"} <= set(route["group_by"])
    assert route["group_wait"] == "10s"
    hook = webhook(doc, "remediator")
    assert hook["send_resolved"] is True
    assert urlsplit(hook["url"]).path == ALERTS_PATH
    auth = hook["http_config"]["authorization"]
    assert auth.get("type", "Bearer") == "Bearer"
    assert "credentials" not in auth, "the token belongs in a file"
    assert auth["credentials_file"].startswith("/")
    return hook


@pytest.mark.prometheus
def test_compose_alertmanager_config(amtool_bin: str) -> None:
    path = COMPOSE_DIR / "alertmanager.yml"
    assert "SUCCESS" in run([amtool_bin, "check-config", str(path)])
    alertmanager = service("alertmanager")
    assert any(
        m.host_path() == path and m.target == "/etc/alertmanager/alertmanager.yml"
        for m in mounts(alertmanager)
        if m.is_bind
    )
    hook = check_remediator_receiver(load_one(path))
    host, port = url_host_port(hook["url"])
    cfg = config_mod.load(COMPOSE_DIR / "remediator.yml", env={})
    assert host == "remediator" and port == cfg.server.port
    # Alertmanager's credentials_file is the secret remediator reads for the alertmanager role.
    am_secrets = {v: k for k, v in service_secret_paths(alertmanager).items()}
    secret = am_secrets.get(hook["http_config"]["authorization"]["credentials_file"])
    assert secret is not None, "credentials_file is not a secret mounted in alertmanager"
    remediator_secrets = {v: k for k, v in service_secret_paths(service("remediator")).items()}
    am_token = [s for s in cfg.auth.tokens if s.role == "alertmanager"]
    assert [remediator_secrets[str(s.token_file)] for s in am_token] == [secret]


# ------------------------------------------------------------------------------------------------
# the Alertmanager snippet
# ------------------------------------------------------------------------------------------------


@pytest.mark.prometheus
def test_alertmanager_snippet_makes_a_valid_config(amtool_bin: str, tmp_path: Path) -> None:
    snippet = load_one(DEPLOY / "alertmanager" / "receiver.yml")
    assert set(snippet) == {"route", "receivers"}
    assert set(snippet["route"]) == {"routes"}, "the snippet adds sub-routes only"
    # An existing configuration, with the snippet pasted as its README says.
    existing: Doc = {
        "route": {
            "receiver": "team",
            "group_by": ["alertname"],
            "routes": [{"receiver": "team", "matchers": ['severity="critical"']}],
        },
        "receivers": [{"name": "team"}],
    }
    full = copy.deepcopy(existing)
    full["route"]["routes"] = snippet["route"]["routes"] + full["route"]["routes"]
    full["receivers"] = full["receivers"] + snippet["receivers"]
    hook = check_remediator_receiver(full)
    # amtool does not read credentials_file; keep it pointing at a file that exists anyway.
    token = tmp_path / "remediator.token"
    token.write_text("x" * 32 + "\n", encoding="utf-8")
    hook["http_config"]["authorization"]["credentials_file"] = str(token)
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(full, sort_keys=False), encoding="utf-8")
    assert "SUCCESS" in run([amtool_bin, "check-config", str(path)])


def test_alertmanager_readme_explains_the_timings() -> None:
    text = (DEPLOY / "alertmanager" / "README.md").read_text(encoding="utf-8")
    for word in ("group_wait", "group_interval", "repeat_interval", "HA", "send_resolved"):
        assert word in text


# ------------------------------------------------------------------------------------------------
# Dockerfile
# ------------------------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of deploy/Dockerfile, continuation lines joined."""
    logical: list[str] = []
    pending = ""
    for raw in (DEPLOY / "Dockerfile").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "dangling line continuation"
    out: list[tuple[str, str]] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    starts = [i for i, (kw, _) in enumerate(instructions) if kw == "FROM"]
    assert starts
    return instructions[starts[-1] :]


def dockerfile_uid() -> int:
    users = [args for kw, args in final_stage() if kw == "USER"]
    assert users, "the image must switch to a non-root USER"
    user = users[-1].split(":")[0]
    assert user.isdigit(), "USER must be numeric so that runAsNonRoot can verify it"
    return int(user)


def test_dockerfile_runs_as_non_root() -> None:
    uid = dockerfile_uid()
    assert uid != 0
    run_lines = " ".join(args for kw, args in final_stage() if kw == "RUN")
    assert f"--uid {uid}" in run_lines, "the USER must exist in the image"


def test_dockerfile_entrypoint_healthcheck_and_port() -> None:
    stage = dict(final_stage())
    assert json.loads(stage["ENTRYPOINT"]) == ["remediator"]
    assert json.loads(stage["CMD"]) == ["serve", "--config", "/etc/remediator/remediator.yml"]
    assert stage["EXPOSE"].split() == ["9095"]
    healthcheck = stage["HEALTHCHECK"]
    assert "CMD" in healthcheck and HEALTH_PATH in healthcheck and "urllib" in healthcheck
    command = json.loads(healthcheck[healthcheck.index("CMD") + 3 :].strip())
    assert command[:2] == ["python", "-c"]
    compile(command[2], "<healthcheck>", "exec")


def test_dockerfile_installs_the_package_from_the_repository() -> None:
    instructions = dockerfile_instructions()
    assert any(kw == "RUN" and "pip install ." in args for kw, args in instructions)
    for kw, args in instructions:
        if kw == "COPY" and not args.startswith("--from"):
            for source in args.split()[:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: not in the build context"
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").split()
    assert {"!pyproject.toml", "!README.md", "!remediator/"} <= set(ignore)


# ------------------------------------------------------------------------------------------------
# Kubernetes
# ------------------------------------------------------------------------------------------------


def k8s_objects() -> list[Doc]:
    objects: list[Doc] = []
    for path in sorted(K8S_DIR.glob("*.yml")):
        if path.name == "kustomization.yml":
            continue
        for doc in load_docs(path):
            assert {"apiVersion", "kind", "metadata"} <= set(doc), f"{rel(path)}: {doc}"
            objects.append(doc)
    return objects


def k8s(kind: str, name: str | None = None) -> Doc:
    found = [
        o
        for o in k8s_objects()
        if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def pod_spec() -> Doc:
    spec: Doc = k8s("Deployment", "remediator")["spec"]["template"]["spec"]
    return spec


def remediator_container() -> Doc:
    containers: list[Doc] = [c for c in pod_spec()["containers"] if c["name"] == "remediator"]
    assert len(containers) == 1
    return containers[0]


def volume_mounts() -> Iterator[tuple[Doc, Doc]]:
    """(volumeMount, volume) of the remediator container."""
    volumes = {v["name"]: v for v in pod_spec()["volumes"]}
    for mount in remediator_container()["volumeMounts"]:
        yield mount, volumes[mount["name"]]


def configmap_config_text() -> str:
    text: str = k8s("ConfigMap", "remediator-config")["data"]["remediator.yml"]
    return text


def test_kustomization_lists_existing_files() -> None:
    kustomization = load_one(K8S_DIR / "kustomization.yml")
    resources: list[str] = kustomization["resources"]
    for resource in resources:
        assert (K8S_DIR / resource).is_file(), resource
    assert "secret.example.yml" not in resources, "applying must never overwrite real tokens"
    for needed in ("deployment.yml", "service.yml", "configmap.yml", "prometheusrule.yml"):
        assert needed in resources


def test_k8s_deployment_runs_as_non_root() -> None:
    spec = pod_spec()
    pod_security = spec["securityContext"]
    assert pod_security["runAsNonRoot"] is True
    assert pod_security["runAsUser"] == dockerfile_uid() != 0
    assert pod_security["seccompProfile"]["type"] == "RuntimeDefault"
    container = remediator_container()
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"]
    assert spec["automountServiceAccountToken"] is False
    assert container["args"] == ["serve", "--config", "/etc/remediator/remediator.yml"]
    assert {"requests", "limits"} <= set(container["resources"])


def test_k8s_deployment_probes_liveness_and_readiness_apart() -> None:
    """Liveness on /-/healthy (no store involved: a database outage restarts no pod),
    readiness and start-up on /-/ready (tests/test_probes.py shows both answers)."""
    from remediator.http.endpoints import OPERATIONS

    served = {op.path for op in OPERATIONS if op.method == "GET"}
    container = remediator_container()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 9095}
    expected = {"livenessProbe": "/-/healthy", "readinessProbe": "/-/ready",
                "startupProbe": "/-/ready"}  # fmt: skip
    for probe, path in expected.items():
        get = container[probe]["httpGet"]
        assert get["path"] == path and path in served, probe
        assert get["port"] in ports or get["port"] in ports.values(), probe


def test_k8s_deployment_is_a_single_replica_on_a_volume() -> None:
    deployment = k8s("Deployment", "remediator")["spec"]
    assert deployment["replicas"] == 1, "SQLite allows one replica"
    assert deployment["strategy"]["type"] == "Recreate"
    data = [(m, v) for m, v in volume_mounts() if m["mountPath"] == DATA_DIR]
    assert len(data) == 1
    claim = data[0][1]["persistentVolumeClaim"]["claimName"]
    assert k8s("PersistentVolumeClaim", claim)["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_k8s_configmap_config_is_valid(tmp_path: Path) -> None:
    text = configmap_config_text()
    path = tmp_path / "remediator.yml"
    path.write_text(text, encoding="utf-8")
    cfg = check_config(path)
    container = remediator_container()
    assert cfg.server.host == "0.0.0.0"
    assert cfg.server.port == container["ports"][0]["containerPort"]
    # Every ${VAR} comes from the Deployment's environment.
    env_names = {e["name"] for e in container.get("env", [])}
    assert env_refs(text) <= env_names
    mounts_by_path = {m["mountPath"]: (m, v) for m, v in volume_mounts()}
    config_mount, config_volume = mounts_by_path["/etc/remediator/remediator.yml"]
    assert config_volume["configMap"]["name"] == "remediator-config"
    assert config_mount["subPath"] == "remediator.yml"
    assert under(sqlite_file(cfg.store.url), DATA_DIR)
    # Token files are keys of the mounted Secret.
    secret_mounts = [(m, v) for m, v in volume_mounts() if "secret" in v]
    assert len(secret_mounts) == 1
    mount, volume = secret_mounts[0]
    secret = k8s("Secret", volume["secret"]["secretName"])
    assert {spec.role for spec in cfg.auth.tokens} == {"alertmanager", "viewer", "admin"}
    for spec in cfg.auth.tokens:
        token_file = PurePosixPath(str(spec.token_file))
        assert str(token_file.parent) == mount["mountPath"]
        assert token_file.name in secret["stringData"]


def test_k8s_secret_is_a_marked_example() -> None:
    path = K8S_DIR / "secret.example.yml"
    text = path.read_text(encoding="utf-8")
    assert "EXAMPLE" in text
    secret = load_one(path)
    for key, value in secret["stringData"].items():
        assert "CHANGE-ME" in value, key
        assert len(value) < MIN_TOKEN_LENGTH, f"{key}: an example must not work as a token"


def test_k8s_service_and_servicemonitor_select_remediator() -> None:
    pod_labels = k8s("Deployment", "remediator")["spec"]["template"]["metadata"]["labels"]
    svc = k8s("Service", "remediator")
    assert svc["metadata"]["name"] == "remediator", "the job label the rules select"
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    ports = {p["name"]: p for p in svc["spec"]["ports"]}
    assert ports["http"]["targetPort"] == "http"
    monitor = k8s("ServiceMonitor", "remediator")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    endpoints = monitor["spec"]["endpoints"]
    assert [(e["port"], e["path"]) for e in endpoints] == [("http", "/metrics")]


def alert_exprs(groups: list[Doc]) -> dict[str, str]:
    exprs: dict[str, str] = {}
    for group in groups:
        for rule in group["rules"]:
            if "alert" in rule:
                assert rule["alert"] not in exprs, f"duplicate alert {rule['alert']}"
                exprs[rule["alert"]] = rule["expr"]
    return exprs


def test_prometheusrule_has_exactly_the_repository_rules() -> None:
    rule = k8s("PrometheusRule", "remediator")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    groups: list[Doc] = rule["spec"]["groups"]
    expected = rule_groups(repo_rule_files())
    assert alert_exprs(groups) == alert_exprs(expected)
    # Recording rules, labels, annotations and for: too.
    assert sorted(groups, key=lambda g: g["name"]) == sorted(expected, key=lambda g: g["name"])


def test_prometheusrule_is_what_the_generator_writes() -> None:
    run([sys.executable, str(K8S_DIR / "generate.py"), "--check"], cwd=ROOT)


# ------------------------------------------------------------------------------------------------
# systemd and the other remediator configurations
# ------------------------------------------------------------------------------------------------


def test_systemd_unit() -> None:
    unit = configparser.ConfigParser(strict=True, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(DEPLOY / "systemd" / "remediator.service", encoding="utf-8")
    svc = unit["Service"]
    assert svc["User"] not in ("", "root", "0")
    assert svc["StateDirectory"] == "remediator"
    assert svc["NoNewPrivileges"] == "yes"
    config_path = "/etc/remediator/remediator.yml"
    assert svc["ExecStart"].split()[1:] == ["serve", "--config", config_path]
    assert svc["ExecStartPre"].split()[1:] == ["check-config", config_path]
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    cfg = check_config(DEPLOY / "systemd" / "remediator.yml")
    assert under(sqlite_file(cfg.store.url), DATA_DIR)


@pytest.mark.parametrize(
    "path",
    [
        DEPLOY / "remediator.yml",
        DEPLOY / "compose" / "remediator.yml",
        DEPLOY / "systemd" / "remediator.yml",
    ],
    ids=rel,
)
def test_remediator_configs_pass_check_config(path: Path) -> None:
    cfg = check_config(path)
    assert len(cfg.auth.tokens) == 3
    assert all(spec.token_file for spec in cfg.auth.tokens), "tokens come from files"


# ------------------------------------------------------------------------------------------------
# docs/deployment.md
# ------------------------------------------------------------------------------------------------


def test_deployment_doc_references_exist() -> None:
    text = (ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")
    for link in re.findall(r"\]\((\.\./[^)#\s]+)", text):
        assert (ROOT / "docs" / link).resolve().exists(), link
    for path in set(re.findall(r"`(deploy/[A-Za-z0-9_./-]+)`", text)):
        assert (ROOT / path).exists(), path
    for section in (
        "Docker Compose",
        "Kubernetes",
        "systemd",
        "Docker socket",
        "TLS",
        "Upgrading",
        "PostgreSQL",
    ):
        assert section in text
    assert "postgresql://" in text
