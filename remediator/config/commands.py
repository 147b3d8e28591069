"""Named commands of a host target: argv templates filled only from checked alert labels.

A command is a list of arguments, each a separate string: no shell syntax is ever interpreted
by remediator, and each argument reaches the host as one shell word (quoted, see
``remediator/tech/ssh.py``). An argument may hold ``{{ labels.NAME }}`` placeholders, but only
for the labels the command names in ``labels``, each with the regex its value must match in
full. Alert text is attacker-controlled: a value that is missing, longer than
:data:`MAX_VALUE`, holds a control character (a newline, a NUL, ...) or does not match its
regex refuses the whole command (:class:`ArgumentRefused`) before any connection is made.

Unit names of the ``systemd.*`` actions are checked the same way: against :data:`UNIT_RE`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from remediator.config.regex import RegexError, compile_regex
from remediator.errors import ArgumentRefused

__all__ = [
    "MAX_VALUE",
    "UNIT_RE",
    "ArgumentRefused",
    "SshCommand",
    "check_label_template",
    "check_label_values",
    "check_regexes",
    "fill_labels",
    "valid_unit",
]

MAX_VALUE = 256  # characters a label value may have in an argument, whatever its regex says
UNIT_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9:_.@-]{0,254}$")
_PLACEHOLDER = re.compile(r"\{\{\s*labels\.([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")
_BRACES = re.compile(r"\{\{|\}\}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def valid_unit(name: str) -> bool:
    """A systemd unit name: letters, digits, ``:_.@-``, not starting with ``-``."""
    return bool(UNIT_RE.match(name))


def check_regexes(value: dict[str, str]) -> dict[str, str]:
    """``{label: regex}`` with valid label names and RE2 regexes, else ``ValueError``."""
    for name, pattern in value.items():
        if not _LABEL_NAME.match(name):
            raise ValueError(f"invalid label name {name!r}")
        try:
            compile_regex(pattern)
        except RegexError as exc:
            raise ValueError(f"label {name}: {exc}") from exc
    return value


def check_label_values(
    regexes: Mapping[str, str], labels: Mapping[str, str], names: Iterable[str]
) -> dict[str, str]:
    """The values of the labels ``names`` (each with a regex in ``regexes``), each checked:
    :class:`ArgumentRefused` if one is missing, too long, holds a control character or does
    not match its regex in full."""
    values: dict[str, str] = {}
    for name in names:
        value = labels.get(name)
        if value is None:
            raise ArgumentRefused(f"label {name} is missing")
        if len(value) > MAX_VALUE:
            raise ArgumentRefused(f"label {name} is longer than {MAX_VALUE} characters")
        if _CONTROL.search(value):
            raise ArgumentRefused(f"label {name} holds a control character")
        if compile_regex(regexes[name]).fullmatch(value) is None:
            raise ArgumentRefused(f"label {name} does not match {regexes[name]}")
        values[name] = value
    return values


def check_label_template(source: str) -> str:
    """``source`` if it holds only literal text and ``{{ labels.NAME }}`` placeholders."""
    if _BRACES.search(_PLACEHOLDER.sub("", source)):
        raise ValueError(f"invalid template {source!r}: only {{{{ labels.NAME }}}} is allowed")
    return source


def fill_labels(source: str, labels: Mapping[str, str]) -> str:
    """``source`` with each placeholder replaced by its label (missing: empty); the caller
    checks the result against its allow-list."""
    return _PLACEHOLDER.sub(lambda m: labels.get(m.group(1), ""), source)


class SshCommand(BaseModel):
    """One named command: ``argv`` (no shell), and the labels it may read with their regexes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    argv: list[str] = Field(
        min_length=1,
        description="The program and its arguments, each a separate string (no shell); "
        "`{{ labels.NAME }}` placeholders only for the labels listed in `labels`.",
    )
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Alert label -> the regex (RE2) its value must match in full to fill a "
        "placeholder, e.g. `^[a-z0-9-]{1,40}$`.",
    )

    @field_validator("labels")
    @classmethod
    def _regexes(cls, value: dict[str, str]) -> dict[str, str]:
        return check_regexes(value)

    @model_validator(mode="after")
    def _placeholders(self) -> SshCommand:
        if _PLACEHOLDER.search(self.argv[0]) or _BRACES.search(self.argv[0]):
            raise ValueError("the program (argv[0]) cannot hold a placeholder")
        for arg in self.argv:
            if _BRACES.search(_PLACEHOLDER.sub("", arg)):
                raise ValueError(f"invalid placeholder in {arg!r}: only {{{{ labels.NAME }}}}")
            for name in _PLACEHOLDER.findall(arg):
                if name not in self.labels:
                    raise ValueError(f"placeholder labels.{name} has no regex in 'labels'")
            if _CONTROL.search(arg):
                raise ValueError("an argument cannot hold a control character")
        return self

    def render(self, labels: Mapping[str, str]) -> tuple[str, ...]:
        """The argv with its placeholders filled; :class:`ArgumentRefused` if a value may not."""
        used = [n for n in self.labels if any(n in _PLACEHOLDER.findall(a) for a in self.argv)]
        values = check_label_values(self.labels, labels, used)
        return tuple(_PLACEHOLDER.sub(lambda m: values[m.group(1)], arg) for arg in self.argv)
