"""No dead configuration keys: every key of docs/configuration.md is read by the code.

The reference is walked table by table (every row of every section, the target types and the
parameters of every action), each key is tied to the model field it documents, and the package is
type-checked with mypy (the strict configuration of ``pyproject.toml``) to find every attribute
read whose object has that model's type, wherever the object came from (``cfg.self_healing``,
a parameter, a loop variable). Reads in ``remediator/config/model.py`` and ``remediator/config/docgen.py``
(which define and describe the keys) do not count, nor do the tests. A key that nothing reads
fails the test with its path; remove it (adding it to ``config.problems.REMOVED``) or make it work.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args, get_origin

import pytest
from mypy import build
from mypy.config_parser import parse_config_file
from mypy.modulefinder import BuildSource
from mypy.nodes import MemberExpr
from mypy.options import Options
from mypy.server.subexpr import get_subexpressions
from mypy.types import Instance, UnionType, get_proper_type
from pydantic import BaseModel

from remediator.cli import main
from remediator.config.model import Config, NotificationsConfig, SelfHealingConfig
from remediator.config.problems import REMOVED
from remediator.config.steps import Step, _Step
from remediator.config.targets import Target, _TargetBase
from remediator.notifiers import NOTIFIERS
from remediator.notifiers import section as channel_section

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "configuration.md"
PACKAGE = ROOT / "remediator"
NOT_READERS = frozenset({"remediator.config.model", "remediator.config.docgen"})
CELL_SPLIT = re.compile(r"(?<!\\)\|")
HEADING = re.compile(r"^#{2,4} (?:`(?P<path>[^`]+)`|(?P<title>.+))$")
Model = type[BaseModel]
# Keys that code outside the package reads, by design; each says who reads it.
READ_OUTSIDE = {
    "steps[plugin].params": "the plugin, as it is (tests/plugin_example reads ctx.step.params)",
}
# Channel sections, read by name through the notifier registry (each notifier declares its
# ``config_key``; check_the_registry proves each one reads its own section).
READ_BY_REGISTRY = {f"notifications.{kind.config_key}": kind for kind in NOTIFIERS}
PLUGIN_EXAMPLE = ROOT / "tests" / "plugin_example" / "remediator_example_plugin" / "__init__.py"


def _models(tp: Any) -> list[Model]:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    return [model for arg in get_args(tp) for model in _models(arg)]


def _fullname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


# --- the reference ------------------------------------------------------------------------------


def reference_keys() -> set[tuple[str, str]]:
    """``(table, key)`` for every key row of docs/configuration.md; ``table`` is the path in the
    heading above the row (``server``, ``playbooks[].retry``, ``docker_container``) and the
    parameters of an action are listed under the action's name (``docker.restart``)."""
    keys: set[tuple[str, str]] = set()
    table = ""
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if match := HEADING.match(line):
            table = match.group("path") or match.group("title")
            continue
        cells = [c.strip() for c in CELL_SPLIT.split(line.strip())[1:-1]]
        if len(cells) != 4 or not cells[0].startswith("`"):
            continue
        name = cells[0].strip("`")
        if table == "Steps" and name not in ("timeout", "approval"):  # an action's row
            keys |= {(name, p) for p in re.findall(r"(?:^|<br>)`(\w+)` \(", cells[2])}
        else:
            keys.add((table, name))
    return keys


@dataclass(frozen=True)
class Key:
    """A documented key and the model fields it stands for (one per target type for `type`)."""

    path: str
    fields: tuple[tuple[Model, str], ...]


def _tables(model: Model, table: str, path: str) -> Iterator[tuple[str, Key]]:
    """Like docgen.tables: the model's rows, then one table per nested model."""
    for name, info in model.model_fields.items():
        yield table, Key(f"{path}.{name}", ((model, name),))
        if len(subs := _models(info.annotation)) == 1:
            sub = f"{path}.{name}" + ("[]" if get_origin(info.annotation) is list else "")
            yield from _tables(subs[0], sub, sub)


def model_keys() -> dict[tuple[str, str], Key]:
    """``(table, key)`` -> :class:`Key` for every key the models give the reference."""
    kinds = _models(Target)
    keys: dict[tuple[str, str], Key] = {}
    for section, info in Config.model_fields.items():
        keys[("", section)] = Key(section, ((Config, section),))
        if section == "targets":
            for name in _TargetBase.model_fields:
                keys[(section, name)] = Key(f"targets[].{name}", ((_TargetBase, name),))
            keys[(section, "type")] = Key("targets[].type", tuple((k, "type") for k in kinds))
            for kind in kinds:
                kind_name = get_args(kind.model_fields["type"].annotation)[0]
                for name in kind.model_fields.keys() - _TargetBase.model_fields.keys() - {"type"}:
                    keys[(kind_name, name)] = Key(f"targets[{kind_name}].{name}", ((kind, name),))
                    if len(subs := _models(kind.model_fields[name].annotation)) == 1:
                        sub = f"targets[{kind_name}].{name}"  # a nested table (e.g. `leak`)
                        for table, key in _tables(subs[0], sub, sub):
                            keys[(table, key.path.rsplit(".", 1)[1])] = key
        elif section == "builtin_patterns":
            keys[(section, section)] = Key(section, ((Config, section),))
        else:
            path = section + ("[]" if get_origin(info.annotation) is list else "")
            for table, key in _tables(_models(info.annotation)[0], section, path):
                keys[(table, key.path.rsplit(".", 1)[1])] = key
    keys[("Steps", "timeout")] = Key("steps[].timeout", ((_Step, "timeout"),))
    keys[("Steps", "approval")] = Key("steps[].approval", ((_Step, "approval"),))
    for step in _models(Step):
        action = get_args(step.model_fields["action"].annotation)[0]
        keys[("", action)] = Key(f"steps[{action}].action", ((step, "action"),))
        for name in step.model_fields.keys() - {"action", "timeout", "approval"}:
            keys[(action, name)] = Key(f"steps[{action}].{name}", ((step, name),))
    return keys


