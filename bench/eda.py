"""Event-Driven Ansible as the peer: its installation, its rulebook, its process, its output.

``ansible-rulebook`` 1.3.2 and ``ansible-core`` go into a venv of their own under the peer
directory (``/tmp/bench-peer`` unless ``--dir``), never into the project's venv. Its rules engine
(Drools, through ``drools_jpy``) needs a Java 17 runtime: the system's ``java`` when there is one,
else Debian's ``openjdk-17-jre-headless`` installed with ``apt-get`` (as root).

The rulebook listens with ``eda.builtin.webhook`` on 127.0.0.1 (the Alertmanager source,
``ansible.eda.alertmanager``, belongs to the ansible.eda collection, which is not on the package
index), so EDA makes one event of each notification. Its one rule matches any notification with
alerts and runs ``debug``, the cheapest action that runs in the rulebook's own process (no
ansible-runner fork). ``debug`` prints a banner stamped with ``datetime.now()`` when the action
ran, then ``PEER_ACTION <group>``: :func:`actions` reads those stamps from the log.

With ``per_alert``, the source is instead ``alertmanager_alerts``, a plugin of this benchmark
(``bench/eda_sources/``, loaded with ``--source-dir``) that makes one event per alert, as the
ansible.eda collection's Alertmanager source does; the rule then runs ``debug`` for every firing
alert, printing ``PEER_ACTION <fingerprint>``: the same work per alert as remediator's decisions.
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Final

import httpx2 as httpx
import yaml

from bench.procs import BenchError, Server

RULEBOOK_VERSION: Final = "1.3.2"
PACKAGES: Final = (f"ansible-rulebook=={RULEBOOK_VERSION}", "ansible-core")
JRE_PACKAGE: Final = "openjdk-17-jre-headless"
MARK: Final = "PEER_ACTION"
DEFAULT_DIR: Final = Path("/tmp/bench-peer")
SOURCE_DIR: Final = Path(__file__).resolve().parent / "eda_sources"
PER_ALERT_SOURCE: Final = "alertmanager_alerts"
_BANNER: Final = re.compile(r"^\*\* (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) \[debug\] \*")


# -- installation -----------------------------------------------------------------------------


class Installation:
    """The peer's directory: ``venv/`` with ansible-rulebook, plus the Java runtime it uses."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.venv = directory / "venv"
        self.java_home: Path | None = None

    @property
    def rulebook_bin(self) -> Path:
        return self.venv / "bin" / "ansible-rulebook"

    def ensure(self) -> None:
        """Install what is missing (idempotent: a second run installs nothing)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if not self.rulebook_bin.exists():
            print(f"bench peer: installing {' '.join(PACKAGES)} into {self.venv}", flush=True)
            _run([sys.executable, "-m", "venv", "--clear", str(self.venv)])
            _run([str(self.venv / "bin" / "python"), "-m", "pip", "install", "-q", *PACKAGES])
        self.java_home = ensure_java()

    def version(self) -> str:
        """``ansible-rulebook 1.3.2, drools_jpy 0.4.1, ansible-core 2.19.14`` (from --version)."""
        try:
            done = subprocess.run(
                [str(self.rulebook_bin), "--version"],
                env=self.env(),
                capture_output=True,
                text=True,
                check=False,
            )
        except OSError:
            return describe_version("")
        return describe_version(done.stdout)

    def java_version(self) -> str:
        java = (self.java_home / "bin" / "java") if self.java_home else Path("java")
        try:
            done = subprocess.run(
                [str(java), "-version"], capture_output=True, text=True, check=False
            )
        except OSError:
            return "no java"
        text = (done.stderr or done.stdout).strip()
        return text.splitlines()[0] if text else "no java"

    def env(self) -> dict[str, str]:
        """The environment of ansible-rulebook: its venv first on PATH (``ansible-galaxy``),
        ``JAVA_HOME``, unbuffered output (the bench reads the log while it runs)."""
        env = dict(os.environ)
        env.pop("VIRTUAL_ENV", None)
        env["PATH"] = os.pathsep.join([str(self.venv / "bin"), env.get("PATH", "")])
        env["PYTHONUNBUFFERED"] = "1"
        env["ANSIBLE_LOCAL_TEMP"] = str(self.dir / "ansible-tmp")
        env["HOME"] = env.get("HOME", str(self.dir))
        if self.java_home is not None:
            env["JAVA_HOME"] = str(self.java_home)
        return env


def _run(command: list[str]) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BenchError(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


def describe_version(output: str) -> str:
    """One line from ``ansible-rulebook --version``: its own, drools_jpy's and ansible-core's."""
    found = re.search(r"ansible-rulebook \[([^\]]+)\]", output)
    parts = [f"ansible-rulebook {found.group(1) if found else 'unknown'}"]
    for label, name in (
        ("Drools_jpy version", "drools_jpy"),
        ("Ansible core version", "ansible-core"),
    ):
        value = re.search(re.escape(label) + r" = (\S+)", output)
        if value:
            parts.append(f"{name} {value.group(1)}")
    return ", ".join(parts)


def java_major(version_output: str) -> int:
    """The major version in ``java -version`` output (``openjdk version "17.0.15"`` -> 17)."""
    found = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if not found:
        return 0
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major


def ensure_java() -> Path:
    """JAVA_HOME of a Java >= 17 runtime: ``$JAVA_HOME``, else ``java`` on PATH, else
    ``apt-get install openjdk-17-jre-headless`` (root only)."""
    candidates = []
    if os.environ.get("JAVA_HOME"):
        candidates.append(Path(os.environ["JAVA_HOME"]) / "bin" / "java")
    found = shutil.which("java")
    if found:
        candidates.append(Path(found))
    for java in candidates:
        done = subprocess.run([str(java), "-version"], capture_output=True, text=True, check=False)
        if done.returncode == 0 and java_major(done.stderr + done.stdout) >= 17:
            return java.resolve().parents[1]
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise BenchError(f"no Java >= 17: run `apt-get install -y {JRE_PACKAGE}` as root")
    print(f"bench peer: no Java >= 17; apt-get install -y {JRE_PACKAGE}", flush=True)
    _run(["apt-get", "update", "-qq"])
    _run(["apt-get", "install", "-y", "-qq", JRE_PACKAGE])
    java_path = shutil.which("java")
    if java_path is None:
        raise BenchError(f"java is still not on PATH after apt-get install {JRE_PACKAGE}")
    return Path(java_path).resolve().parents[1]


# -- rulebook and output ----------------------------------------------------------------------


def rulebook(*, port: int, token: str, per_alert: bool = False) -> str:
    """The rulebook: a webhook source on 127.0.0.1:``port`` with a bearer token, one rule that
    runs ``debug`` for every notification with alerts (``per_alert``: for every firing alert,
    from the per-alert source of ``bench/eda_sources``)."""
    source = PER_ALERT_SOURCE if per_alert else "eda.builtin.webhook"
    if per_alert:
        rule = {
            "name": "firing alert",
            "condition": 'event.alert.status == "firing"',
            "action": {"debug": {"msg": f"{MARK} {{{{ event.alert.fingerprint }}}}"}},
        }
    else:
        rule = {
            "name": "alert notification",
            "condition": "event.payload.alerts is defined",
            "action": {"debug": {"msg": f"{MARK} {{{{ event.payload.groupLabels.bench }}}}"}},
        }
    book = [
        {
            "name": "remediator bench peer",
            "hosts": "all",
            "sources": [{source: {"host": "127.0.0.1", "port": port, "token": token}}],
            "rules": [rule],
        }
    ]
    return "---\n" + yaml.safe_dump(book, sort_keys=False)


def ran(text: str) -> list[tuple[str, float]]:
    """Every ``debug`` action in ansible-rulebook's output, in order: (group label, when it ran
    in epoch seconds, from the banner's local ``datetime.now()`` stamp)."""
    out: list[tuple[str, float]] = []
    stamp: float | None = None
    for line in text.splitlines():
        banner = _BANNER.match(line)
        if banner:
            stamp = datetime.datetime.fromisoformat(banner.group(1)).timestamp()
            continue
        if stamp is not None and line.startswith(MARK + " "):
            out.append((line[len(MARK) + 1 :].strip(), stamp))
        stamp = None
    return out


