"""PromQL query templates: ``up{job="{{ labels.job }}"}`` filled in from an alert's labels.

A placeholder may only stand inside a quoted PromQL string literal (``"..."`` or ``'...'``), and
its value is escaped for that literal (backslash, the quote, newlines and other control
characters), so a label value is always data: it can never close the string, add a matcher or
an operator, or start a comment. Placeholders anywhere else (bare in the expression, inside a
raw backtick string, in a ``#`` comment) are rejected when the configuration is loaded.

Pure: no I/O; the runner renders a step's query with the alert's labels before each run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_FIELD = re.compile(r"\{\{\s*labels\.([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")
_BRACES = re.compile(r"\{\{|\}\}")
# What Go's strconv.Unquote (which the Prometheus lexer follows) needs escaped in a quoted string.
_NAMED = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


@dataclass(frozen=True, slots=True)
class _Slot:
    start: int
    end: int
    label: str
    quote: str  # the literal's quote: '"' or "'"


@dataclass(frozen=True, slots=True)
class QueryTemplate:
    """A checked query; :meth:`render` fills each ``{{ labels.NAME }}`` with an escaped value."""

    source: str
    slots: tuple[_Slot, ...]

    @property
    def labels(self) -> tuple[str, ...]:
        """The label names the query uses, in order of appearance."""
        return tuple(slot.label for slot in self.slots)

    def render(self, labels: Mapping[str, str]) -> str:
        """The query with every placeholder replaced; a missing label renders as empty."""
        parts: list[str] = []
        at = 0
        for slot in self.slots:
            parts.append(self.source[at : slot.start])
            parts.append(escape(labels.get(slot.label, ""), quote=slot.quote))
            at = slot.end
        parts.append(self.source[at:])
        return "".join(parts)


def escape(value: str, *, quote: str = '"') -> str:
    """``value`` as the inside of a PromQL string literal opened with ``quote``."""
    out: list[str] = []
    for char in value:
        if char in _NAMED:
            out.append(_NAMED[char])
        elif char == quote:
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(char)
    return "".join(out)


def compile_query(source: str) -> QueryTemplate:
    """Check a query template; ``ValueError`` if a placeholder is not inside a quoted string."""
    literals = _quoted_spans(source)
    slots: list[_Slot] = []
    for match in _FIELD.finditer(source):
        quote = next(
            (q for start, end, q in literals if start <= match.start() and match.end() <= end), ""
        )
        if not quote:
            raise ValueError(
                f"{match.group(0)} must stand inside a quoted PromQL string, "
                'e.g. up{job="{{ labels.job }}"}'
            )
        slots.append(_Slot(match.start(), match.end(), match.group(1), quote))
    if _BRACES.search(_FIELD.sub("", source)):
        raise ValueError("only {{ labels.NAME }} placeholders are allowed in a query")
    return QueryTemplate(source, tuple(slots))


def _quoted_spans(source: str) -> list[tuple[int, int, str]]:
    """``(start, end, quote)`` of each ``"..."``/``'...'`` literal: ``source[start:end]`` is
    its inside. Backtick strings (no escapes) and ``#`` comments are skipped, not returned."""
    spans: list[tuple[int, int, str]] = []
    i, n = 0, len(source)
    while i < n:
        char = source[i]
        if char in "\"'`":
            j = i + 1
            while j < n and source[j] != char:
                j += 2 if char != "`" and source[j] == "\\" else 1
            if j >= n:
                raise ValueError(f"unterminated {char}-quoted string in the query")
            if char != "`":
                spans.append((i + 1, j, char))
            i = j + 1
        elif char == "#":
            end = source.find("\n", i)
            i = n if end < 0 else end + 1
        else:
            i += 1
    return spans
