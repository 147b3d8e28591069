"""Target templates: ``{{ labels.container }}``, ``{{ annotations.service }}`` and literal text.

Deliberately tiny: no expressions, no filters, no code. A template renders to a plain string that
is then looked up in the registered targets; it is never passed to a shell.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_FIELD = re.compile(r"\{\{\s*(labels|annotations)\.([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")
_BRACES = re.compile(r"\{\{|\}\}")


@dataclass(frozen=True, slots=True)
class Template:
    source: str

    def render(self, *, labels: dict[str, str], annotations: dict[str, str]) -> str:
        """The rendered string; a missing label renders as empty."""

        def field(match: re.Match[str]) -> str:
            scope = labels if match.group(1) == "labels" else annotations
            return scope.get(match.group(2), "")

        return _FIELD.sub(field, self.source)


def compile_template(source: str) -> Template:
    """Check a template; ``ValueError`` for anything but ``{{ labels.x }}`` / annotations."""
    rest = _FIELD.sub("", source)
    if _BRACES.search(rest):
        raise ValueError(
            f"invalid template {source!r}: only {{{{ labels.NAME }}}} and "
            "{{ annotations.NAME }} are allowed"
        )
    return Template(source)