def actions(text: str) -> dict[str, float]:
    """Group label -> when the first ``debug`` action for it ran (epoch seconds)."""
    out: dict[str, float] = {}
    for label, stamp in ran(text):
        out.setdefault(label, stamp)
    return out


# -- the process ------------------------------------------------------------------------------


class Eda(Server):
    """``ansible-rulebook -r peer.yml`` with the webhook on this server's port."""

    name = "eda"

    def __init__(
        self, workdir: Path, install: Installation, token: str, *, per_alert: bool = False
    ) -> None:
        super().__init__(workdir)
        self.install = install
        self.token = token
        self.per_alert = per_alert
        self.rulebook_path = workdir / "peer.yml"
        self.rulebook_path.write_text(rulebook(port=self.port, token=token, per_alert=per_alert))
        self.inventory_path = workdir / "inventory.yml"
        self.inventory_path.write_text("all:\n  hosts:\n    localhost:\n")

    def command(self) -> list[str]:
        return [
            str(self.install.rulebook_bin),
            "--rulebook",
            str(self.rulebook_path),
            "--inventory",
            str(self.inventory_path),
            *(["--source-dir", str(SOURCE_DIR)] if self.per_alert else []),
        ]

    def env(self) -> dict[str, str]:
        return self.install.env()

    def health_url(self) -> str:
        return f"{self.url}/health"

    def start(self, timeout: float = 60.0) -> None:
        """Start it; the JVM makes it slower to answer than a Python server."""
        super().start(timeout)

    def healthy(self) -> bool:
        """The webhook answers a POST without alerts (no rule matches it: no action)."""
        headers = {"Authorization": f"Bearer {self.token}"}
        try:
            answer = httpx.post(self.health_url(), json={}, headers=headers, timeout=1)
        except httpx.HTTPError:
            return False
        return answer.status_code == 200

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def actions(self) -> dict[str, float]:
        return actions(self.output())
