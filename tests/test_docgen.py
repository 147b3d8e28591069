"""docs/configuration.md is generated from the configuration models and kept in step with them.

The committed file must equal what ``python -m remediator.config.docgen`` writes; every field of every
model reachable from :class:`~remediator.config.model.Config` has a meaning; the example validates; the
seed defaults in the tables are the models' defaults.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from pydantic import BaseModel

from remediator.config import docgen
from remediator.config.durations import parse_duration
from remediator.config.model import CircuitBreakerConfig, Config, SelfHealingConfig, parse
from remediator.config.steps import action_names
from remediator.config.targets import TargetType

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
CELL_SPLIT = re.compile(r"(?<!\\)\|")


def reachable() -> list[type[BaseModel]]:
    """Config and every model its annotations mention, however deeply (unions, lists, dicts)."""

    def models(tp: Any) -> list[type[BaseModel]]:
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            return [tp]
        return [m for arg in get_args(tp) for m in models(arg)]

    found: list[type[BaseModel]] = [Config]
    for model in found:
        for info in model.model_fields.values():
            found += [m for m in models(info.annotation) if m not in found]
    return found


def section(title: str) -> str:
    """The text of the ``## title`` section of the committed document."""
    text = DOC.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.DOTALL | re.MULTILINE)
    assert match, f"docs/configuration.md has no section '## {title}'"
    return match.group(1)


def table_rows(text: str) -> dict[str, list[str]]:
    """``key -> cells`` of the ``| key | type | default | meaning |`` rows in ``text``."""
    rows: dict[str, list[str]] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in CELL_SPLIT.split(line.strip())[1:-1]]
        if len(cells) == 4 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = cells
    return rows


def test_committed_document_is_up_to_date() -> None:
    assert DOC.exists(), (
        "docs/configuration.md is missing: run `python -m remediator.config.docgen`"
    )
    assert DOC.read_text(encoding="utf-8") == docgen.render(), (
        "docs/configuration.md is out of date: run `python -m remediator.config.docgen`"
    )


def test_check_flag_reports_a_stale_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "configuration.md"
    monkeypatch.setattr(docgen, "OUTPUT", target)
    assert docgen.main(["--check"]) == 1  # missing
    assert "run `python -m remediator.config.docgen`" in capsys.readouterr().err
    assert docgen.main([]) == 0
    assert docgen.main(["--check"]) == 0
    target.write_text(target.read_text(encoding="utf-8") + "edited\n", encoding="utf-8")
    assert docgen.main(["--check"]) == 1


def test_the_walk_reaches_every_target_and_step_model() -> None:
    names = {m.__name__ for m in reachable()}
    assert {"DockerContainerTarget", "ProcessTarget", "HttpCall", "PluginStep"} <= names
    assert {"SlackConfig", "EmailConfig", "RetrySpec", "WindowLimit", "EscalationLevel"} <= names


def test_every_field_has_a_description() -> None:
    missing = []
    for model in reachable():
        for name in model.model_fields:
            try:
                docgen.description(model, name)
            except LookupError:
                missing.append(f"{model.__name__}.{name}")
    assert not missing, f"add to DESCRIPTIONS in remediator/config/docgen.py: {missing}"


def test_no_description_names_a_field_that_does_not_exist() -> None:
    known = {
        f"{cls.__name__}.{name}"
        for model in reachable()
        for name in model.model_fields
        for cls in model.__mro__
    }
    assert not set(docgen.DESCRIPTIONS) - known


def test_the_example_config_validates() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", section("A complete minimal example"), re.DOTALL)
    assert len(blocks) == 1
    config = parse(yaml.safe_load(blocks[0]), env={})
    assert config.targets and config.playbooks and config.auth.tokens


@pytest.mark.parametrize(
    ("title", "model"),
    [("`circuit_breaker`", CircuitBreakerConfig), ("`self_healing`", SelfHealingConfig)],
)
def test_seed_defaults_in_the_tables_are_the_models(title: str, model: type[BaseModel]) -> None:
    rows = table_rows(section(title))
    assert list(rows) == list(model.model_fields)
    for name, info in model.model_fields.items():
        shown = rows[name][2].strip("`")
        value: Any
        if rows[name][1].startswith("duration"):
            value = parse_duration(shown)
        elif rows[name][1] == "boolean":
            value = {"true": True, "false": False}[shown]
        else:
            value = float(shown)
        assert value == info.default, f"{title} {name}: the table says {shown}"


def test_seed_values_are_stated() -> None:
    breaker = table_rows(section("`circuit_breaker`"))
    assert [breaker[k][2] for k in breaker] == ["`true`", "`5`", "`60s`", "`3`"]
    healing = table_rows(section("`self_healing`"))
    assert [healing[k][2] for k in healing] == [
        "`85`",
        "`90`",
        "`80`",
        "`5s`",
        "`5`",
        "`30s`",
        "`60s`",
    ]
    health = table_rows(section("`health`"))
    assert [health[k][2] for k in list(health)[1:]] == ["`30s`", "`60s`", "`2m`"]


def test_every_target_type_and_action_is_documented() -> None:
    targets = section("`targets`")
    for kind in get_args(TargetType):
        assert f"\n### `{kind}`\n" in targets
    steps = section("`playbooks`")
    assert "playbooks.md" in steps
    for action in action_names():
        assert f"\n| `{action}` |" in steps


def test_environment_and_check_config_are_documented() -> None:
    text = section("Environment variables")
    for var in (
        "REMEDIATOR_CONFIG",
        "REMEDIATOR_ALERTMANAGER_TOKEN",
        "REMEDIATOR_VIEWER_TOKEN",
        "REMEDIATOR_ADMIN_TOKEN",
    ):
        assert f"`{var}`" in text
    assert "${NAME}" in text
    check = section("Checking a configuration")
    assert "playbooks[0].steps[0].action: unknown action 'docker.restrat'" in check
    assert "remediator.yml: valid (2 targets, 0 patterns, 1 playbooks)" in check


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lowercase, punctuation dropped except ``-`` and ``_``."""
    headings = re.findall(r"^#+ (.+)$", path.read_text(encoding="utf-8"), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in headings}


def test_links_point_at_existing_headings() -> None:
    text = DOC.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([a-z.]*)#([\w-]+)\)", text)
    assert links
    for page, anchor in links:
        target = DOC.with_name(page) if page else DOC
        assert anchor in anchors(target), f"broken link {page}#{anchor}"


def test_durations_render_as_written() -> None:
    for seconds, text in [(0.25, "250ms"), (30, "30s"), (60, "60s"), (120, "2m"), (3600, "1h")]:
        assert docgen.duration(seconds) == text
        assert parse_duration(text) == seconds
    assert docgen.duration(90 * 86400) == "90d"
