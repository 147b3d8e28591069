"""Alertmanager label matchers: ``name=value``, ``!=``, ``=~`` and ``!~`` (anchored regexes).

The regexes run on RE2 (remediator/config/regex.py), as Alertmanager's own (Go's RE2 syntax)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from remediator.config.regex import Regex, RegexError, compile_regex

Op = Literal["=", "!=", "=~", "!~"]

_MATCHER = re.compile(
    r"""^\s*(?P<name>[a-zA-Z_][a-zA-Z0-9_]*)\s*(?P<op>=~|!~|!=|=)\s*(?P<value>"(?:[^"\\]|\\.)*"|[^"\s]*)\s*$"""
)


@dataclass(frozen=True, slots=True)
class Matcher:
    name: str
    op: Op
    value: str
    regex: Regex | None = None

    def matches(self, labels: dict[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        assert self.regex is not None
        found = self.regex.fullmatch(actual) is not None
        return found if self.op == "=~" else not found

    def __str__(self) -> str:
        return f"{self.name}{self.op}{_quote(self.value)}"


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _unquote(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        return re.sub(r"\\(.)", r"\1", raw[1:-1])
    return raw


def parse(text: str) -> Matcher:
    """One matcher in Alertmanager syntax; ``ValueError`` when it is not one."""
    found = _MATCHER.match(text)
    if found is None:
        raise ValueError(f'not a matcher: {text!r} (use name="value", !=, =~ or !~)')
    op: Op = found.group("op")  # type: ignore[assignment]
    value = _unquote(found.group("value"))
    regex = None
    if op in ("=~", "!~"):
        try:
            regex = compile_regex(value)
        except RegexError as exc:
            raise ValueError(f"invalid regex in matcher {text!r}: {exc}") from None
    return Matcher(name=found.group("name"), op=op, value=value, regex=regex)


def all_match(matchers: list[Matcher], labels: dict[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)
