"""Failure patterns: ordered regexes that classify an alert into a category and severity.

The first pattern whose regex finds a match in one of its fields classifies the alert. No match
means ``unknown``, which escalates instead of guessing.

Alertmanager label matchers: ``name=value``, ``!=``, ``=~`` and ``!~`` (anchored regexes).

The regexes run on RE2 (remediator/config/regex.py), as Alertmanager's own (Go's RE2 syntax).
A pattern searches the first :data:`MAX_MATCH_TEXT` characters of each field: RE2 is linear,
and the bound keeps one alert's classification (a 4 MB description) under a few milliseconds on
the event loop. A longer field is searched as its first part followed by :data:`CUT`, so a
pattern anchored at the end (``$``) does not match where the text was cut.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from remediator.config.durations import Duration
from remediator.config.regex import Regex, RegexError, compile_regex
from remediator.config.selectors import TargetSelector
from remediator.config.steps import Step

Op = Literal["=", "!=", "=~", "!~"]
MAX_MATCH_TEXT = 64 * 1024  # characters of a field a failure pattern searches
CUT = "\u2026"  # what a field longer than MAX_MATCH_TEXT ends with when searched

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


Category = Literal["network", "database", "memory", "disk", "cpu", "api", "latency", "unknown"]
Severity = Literal["low", "medium", "high", "critical"]
Flag = Literal["i", "m", "s"]

DEFAULT_FIELDS = ("labels.alertname", "annotations.summary", "annotations.description")


class PatternSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9_.-]{1,64}$")
    pattern: str = Field(min_length=1, max_length=1000)
    flags: list[Flag] = Field(default_factory=lambda: list[Flag](["i"]))
    fields: list[str] = Field(default_factory=lambda: list(DEFAULT_FIELDS))
    category: Category
    severity: Severity = "medium"
    recovery: list[Step] = Field(default_factory=list)
    target: str | None = None  # template of the target the recovery steps act on
    targets: TargetSelector | None = Field(
        default=None,
        description="The allow-list of `recovery`, as a playbook's `targets`.",
    )
    cooldown: Duration = 30.0

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            compile_regex(value)
        except RegexError as exc:
            raise ValueError(f"invalid regex: {exc}") from None
        return value

    @field_validator("fields")
    @classmethod
    def _fields(cls, value: list[str]) -> list[str]:
        for item in value:
            if not re.fullmatch(r"(labels|annotations)\.[a-zA-Z_][a-zA-Z0-9_]*", item):
                raise ValueError(f"invalid field {item!r}: use labels.NAME or annotations.NAME")
        return value

    @field_validator("target")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is not None:
            from remediator.config.steps import compile_template

            compile_template(value)
        return value

    def compiled(self) -> Regex:
        """The regex on RE2, a linear-time engine (remediator/config/regex.py)."""
        return compile_regex(self.pattern, flags="".join(self.flags))


@dataclass(frozen=True, slots=True)
class Classification:
    pattern_id: str
    category: Category
    severity: Severity

    @property
    def known(self) -> bool:
        return self.category != "unknown"


UNKNOWN = Classification(pattern_id="", category="unknown", severity="medium")


def _spec(id: str, pattern: str, category: Category, severity: Severity) -> PatternSpec:
    return PatternSpec(id=id, pattern=pattern, category=category, severity=severity)


# Built-in defaults, in order. Users' patterns come first; these catch the common cases.
DEFAULT_PATTERNS: tuple[PatternSpec, ...] = (
    _spec("oom", r"\bOOM|out of memory|oomkill|MemoryHigh|memory pressure", "memory", "high"),
    _spec("memory", r"memory", "memory", "medium"),
    _spec(
        "disk_full",
        r"disk.*(full|space|usage)|no space left|Disk(AlmostFull|WillFill|FillingUp|UsageHigh)"
        r"|Filesystem(AlmostOutOfSpace|SpaceFillingUp)",  # node-exporter mixin's names
        "disk",
        "high",
    ),
    _spec(
        "too_many_connections",
        r"too many (connections|clients)|connection pool exhausted",
        "database",
        "high",
    ),
    _spec(
        "connection_refused",
        r"ECONNREFUSED|connection refused|ECONNRESET|connection reset",
        "network",
        "high",
    ),
    _spec("timeout", r"timeout|timed out|ETIMEDOUT", "network", "medium"),
    _spec("error_rate", r"\b5\d\d\b|error ?rate|ErrorRate|internal server error", "api", "high"),
    _spec("latency", r"latency|slow response|response time", "latency", "medium"),
    _spec("cpu", r"\bcpu\b|CpuHigh|throttl", "cpu", "medium"),
)


class Classifier:
    """Ordered, compiled patterns: the first whose regex finds a match in one of its fields wins."""

    def __init__(self, specs: list[PatternSpec]) -> None:
        self.specs = list(specs)
        self._compiled = [(spec, spec.compiled()) for spec in self.specs]

    def classify(self, labels: dict[str, str], annotations: dict[str, str]) -> Classification:
        for spec, regex in self._compiled:
            for name in spec.fields:
                scope, _, key = name.partition(".")
                value = (labels if scope == "labels" else annotations).get(key)
                if value and regex.search(_bounded(value)):
                    return Classification(spec.id, spec.category, spec.severity)
        return UNKNOWN

    def get(self, pattern_id: str) -> PatternSpec | None:
        for spec in self.specs:
            if spec.id == pattern_id:
                return spec
        return None


def _bounded(text: str) -> str:
    """What a pattern searches of a field: the whole field, or its first part and :data:`CUT`."""
    return text if len(text) <= MAX_MATCH_TEXT else text[:MAX_MATCH_TEXT] + CUT


def effective_patterns(user: list[PatternSpec], *, builtin: bool) -> list[PatternSpec]:
    """The user's patterns first, then the built-in defaults not overridden by id."""
    if not builtin:
        return list(user)
    ids = {p.id for p in user}
    return [*user, *(p for p in DEFAULT_PATTERNS if p.id not in ids)]