# --- what the code reads ------------------------------------------------------------------------


@dataclass(frozen=True)
class Read:
    """``obj.name`` in the package, where ``obj``'s static type is ``owner`` (with its MRO)."""

    owner: str
    lineage: frozenset[str]
    name: str
    module: str


def _module(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def attribute_reads(package: Path) -> list[Read]:
    """Every attribute access in ``package`` whose object mypy types as a class instance."""
    options = Options()
    parse_config_file(options, lambda: None, str(ROOT / "pyproject.toml"), sys.stdout, sys.stderr)
    options.preserve_asts = options.export_types = True
    options.incremental, options.cache_dir = False, "/dev/null"
    sources = [BuildSource(str(p), _module(p)) for p in sorted(package.rglob("*.py"))]
    result = build.build(sources, options)
    assert not result.errors, "mypy found errors:\n" + "\n".join(result.errors)
    reads: list[Read] = []
    for source in sources:
        tree = result.graph[source.module].tree
        assert tree is not None
        for expr in get_subexpressions(tree):
            if not isinstance(expr, MemberExpr) or (tp := result.types.get(expr.expr)) is None:
                continue
            tp = get_proper_type(tp)
            for item in map(get_proper_type, tp.items if isinstance(tp, UnionType) else [tp]):
                if isinstance(item, Instance):
                    lineage = frozenset(info.fullname for info in item.type.mro)
                    reads.append(Read(item.type.fullname, lineage, expr.name, source.module))
    return reads


def is_read(model: Model, name: str, reads: list[Read]) -> bool:
    """Whether some read reaches ``model.name``: on the model or a subclass of it, or on a base
    class that declares the field (``_PgFilter.usename`` is ``PostgresTerminate.usename``)."""
    declaring = {
        _fullname(base)
        for base in model.__mro__
        if issubclass(base, BaseModel) and name in base.model_fields
    }
    return any(
        read.name == name
        and read.module not in NOT_READERS
        and (_fullname(model) in read.lineage or read.owner in declaring)
        for read in reads
    )


@pytest.fixture(scope="module")
def package_reads() -> list[Read]:
    return attribute_reads(PACKAGE)


def check_the_walk() -> None:
    """The walk covers exactly the key rows of the reference, and the exemptions are keys."""
    documented = reference_keys()
    walked = {key for key in model_keys() if key[0] != ""}
    assert documented, "no key rows found in docs/configuration.md"
    assert walked == documented, (
        f"only in the models: {sorted(walked - documented)}; "
        f"only in docs/configuration.md: {sorted(documented - walked)}"
    )
    assert set(READ_OUTSIDE) <= {key.path for key in model_keys().values()}
    assert "ctx.step.params" in PLUGIN_EXAMPLE.read_text(encoding="utf-8")


def check_the_scan(reads: list[Read]) -> None:
    """The scan finds reads by type, not by name: ``target.check_interval`` (a target's key)
    is no read of ``self_healing.check_interval``, and config.py's own reads do not count."""
    mine = [read for read in reads if read.module == "remediator.config.model"]
    assert any(read.owner == "remediator.config.model.Config" for read in mine)
    assert not is_read(Config, "targets", mine)
    targets_only = [
        read for read in reads if "remediator.config.targets._TargetBase" in read.lineage
    ]
    assert is_read(_TargetBase, "check_interval", targets_only)
    assert not is_read(SelfHealingConfig, "check_interval", targets_only)


def check_the_registry() -> None:
    """Each registered notifier's section is read from the configuration by its own class."""
    for path, kind in READ_BY_REGISTRY.items():
        marker = object()
        notes = NotificationsConfig.model_construct()
        object.__setattr__(notes, kind.config_key, marker)
        assert channel_section(notes, kind) is marker, (
            f"{path} is not read by the {kind.channel} notifier"
        )


def test_every_key_of_the_reference_is_read_by_the_code(package_reads: list[Read]) -> None:
    check_the_walk()
    check_the_registry()
    check_the_scan(package_reads)
    unread = sorted(
        key.path
        for key in model_keys().values()
        if key.path not in READ_OUTSIDE
        and key.path not in READ_BY_REGISTRY
        and not any(is_read(model, name, package_reads) for model, name in key.fields)
    )
    assert not unread, (
        "configuration keys that no code outside remediator/config/model.py and remediator/config/docgen.py "
        f"reads (make them work, or remove them and add them to config.problems.REMOVED): {unread}"
    )


# --- removed keys -------------------------------------------------------------------------------


def test_check_config_names_a_removed_key_and_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The mechanism, shown with a key registered for the test (health.queue_interval, the one
    # removed today, moved to self_healing.queue_interval).
    path, why = "health.retired_interval", "no target type uses it"
    monkeypatch.setitem(REMOVED, path, why)
    section, key = path.split(".")
    config = tmp_path / "remediator.yml"
    config.write_text(f"{section}:\n  {key}: 1m\n", encoding="utf-8")
    assert main(["check-config", str(config)]) == 1
    assert capsys.readouterr().err.splitlines() == [f"{path}: removed: {why}"]
    assert REMOVED[path] == why
    text = DOC.read_text(encoding="utf-8").split(f"## `{section}`")[1].split("\n## ")[0]
    assert f"| `{key}` |" not in text, f"docs/configuration.md still documents {path}"
