"""The Prometheus rules in ``rules/``, their promtool tests and ``docs/runbook.md``.

promtool must accept the rule files and pass every ``rules/tests/*.test.yml``. The rule files
must be exactly what ``rules/generate.py`` writes. Every alert must follow the conventions
(CamelCase name, ``for:``, severity, summary/description/runbook_url, a runbook section) and be
tested both one evaluation before its ``for:`` elapses and at it. Every recording rule must be
named ``level:metric:operations`` and tested.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules"
RULE_TESTS = RULES / "tests"
GENERATOR = RULES / "generate.py"
RUNBOOK = ROOT / "docs" / "runbook.md"
RUNBOOK_URL = "https://github.com/remediator/remediator/blob/main/docs/runbook.md#"

SEVERITIES = frozenset({"critical", "warning", "info"})
ALERT_NAME = re.compile(r"^(?:[A-Z][a-z0-9]+)+$")
RECORD_NAME = re.compile(r"^[a-z_]+:[a-z0-9_]+:[a-z0-9_]+$")
DURATION_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
DURATION_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
DURATION_MS |= {"w": 7 * DURATION_MS["d"], "y": 365 * DURATION_MS["d"]}
RUNBOOK_PARTS = ("**Meaning.**", "**Impact.**", "**Diagnose.**", "**Fix.**")


class Policy(Protocol):
    threshold: float | None


class Generator(Protocol):
    """What the tests use of ``rules/generate.py``."""

    RULES_DIR: Path
    POLICIES: Mapping[str, Policy]

    def render(self) -> dict[str, str]: ...

    def main(self, argv: list[str] | None = None) -> int: ...


@dataclass(frozen=True)
class Rule:
    file: str
    body: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.body.get("alert") or self.body.get("record"))


def _load_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path.relative_to(ROOT)}: not a YAML mapping"
    return cast(dict[str, Any], data)


def rule_files() -> list[Path]:
    return sorted(RULES.glob("*.yml"))


def promtool_test_files() -> list[Path]:
    return sorted(RULE_TESTS.glob("*.test.yml"))


def all_rules() -> list[Rule]:
    rules: list[Rule] = []
    for path in rule_files():
        for group in _load_yaml(path)["groups"]:
            rules.extend(Rule(path.name, body) for body in group["rules"])
    return rules


ALERTS = [rule for rule in all_rules() if "alert" in rule.body]
RECORDS = [rule for rule in all_rules() if "record" in rule.body]


def duration_ms(text: str) -> int:
    """A Prometheus duration (``1h30m``, ``5m``, ``90s``) in milliseconds."""
    parts = DURATION_PART.findall(text)
    assert parts and "".join(n + unit for n, unit in parts) == text, f"not a duration: {text!r}"
    return sum(int(n) * DURATION_MS[unit] for n, unit in parts)


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


def runbook_sections(min_level: int = 1) -> dict[str, str]:
    """Heading text -> the section's body, for headings of ``min_level`` (``#`` = 1) or deeper.

    Lines in code fences are never headings.
    """
    sections: dict[str, str] = {}
    heading: str | None = None
    in_fence = False
    for line in RUNBOOK.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        match = None if in_fence else re.match(r"^(#{1,6})\s+(.+?)\s*#*\s*$", line)
        if match:
            heading = match.group(2) if len(match.group(1)) >= min_level else None
            if heading is not None:
                sections[heading] = ""
        elif heading is not None:
            sections[heading] += line + "\n"
    return sections


@dataclass(frozen=True)
class AlertCase:
    file: str
    group: int
    eval_ms: int
    interval_ms: int
    fires: bool


def alert_cases() -> dict[str, list[AlertCase]]:
    """Alert name -> every ``alert_rule_test`` case for it in ``rules/tests``."""
    cases: dict[str, list[AlertCase]] = {}
    for path in promtool_test_files():
        doc = _load_yaml(path)
        interval = duration_ms(str(doc.get("evaluation_interval", "1m")))
        for i, group in enumerate(doc.get("tests") or []):
            for case in group.get("alert_rule_test") or []:
                cases.setdefault(str(case["alertname"]), []).append(
                    AlertCase(
                        file=path.name,
                        group=i,
                        eval_ms=duration_ms(str(case["eval_time"])),
                        interval_ms=interval,
                        fires=bool(case.get("exp_alerts")),
                    )
                )
    return cases


def expr_tests() -> list[str]:
    """The ``expr`` of every ``promql_expr_test`` in ``rules/tests``."""
    exprs: list[str] = []
    for path in promtool_test_files():
        for group in _load_yaml(path).get("tests") or []:
            exprs.extend(str(case["expr"]) for case in group.get("promql_expr_test") or [])
    return exprs


# --- promtool ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def promtool() -> str:
    candidates = [os.environ.get("PROMTOOL_BIN"), shutil.which("promtool"), "/usr/bin/promtool"]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(
        "promtool not found (tried $PROMTOOL_BIN, PATH, /usr/bin/promtool): "
        "run `tests/services.sh up` to install it, or set PROMTOOL_BIN"
    )


def run_promtool(promtool: str, args: Sequence[str]) -> None:
    proc = subprocess.run(
        [promtool, *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, (
        f"`promtool {' '.join(args)}` exited {proc.returncode}\n"
        f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
    )


def test_rule_files_and_tests_exist() -> None:
    assert rule_files(), "no rules/*.yml"
    assert promtool_test_files(), "no rules/tests/*.test.yml"
    assert ALERTS and RECORDS


def test_promtool_check_rules(promtool: str) -> None:
    run_promtool(promtool, ["check", "rules", *(str(p.relative_to(ROOT)) for p in rule_files())])


def test_promtool_test_rules(promtool: str) -> None:
    run_promtool(
        promtool, ["test", "rules", *(str(p.relative_to(ROOT)) for p in promtool_test_files())]
    )


# --- the generator ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def generator() -> Generator:
    spec = importlib.util.spec_from_file_location("rules_generate", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # @dataclass looks its module up there
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return cast(Generator, module)


def test_rule_files_match_generator(generator: Generator) -> None:
    rendered = generator.render()
    committed = {p.name for p in rule_files()}
    assert committed == set(rendered), (
        "rules/*.yml must be exactly the files rules/generate.py writes: "
        f"extra {sorted(committed - set(rendered))}, missing {sorted(set(rendered) - committed)}"
    )
    stale = []
    for name, content in rendered.items():
        current = (RULES / name).read_text(encoding="utf-8")
        if current != content:
            diff = difflib.unified_diff(
                current.splitlines(keepends=True),
                content.splitlines(keepends=True),
                f"rules/{name} (committed)",
                f"rules/{name} (generated)",
            )
            stale.append("".join(diff))
    assert not stale, (
        "rule files differ from rules/generate.py's output; run "
        "`.venv/bin/python rules/generate.py`:\n" + "\n".join(stale)
    )


def test_generator_check_mode(generator: Generator, capsys: pytest.CaptureFixture[str]) -> None:
    assert generator.RULES_DIR == RULES
    assert generator.main(["--check"]) == 0, capsys.readouterr().out


def test_generator_is_deterministic(generator: Generator) -> None:
    assert generator.render() == generator.render()


def test_thresholds_match_the_seed_config(generator: Generator) -> None:
    """remediator's own defaults (``self_healing`` in remediator/config/model.py) and the rules agree."""
    from remediator.config.model import SelfHealingConfig

    seed = SelfHealingConfig()
    expected = {
        "HostMemoryHigh": seed.memory_threshold / 100,
        "ContainerMemoryHigh": seed.memory_threshold / 100,
        "HostDiskUsageHigh": seed.disk_threshold / 100,
        "HostCpuHigh": seed.cpu_threshold / 100,
        "ContainerCpuHigh": seed.cpu_threshold / 100,
        "ServiceLatencyHigh": seed.response_time_threshold,
        "ServiceErrorRateHigh": seed.error_rate_threshold / 100,
    }
    actual = {name: generator.POLICIES[name].threshold for name in expected}
    assert actual == pytest.approx(expected), "rules/generate.py POLICIES vs SelfHealingConfig"


