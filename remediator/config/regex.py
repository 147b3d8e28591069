"""Regular expressions on a linear-time engine: RE2 (``google-re2``).

Failure patterns and the ``=~``/``!~`` label matchers run on alert text that whoever can make an
alert fire controls. A backtracking engine (Python's ``re``) can take exponential time on a
pattern such as ``(a+)+$`` and a long label, and would stall the worker and the API with it;
RE2 decides every search in time linear in the text. The price is its syntax: no
backreferences, lookarounds, atomic groups or possessive quantifiers, which are refused when the
pattern is compiled (a configuration error, or a 422 through the API), never at match time.
"""

from __future__ import annotations

from typing import Protocol

import re2

# Inline flags RE2 understands, the same letters as the patterns' ``flags``.
FLAGS = frozenset("ims")
MAX_MEMORY = 8 << 20  # bytes one compiled regex may use (RE2's default)


class Match(Protocol):
    def group(self, index: int = 0) -> str: ...


class Regex(Protocol):
    """A compiled regex: what the patterns and matchers need of one."""

    def search(self, text: str) -> Match | None: ...

    def fullmatch(self, text: str) -> Match | None: ...


class RegexError(ValueError):
    """A pattern RE2 cannot compile; the message says why."""


def compile_regex(pattern: str, *, flags: str = "") -> Regex:
    """``pattern`` compiled with RE2 and the inline ``flags`` (``i``, ``m``, ``s``)."""
    unknown = set(flags) - FLAGS
    if unknown:
        raise RegexError(f"unknown flag(s) {''.join(sorted(unknown))!r}")
    options = re2.Options()
    options.log_errors = False
    options.max_mem = MAX_MEMORY
    source = f"(?{''.join(sorted(set(flags)))}){pattern}" if flags else pattern
    try:
        regex: Regex = re2.compile(source, options)
    except re2.error as exc:
        raise RegexError(_reason(exc)) from None
    return regex


def _reason(exc: Exception) -> str:
    reason = exc.args[0] if exc.args else str(exc)
    text = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
    if "invalid perl operator" in text or "invalid escape sequence" in text:
        text += (
            " (not in RE2's syntax: no backreferences, lookarounds or atomic groups; \\z for \\Z)"
        )
    return text
