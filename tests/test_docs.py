"""The examples in docs/playbooks.md and docs/plugins.md are valid, and the reference is complete.

Every fenced ``yaml`` block must parse. A block with a top-level ``targets:`` or ``playbooks:``
key is a complete configuration and must pass :func:`remediator.config.model.parse`. A block that is a
list of steps must validate as steps. Other fragments are only parsed.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from pydantic import TypeAdapter

from remediator.config import model as config_mod
from remediator.config.patterns import DEFAULT_FIELDS, DEFAULT_PATTERNS
from remediator.config.steps import ACTION_TARGET_TYPES, Step, action_names
from remediator.config.targets import TargetType
from remediator.engine.engine import ESCALATE_ON_SKIP
from remediator.engine.guards import (
    BLAST_RADIUS,
    CIRCUIT_OPEN,
    COOLDOWN,
    ESCALATING,
    MAX_PER_WINDOW,
    PAUSED,
    QUARANTINED,
)

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("docs/playbooks.md", "docs/plugins.md")
FENCE = re.compile(
    r"^```(?P<lang>[a-z]*)[^\n]*\n(?P<body>.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE
)
CELL_SPLIT = re.compile(r"(?<!\\)\|")
STEPS = TypeAdapter(list[Step])


@dataclass(frozen=True)
class Block:
    path: str
    line: int
    lang: str
    text: str

    @property
    def id(self) -> str:
        return f"{self.path}:{self.line}"

    def data(self) -> Any:
        return yaml.safe_load(self.text)


def read(path: str) -> str:
    return (ROOT / path).read_text(encoding="utf-8")


def blocks(lang: str, paths: tuple[str, ...] = DOCS) -> list[Block]:
    found: list[Block] = []
    for path in paths:
        text = read(path)
        for match in FENCE.finditer(text):
            if match.group("lang") == lang:
                line = text.count("\n", 0, match.start()) + 1
                found.append(Block(path, line, lang, match.group("body")))
    return found


def is_config(data: Any) -> bool:
    return isinstance(data, dict) and bool({"targets", "playbooks"} & set(data))


def is_steps(data: Any) -> bool:
    return (
        isinstance(data, list)
        and bool(data)
        and all(isinstance(item, dict) and "action" in item for item in data)
    )


YAML = blocks("yaml")


def _safe(block: Block) -> Any:
    try:
        return block.data()
    except yaml.YAMLError:
        return None  # reported by test_every_yaml_block_parses


CONFIGS = [b for b in YAML if is_config(_safe(b))]
STEP_LISTS = [b for b in YAML if is_steps(_safe(b))]


def table_rows(text: str, header: str) -> list[list[str]]:
    """The cells of each body row of the first table whose header row starts with ``header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows: list[list[str]] = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip().replace("\\|", "|") for c in CELL_SPLIT.split(line.strip())[1:-1]]
        rows.append(cells)
    return rows


def code(cell: str) -> str:
    assert cell.startswith("`") and cell.endswith("`"), cell
    return cell[1:-1]


# -- the examples ----------------------------------------------------------------------------


def test_the_docs_have_examples_of_each_kind() -> None:
    assert {b.path for b in CONFIGS} == set(DOCS)
    assert len([b for b in CONFIGS if b.path == "docs/playbooks.md"]) >= 4
    assert len(STEP_LISTS) >= 10


@pytest.mark.parametrize("block", YAML, ids=[b.id for b in YAML])
def test_every_yaml_block_parses(block: Block) -> None:
    block.data()


@pytest.mark.parametrize("block", CONFIGS, ids=[b.id for b in CONFIGS])
def test_every_configuration_example_is_valid(block: Block) -> None:
    cfg = config_mod.parse(block.data(), env={})
    assert cfg.targets or cfg.playbooks


@pytest.mark.parametrize("block", STEP_LISTS, ids=[b.id for b in STEP_LISTS])
def test_every_list_of_steps_is_valid(block: Block) -> None:
    STEPS.validate_python(block.data())


@pytest.mark.parametrize("block", blocks("python"), ids=[b.id for b in blocks("python")])
def test_every_python_example_compiles(block: Block) -> None:
    compile(block.text, block.id, "exec")


def test_the_entry_points_in_plugins_md_are_the_example_plugins() -> None:
    [block] = blocks("toml", ("docs/plugins.md",))
    documented = tomllib.loads(block.text)["project"]
    example = tomllib.loads(read("tests/plugin_example/pyproject.toml"))["project"]
    assert documented["entry-points"] == example["entry-points"]
    assert (documented["name"], documented["version"]) == (example["name"], example["version"])


# -- the reference is complete and matches the code -------------------------------------------


def test_every_action_is_documented() -> None:
    text = read("docs/playbooks.md")
    for name in action_names():
        assert f"`{name}`" in text, name
    # Each action family and verification step has a row of its own in a reference table.
    first_cells = {
        code(line.split("|")[1].strip()) for line in text.splitlines() if line.startswith("| `")
    }
    assert set(ACTION_TARGET_TYPES) | {"verify.health", "verify.prometheus"} <= first_cells


def test_every_target_type_is_documented() -> None:
    rows = table_rows(read("docs/playbooks.md"), "| Type ")
    assert [code(row[0]) for row in rows] == list(get_args(TargetType))


def test_the_default_patterns_table_matches_the_code() -> None:
    rows = table_rows(read("docs/playbooks.md"), "| id | pattern |")
    documented = [(code(r[0]), code(r[1]), r[2], r[3]) for r in rows]
    assert documented == [(p.id, p.pattern, p.category, p.severity) for p in DEFAULT_PATTERNS]
    assert all(p.flags == ["i"] and tuple(p.fields) == DEFAULT_FIELDS for p in DEFAULT_PATTERNS)


def test_the_guards_are_documented_in_order() -> None:
    rows = table_rows(read("docs/playbooks.md"), "| # | Reason |")
    reasons = [code(row[1]) for row in rows]
    guards = [PAUSED, QUARANTINED, BLAST_RADIUS, COOLDOWN, MAX_PER_WINDOW, CIRCUIT_OPEN]
    assert [r for r in reasons if r in guards][: len(guards)] == guards
    escalated = {code(row[1]) for row in rows if row[3] == "yes"}
    assert escalated == set(ESCALATING) | ESCALATE_ON_SKIP


def test_the_api_doc_lists_exactly_the_sections_that_need_a_restart() -> None:
    text = " ".join((ROOT / "docs" / "api.md").read_text(encoding="utf-8").split())
    found = re.search(r"The other sections \(([^)]*)\) need a restart", text)
    assert found, "docs/api.md no longer says which sections need a restart"
    listed = re.findall(r"`([a-z_]+)`", found.group(1))
    assert sorted(listed) == sorted(config_mod.RESTART_ONLY)