# --- alert conventions ------------------------------------------------------------------------


@pytest.mark.parametrize("rule", ALERTS, ids=lambda r: r.name)
def test_alert_conventions(rule: Rule) -> None:
    body = rule.body
    where = f"{rule.file}: {rule.name}"
    assert ALERT_NAME.match(rule.name), f"{where}: alert names are CamelCase"
    assert "for" in body, f"{where}: every alert needs `for:`"
    duration_ms(str(body["for"]))
    assert body.get("labels", {}).get("severity") in SEVERITIES, f"{where}: severity"
    annotations = body.get("annotations", {})
    assert set(annotations) >= {"summary", "description", "runbook_url"}, f"{where}: annotations"
    assert "{{" not in annotations["summary"], f"{where}: summary must be static text"
    assert re.search(r"\$(labels|value)", annotations["description"]), (
        f"{where}: description must use $labels or $value"
    )
    url = str(annotations["runbook_url"])
    assert url == RUNBOOK_URL + github_slug(rule.name), f"{where}: runbook_url {url}"


def test_alert_names_unique() -> None:
    names = [rule.name for rule in ALERTS]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


def test_runbook_has_a_section_per_alert() -> None:
    sections = runbook_sections()
    anchors = {github_slug(heading) for heading in sections}
    alert_names = {rule.name for rule in ALERTS}
    for name in sorted(alert_names):
        url = next(str(r.body["annotations"]["runbook_url"]) for r in ALERTS if r.name == name)
        assert url.split("#", 1)[1] in anchors, f"docs/runbook.md: no anchor for {url}"
        assert name in sections, f"docs/runbook.md: no heading `{name}`"
        missing = [part for part in RUNBOOK_PARTS if part not in sections[name]]
        assert not missing, f"docs/runbook.md, {name}: missing {missing}"
    camel_headings = {h for h in runbook_sections(min_level=2) if ALERT_NAME.match(h)}
    assert camel_headings <= alert_names, (
        f"docs/runbook.md: sections for alerts that do not exist: {camel_headings - alert_names}"
    )


