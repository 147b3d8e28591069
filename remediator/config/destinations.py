"""Where a configuration's secrets are sent, and the rule that keeps a redacted one there.

``GET /configuration`` shows secrets as ``***`` and ``PUT /configuration`` puts them back
(:func:`remediator.config.document.restore`). A secret put back that way must go where it went
before: otherwise anyone holding an admin token could move a target's ``base_url`` to an address
they control and receive its bearer token. So each model that sends secrets declares, once, the
fields that decide where they go, in a class attribute::

    class HttpTarget(_TargetBase):
        DESTINATION: ClassVar[tuple[str, ...]] = ("base_url", "backup_url")

and a model whose field names an item of another section (a playbook's ``target``) declares the
reference, ``DESTINATION_REFS = {"target": "targets"}``: the named item's destination is then
part of the model's own (a templated value may name any item of the section).

:func:`moved` compares the new configuration with the running one: every model that relies on a
secret the document did not carry (a path :func:`~remediator.config.document.restore` reported
below the model) must keep every destination field, and every referenced item's destination,
unchanged. Each difference is one line naming the field; the API answers them with 422
``SECRET_DESTINATION_CHANGED`` and changes nothing. Sending the secret itself (not ``***``)
with a new destination is a normal change.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from remediator.config.document import Path
from remediator.config.model import Config
from remediator.config.problems import field_path
from remediator.redaction import REDACTED

_ITEM_KEYS = ("name", "id")


def destination(model: BaseModel) -> tuple[str, ...]:
    """The fields of ``model`` that decide where its secrets are sent (none: it sends none)."""
    fields: tuple[str, ...] = getattr(type(model), "DESTINATION", ())
    return fields


def references(model: BaseModel) -> Mapping[str, str]:
    """Fields of ``model`` naming an item of a top-level section whose destination counts."""
    refs: Mapping[str, str] = getattr(type(model), "DESTINATION_REFS", {})
    return refs


def _item_key(item: Any) -> str | None:
    for name in _ITEM_KEYS:
        value = getattr(item, name, None)
        if isinstance(value, str):
            return f"{name}={value}"
    return None


def _pairs(new: Any, old: Any, path: Path) -> Iterator[tuple[Path, BaseModel, BaseModel | None]]:
    """Every model inside ``new`` with its path and its counterpart in ``old`` (list items
    matched by ``name``/``id`` when they have one, else by position, as restoring does)."""
    if isinstance(new, BaseModel):
        counterpart = old if isinstance(old, type(new)) else None
        yield path, new, counterpart
        for name in type(new).model_fields:
            yield from _pairs(getattr(new, name), getattr(counterpart, name, None), (*path, name))
    elif isinstance(new, list | tuple):
        olds = old if isinstance(old, list | tuple) else []
        by_key = {k: item for item in olds if (k := _item_key(item)) is not None}
        for i, item in enumerate(new):
            key = _item_key(item)
            match = by_key.get(key) if key is not None else (olds[i] if i < len(olds) else None)
            yield from _pairs(item, match, (*path, i))
    elif isinstance(new, dict):
        previous = old if isinstance(old, dict) else {}
        for key, value in new.items():
            yield from _pairs(value, previous.get(key), (*path, str(key)))


def _referenced(config: Config, section: str, value: Any) -> dict[str, BaseModel]:
    """The items of ``section`` that ``value`` names: the one with that name, or every item
    when ``value`` is a template (or names none)."""
    items = [i for i in getattr(config, section, []) if isinstance(i, BaseModel)]
    named = {str(getattr(i, "name", "")): i for i in items}
    if isinstance(value, str) and value in named:
        return {value: named[value]}
    return named


def _reference_moves(
    new: Config, old: Config, *, section: str, value: Any, old_value: Any
) -> list[str]:
    """Why the items ``value`` names (in ``new``) do not receive secrets where the items
    ``old_value`` named (in ``old``) did; empty if they do."""
    before = _referenced(old, section, old_value)
    reasons = []
    for name, item in _referenced(new, section, value).items():
        prior = before.get(name)
        if prior is None or type(prior) is not type(item):
            reasons.append(f"{name!r} ({section}) is new")
            continue
        reasons += [
            f"{name!r} ({section}) has a new {field}"
            for field in destination(item)
            if getattr(item, field) != getattr(prior, field)
        ]
    return reasons


def moved(new: Config, old: Config, held: Sequence[Path]) -> list[str]:
    """One line per destination field that changed under a secret the new document only holds
    as ``***`` (``held``: the paths :func:`~remediator.config.document.restore` reported)."""
    problems: list[str] = []
    for path, model, previous in _pairs(new, old, ()):
        fields = destination(model)
        secrets = [p for p in held if p[: len(path)] == path and len(p) > len(path)]
        if not fields or not secrets:
            continue
        secret = field_path(secrets[0])
        for field in fields:
            value = getattr(model, field)
            prior = getattr(previous, field, None)
            reasons = []
            if value != prior:
                reasons.append("changed")
            section = references(model).get(field)
            if section is not None:
                reasons += _reference_moves(new, old, section=section, value=value,
                                            old_value=prior)  # fmt: skip
            if reasons:
                problems.append(
                    f"{field_path((*path, field))}: {'; '.join(reasons)}, but {secret} is sent "
                    f"as {REDACTED}: a redacted secret is only kept while everything that "
                    "decides where it is sent stays the same; give its value again"
                )
    return problems
