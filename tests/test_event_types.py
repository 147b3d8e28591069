"""The event table: every type the code can record has a row in remediator.audit.events.EVENT_TYPES,
every row is a type the code records, and docs/playbooks.md#events shows exactly that table.

The package is read with ``ast``: an event type reaches the store as the ``type`` of an
``Event(...)``, ``evolve(...)`` or ``replace(...)`` (or runner's ``_event(base, type, ...)``, or
an ``EventBuilder``'s ``.event(type, ...)``),
and is written either as an ``events`` constant or as a string; every such string anywhere in
the package (maps from categories or verbs to types included) is looked up too.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from remediator.audit import eventdoc, events
from remediator.audit.events import EVENT_TYPES
from remediator.engine.decisions import _CATEGORY_EVENTS

PACKAGE = Path(events.__file__).resolve().parents[1]
DOC = eventdoc.OUTPUT
SHAPE = re.compile(r"^[a-z]+:[a-z][a-z_-]*$")  # family:name, as every event type is written
CONSTANTS = {
    name: value
    for name, value in vars(events).items()
    if name.isupper() and isinstance(value, str) and SHAPE.match(value)
}


def _modules() -> list[tuple[Path, ast.Module]]:
    return [(p, ast.parse(p.read_text(encoding="utf-8"))) for p in sorted(PACKAGE.rglob("*.py"))]


def _module_strings(tree: ast.Module) -> dict[str, str]:
    """Module-level ``NAME = "..."`` and ``NAME = events.X`` / imported ``X`` string constants."""
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module == "remediator.audit.events":
            for alias in node.names:
                if alias.name in CONSTANTS:
                    found[alias.asname or alias.name] = CONSTANTS[alias.name]
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            value = _value(node.value, found)
            if isinstance(target, ast.Name) and value is not None:
                found[target.id] = value
    return found


def _value(node: ast.expr, names: dict[str, str]) -> str | None:
    """The event type an expression stands for, when it is written as one."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in ("ev", "events")
        and node.attr in CONSTANTS
    ):
        return CONSTANTS[node.attr]
    if isinstance(node, ast.Name):
        return names.get(node.id)
    return None


def emitted() -> dict[str, list[str]]:
    """Event type -> where the package records it (``path:line``)."""
    found: dict[str, list[str]] = {}
    for path, tree in _modules():
        names = _module_strings(tree)
        where = f"{path.relative_to(PACKAGE.parent)}"
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            callee = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            kinds = [k.value for k in node.keywords if k.arg == "type"]
            if callee == "_event" and len(node.args) >= 2:
                kinds.append(node.args[1])
            if callee == "event" and isinstance(func, ast.Attribute) and node.args:
                kinds.append(node.args[0])  # EventBuilder.event (engine/run.py)
            if callee not in ("Event", "evolve", "replace", "_event", "event"):
                continue
            for expr in kinds:
                value = _value(expr, names)
                if value is not None and value:
                    found.setdefault(value, []).append(f"{where}:{node.lineno}")
    return found


def type_strings() -> dict[str, list[str]]:
    """Every string in the package shaped like an event type of a known family."""
    families = {kind.partition(":")[0] for kind in CONSTANTS.values()}
    found: dict[str, list[str]] = {}
    for path, tree in _modules():
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and SHAPE.match(node.value)
                and node.value.partition(":")[0] in families
            ):
                where = f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
                found.setdefault(node.value, []).append(where)
    return found


def referenced() -> set[str]:
    """The types whose ``events`` constant the package uses outside remediator/audit/events.py."""
    found: set[str] = set()
    for path, tree in _modules():
        if path == PACKAGE / "audit" / "events.py":
            continue
        names = _module_strings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute | ast.Name):
                value = _value(node, names)
                if value is not None:
                    found.add(value)
    return found


def test_every_type_the_code_records_has_a_row() -> None:
    recorded = emitted()
    # The walk sees the engine's, the intake's, the manual runs' and the outbox's events.
    assert {"recovery:started", "recovery:triggered", "config:changed"} <= set(recorded)
    assert {"notification:dead", "audit:checkpoint", "recovery:verified"} <= set(recorded)
    missing = {kind: where for kind, where in recorded.items() if kind not in EVENT_TYPES}
    assert not missing, f"add to EVENT_TYPES in remediator/audit/events.py: {missing}"


def test_every_type_string_in_the_package_has_a_row() -> None:
    strings = type_strings()
    assert {"health:high_cpu", "recovery:paused", "service:recovered"} <= set(strings)
    missing = {kind: where for kind, where in strings.items() if kind not in EVENT_TYPES}
    assert not missing, f"add to EVENT_TYPES in remediator/audit/events.py: {missing}"


def test_every_row_is_a_constant_the_code_records() -> None:
    assert set(EVENT_TYPES) == set(CONSTANTS.values())
    recorded = set(emitted()) | referenced()
    assert {"alert:received", "alert:duplicate", "health:high_disk"} <= recorded
    never = sorted(set(EVENT_TYPES) - recorded)
    assert not never, f"in EVENT_TYPES but never recorded: {never}"


def test_the_health_types_are_the_categories_events() -> None:
    assert set(_CATEGORY_EVENTS.values()) == {k for k in EVENT_TYPES if k.startswith("health:")}


def test_every_row_says_when_and_what() -> None:
    for kind, (when, fields) in EVENT_TYPES.items():
        assert when.strip() and fields.strip(), kind
        assert "|" not in when + fields, f"{kind}: a '|' breaks the table"


def test_the_committed_table_is_up_to_date() -> None:
    page = DOC.read_text(encoding="utf-8")
    assert page == eventdoc.render(page), (
        "docs/playbooks.md's event table is out of date: run `python -m remediator.audit.eventdoc`"
    )
    for kind in EVENT_TYPES:
        assert f"\n| `{kind}` |" in page


def test_check_flag_reports_a_stale_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "playbooks.md"
    target.write_text(f"# Events\n\n{eventdoc.BEGIN}\n| old |\n{eventdoc.END}\n\nAfter.\n")
    monkeypatch.setattr(eventdoc, "OUTPUT", target)
    assert eventdoc.main(["--check"]) == 1
    assert "run `python -m remediator.audit.eventdoc`" in capsys.readouterr().err
    assert eventdoc.main([]) == 0
    assert eventdoc.main(["--check"]) == 0
    text = target.read_text(encoding="utf-8")
    assert text.startswith("# Events\n\n") and text.endswith(f"{eventdoc.END}\n\nAfter.\n")
    assert "| old |" not in text and "| `recovery:verified` |" in text
    target.write_text(text.replace("| `recovery:verified` |", "| `recovery:verifed` |"))
    assert eventdoc.main(["--check"]) == 1


def test_a_page_without_the_markers_is_refused() -> None:
    with pytest.raises(ValueError, match="markers"):
        eventdoc.render("# Events\n\nno table here\n")
