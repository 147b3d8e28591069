"""What ``pip install remediator`` gives a user: the sdist and wheel ``python -m build`` makes (the
wheel built from the sdist), installed into a clean venv with the pinned versions, then
``remediator version``, ``check-config`` on the example configuration and ``serve`` answering.

The build and the install go through pip's own cache and configured index; the project is built
from a copy of the files it is made of, so nothing is written into the repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import httpx2 as httpx

from remediator import __version__
from tests.conftest import ROOT
from tests.serving import free_port

# What a release's source tree holds for the build (pip builds nothing else into the package).
SOURCES = ("pyproject.toml", "README.md", "remediator")
LEFT_OUT = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")


def _run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _serve_answers(bin_dir: Path, workdir: Path) -> None:
    """``serve`` from the clean venv on the example configuration, as ``make run`` does it."""
    _run(bin_dir / "remediator", "tokens", "--dir", "data/tokens", cwd=workdir)
    port = free_port()
    env = {**os.environ, "REMEDIATOR_SERVER__PORT": str(port)}
    example = workdir / "remediator.yml"
    log = (workdir / "serve.log").open("wb")
    proc = subprocess.Popen(
        [bin_dir / "remediator", "serve", "--config", example],
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (workdir / "serve.log").read_text()
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/-/ready", timeout=1)
                if answer.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (workdir / "serve.log").read_text()
            time.sleep(0.1)
        assert (workdir / "data" / "remediator.db").exists()  # its store, where the example says
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()


def test_the_built_wheel_installs_into_a_clean_venv_and_serves(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    for name in (*SOURCES, *(p.name for p in ROOT.glob("LICENSE*"))):
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=LEFT_OUT)
        else:
            shutil.copy(ROOT / name, source / name)
    dist = tmp_path / "dist"
    _run(sys.executable, "-m", "build", "--outdir", dist, source, cwd=tmp_path)
    sdist = dist / f"remediator-{__version__}.tar.gz"
    wheel = dist / f"remediator-{__version__}-py3-none-any.whl"
    with tarfile.open(sdist) as tar:
        names = tar.getnames()
    assert f"remediator-{__version__}/pyproject.toml" in names
    assert f"remediator-{__version__}/remediator/cli/__init__.py" in names
    with zipfile.ZipFile(wheel) as whl:
        packaged = {n for n in whl.namelist() if n.endswith(".py")}
    expected = {str(p.relative_to(ROOT)) for p in (ROOT / "remediator").rglob("*.py")}
    assert expected <= packaged, sorted(expected - packaged)

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    bin_dir = venv / "bin"
    pip: list[str | Path] = [bin_dir / "python", "-m", "pip", "install", "-q", "--no-compile"]
    _run(*pip, "-c", ROOT / "constraints.txt", wheel, cwd=tmp_path)

    workdir = tmp_path / "user"
    workdir.mkdir()
    shutil.copy(ROOT / "deploy" / "remediator.yml", workdir / "remediator.yml")
    assert _run(bin_dir / "remediator", "version", cwd=workdir).strip() == (
        f"remediator {__version__}"
    )
    checked = _run(bin_dir / "remediator", "check-config", "remediator.yml", cwd=workdir)
    assert checked.startswith("remediator.yml: valid (")
    # the venv's remediator is the installed one, not this checkout's
    where = _run(bin_dir / "python", "-c", "import remediator; print(remediator.__file__)", cwd=workdir)  # fmt: skip
    assert where.startswith(str(venv))
    _serve_answers(bin_dir, workdir)
