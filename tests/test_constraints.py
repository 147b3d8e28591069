"""The dependency bounds and the constraints (lock) file: consistent with each other, free of the
versions with published advisories, and used by every install (Makefile, deploy/Dockerfile)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / "constraints.txt"

# A version with a published advisory, per package; pyproject.toml's bound must exclude it.
VULNERABLE = {
    "starlette": "1.3.0",  # CVE-2026-54283 (fixed 1.3.1); CVE-2026-48710 (fixed 1.0.1)
    "aiohttp": "3.14.4",  # GHSA-2g87-pp6c-29x5, GHSA-5wr8-gcqf-gqf3 (fixed 3.14.5)
    "cryptography": "49.0.0",  # CVE-2026-69247 (fixed 50.0.0)
    "h11": "0.15.0",  # CVE-2025-43859 (fixed 0.16.0)
    "urllib3": "2.7.0",  # CVE-2026-97687, CVE-2026-97688, CVE-2026-97689 (fixed 2.8.0)
    "requests": "2.32.3",  # CVE-2024-47081 (fixed 2.32.4)
    "idna": "3.6",  # CVE-2024-3651 (fixed 3.7)
    "pydantic": "2.3.0",  # CVE-2024-3772 (fixed 2.4.0)
    "uvicorn": "0.11.6",  # CVE-2020-7694, CVE-2020-7695 (fixed 0.11.7)
    "setuptools": "78.1.0",  # CVE-2025-47273 (fixed 78.1.1), build requirement
}


def project() -> dict[str, object]:
    data: dict[str, object] = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return data


def requirements() -> list[Requirement]:
    data = project()
    meta = data["project"]
    assert isinstance(meta, dict)
    found = [Requirement(r) for r in meta["dependencies"]]
    for extra in meta["optional-dependencies"].values():
        found += [Requirement(r) for r in extra]
    build = data["build-system"]
    assert isinstance(build, dict)
    return found + [Requirement(r) for r in build["requires"]]


def pins() -> dict[str, Version]:
    pinned: dict[str, Version] = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep and version, f"constraints.txt: not pinned with ==: {line!r}"
        pinned[canonicalize_name(name)] = Version(version)
    return pinned


def test_every_dependency_is_pinned_within_its_bounds() -> None:
    pinned = pins()
    build = {"setuptools", "wheel"}  # build isolation: not installed into the venv
    for req in requirements():
        name = canonicalize_name(req.name)
        if name in build:
            continue
        assert name in pinned, f"{req.name} is not pinned in constraints.txt"
        assert req.specifier.contains(pinned[name], prereleases=True), (
            f"constraints.txt pins {req.name}=={pinned[name]}, outside pyproject's {req}"
        )


def test_no_bound_admits_a_version_with_a_published_advisory() -> None:
    bounds = {canonicalize_name(r.name): r for r in requirements()}
    for name, version in VULNERABLE.items():
        bound = bounds.get(canonicalize_name(name))
        assert bound is not None, f"{name} has no bound in pyproject.toml"
        assert not bound.specifier.contains(version), f"{bound} admits {version}"


def test_the_constraints_file_says_how_to_regenerate_it_and_every_install_uses_it() -> None:
    header = [line for line in CONSTRAINTS.read_text().splitlines() if line.startswith("#")]
    assert any("make constraints" in line for line in header)
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^constraints:", makefile, re.M), "no `make constraints` target"
    # Every pip install but the one of `make constraints` (which re-pins) uses the pins.
    recipes = re.findall(r"^([\w$(). /-]+):[^\n]*\n((?:\t[^\n]*\n)+)", makefile, re.M)
    installs = [
        (target, line)
        for target, body in recipes
        for line in body.splitlines()
        if "$(PIP) install" in line
    ]
    assert len(installs) >= 3
    for target, line in installs:
        if target != "constraints":
            assert "-c $(CONSTRAINTS)" in line, f"{target}: installs without constraints: {line}"
    assert re.search(r"^CONSTRAINTS\s*:=\s*constraints\.txt$", makefile, re.M)
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert re.search(r"COPY [^\n]*constraints\.txt", dockerfile)
    assert re.search(r"pip install \. -c constraints\.txt", dockerfile)
    ignore = (ROOT / "deploy" / "Dockerfile.dockerignore").read_text().splitlines()
    assert "!constraints.txt" in ignore
