"""Fixtures of the reliability scenarios, and the figures they report at the end of the run.

Each scenario puts its figures (kills survived, alerts acknowledged and stored, inputs tried,
memory before/after, ...) into ``figures``; they are printed in the terminal summary and, when
``REMEDIATOR_RELIABILITY_FIGURES`` names a file, written there as JSON.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.support import FastServed, SignalCounter, Zygote

FIGURES_KEY = pytest.StashKey[dict[str, dict[str, Any]]]()
FIGURES_ENV = "REMEDIATOR_RELIABILITY_FIGURES"

Figures = Callable[..., None]
Serve = Callable[..., FastServed]
Counters = Callable[[str], SignalCounter]


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Figures:
    """``figures(key=value, ...)`` records figures under the current test's name."""
    store = request.config.stash.setdefault(FIGURES_KEY, {})
    name = request.node.name

    def record(**values: Any) -> None:
        store.setdefault(name, {}).update(values)

    return record


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    found = config.stash.get(FIGURES_KEY, {})
    if not found:
        return
    terminalreporter.section("reliability figures")
    for test, values in found.items():
        shown = ", ".join(f"{k}={v}" for k, v in values.items())
        terminalreporter.write_line(f"{test}: {shown}")
    target = os.environ.get(FIGURES_ENV)
    if target:
        Path(target).write_text(json.dumps(found, indent=2, sort_keys=True) + "\n")


@pytest.fixture(scope="session")
def zygote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Zygote]:
    launcher = Zygote(tmp_path_factory.mktemp("launcher"))
    try:
        yield launcher
    finally:
        launcher.close()


@pytest.fixture
def serve(zygote: Zygote, tmp_path: Path, tokens: dict[str, str]) -> Iterator[Serve]:
    """``serve(config, extra_env=None, start=True)``: a served remediator in its own dir."""
    started: list[FastServed] = []

    def make(
        config: dict[str, Any], extra_env: dict[str, str] | None = None, start: bool = True
    ) -> FastServed:
        workdir = tmp_path / f"served-{len(started)}"
        workdir.mkdir()
        served = FastServed(zygote, workdir, config, tokens, extra_env)
        started.append(served)
        if start:
            served.start()
        return served

    yield make
    for served in started:
        served.stop()


@pytest.fixture
def counters(tmp_path: Path) -> Iterator[Counters]:
    """``counters(name)``: a process counting the SIGRTMIN it receives."""
    made: list[SignalCounter] = []

    def make(name: str) -> SignalCounter:
        counter = SignalCounter(tmp_path, name)
        made.append(counter)
        return counter

    yield make
    for counter in made:
        counter.stop()