def test_runbook_starts_with_an_intro() -> None:
    sections = runbook_sections()
    first_heading, intro = next(iter(sections.items()))
    assert first_heading == "Runbook"
    assert len(intro.split()) > 30, "docs/runbook.md: start with a short intro"


# --- recording rules --------------------------------------------------------------------------


@pytest.mark.parametrize("rule", RECORDS, ids=lambda r: r.name)
def test_recording_rule_name(rule: Rule) -> None:
    assert RECORD_NAME.match(rule.name), f"{rule.file}: {rule.name} is not level:metric:operations"


def test_every_recording_rule_is_tested() -> None:
    exprs = expr_tests()
    untested = [r.name for r in RECORDS if not any(r.name in expr for expr in exprs)]
    assert not untested, f"recording rules without a promql_expr_test: {untested}"


# --- promtool test coverage -------------------------------------------------------------------


def test_test_files_name_existing_alerts() -> None:
    unknown = set(alert_cases()) - {rule.name for rule in ALERTS}
    assert not unknown, f"rules/tests test alerts that do not exist: {sorted(unknown)}"


@pytest.mark.parametrize("rule", ALERTS, ids=lambda r: r.name)
def test_alert_is_tested_before_and_at_for(rule: Rule) -> None:
    """A firing case at T and, in the same test group, an empty case at T - one interval."""
    cases = alert_cases().get(rule.name, [])
    firing = [c for c in cases if c.fires]
    assert firing, f"rules/tests: no case where {rule.name} fires"
    quiet = {(c.file, c.group, c.eval_ms) for c in cases if not c.fires}
    paired = [c for c in firing if (c.file, c.group, c.eval_ms - c.interval_ms) in quiet]
    assert paired, (
        f"rules/tests: {rule.name} needs `exp_alerts: []` one evaluation_interval before a "
        "case where it fires (just before `for:` elapses)"
    )
    for_ms = duration_ms(str(rule.body["for"]))
    assert any(c.eval_ms >= for_ms for c in paired), f"{rule.name}: fires before its `for:`"
