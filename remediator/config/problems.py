"""How a configuration problem is named: the field path of each pydantic error (without the
tags pydantic adds for a discriminated union) and one line per problem.

Shared by the configuration file's checks, the HTTP layer's validation errors and the manual
runs; the tags are read from the step and target registries, so a new action or target type is
named correctly without an edit here.
"""

from __future__ import annotations

from typing import get_args

from pydantic import ValidationError

from remediator.config.steps import action_names
from remediator.config.targets import Target

# Keys that were removed, and why: naming one is an error that says so.
REMOVED: dict[str, str] = {"health.queue_interval": "moved to self_healing.queue_interval"}


def _tagged(loc: tuple[int | str, ...]) -> list[int | str]:
    """Drop the discriminator tag pydantic inserts after a list index (``steps[0].docker.restart``)."""
    out: list[int | str] = []
    for i, part in enumerate(loc):
        after_index = i > 0 and isinstance(loc[i - 1], int)
        if after_index and isinstance(part, str) and part in _TAGS:
            continue
        out.append(part)
    return out


def _tags() -> frozenset[str]:
    """The discriminator values of the step and target unions, from their registries."""
    union, _ = get_args(Target)
    types = [get_args(member.model_fields["type"].annotation)[0] for member in get_args(union)]
    return frozenset([*action_names(), *types])


_TAGS = _tags()


def field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in _tagged(loc):
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "<root>"


def format_errors(exc: ValidationError) -> list[str]:
    """One line per problem, each starting with its field path."""
    lines: list[str] = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        kind = err["type"]
        ctx = err.get("ctx", {})
        if kind == "union_tag_invalid":
            disc = str(ctx.get("discriminator", "")).strip("'")
            noun = "action" if disc == "action" else "target type"
            lines.append(f"{field_path((*loc, disc))}: unknown {noun} {ctx.get('tag')!r}")
        elif kind == "union_tag_not_found":
            disc = str(ctx.get("discriminator", "")).strip("'")
            lines.append(f"{field_path((*loc, disc))}: field required")
        elif kind == "extra_forbidden" and field_path(loc) in REMOVED:
            lines.append(f"{field_path(loc)}: removed: {REMOVED[field_path(loc)]}")
        elif kind == "value_error" and "\n" in str(ctx.get("error", "")):
            lines.extend(str(ctx["error"]).splitlines())
        else:
            message = err["msg"].removeprefix("Value error, ")
            lines.append(f"{field_path(loc)}: {message}")
    return lines
