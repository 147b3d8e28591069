"""The settings a monitoring mixin takes: who is remediator, where the runbook lives, labels to
add, thresholds to change.

The kubernetes-mixin and node-mixin take the same ``_config``: a job selector (remediator's own
alerts and recording rules select ``job="remediator"`` by default), a runbook URL pattern (``%s``
is the alert name in lower case: the anchor of its section in ``docs/runbook.md``), labels added
to every alert (``team``, ``cluster``, ...) and thresholds. ``remediator rules`` takes them as
``--job-selector``, ``--runbook-url-pattern``, ``--label NAME=VALUE`` and
``--threshold ALERT=VALUE``; the defaults render the repository's ``rules/``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

RUNBOOK_URL_PATTERN: Final = "https://github.com/remediator/remediator/blob/main/docs/runbook.md#%s"
JOB_SELECTOR: Final = 'job="remediator"'
# One or more PromQL label matchers, comma-separated: job="remediator", namespace=~"ops|infra".
_VALUE = r'"(?:[^"\\\n]|\\.)*"'
_MATCHER = rf"\s*[a-zA-Z_][a-zA-Z0-9_]*\s*(?:=~|!~|!=|=)\s*{_VALUE}\s*"
_SELECTOR: Final = re.compile(rf"{_MATCHER}(?:,{_MATCHER})*")
_LABEL_NAME: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# Labels every alert already sets: an extra label may not replace them.
RESERVED_LABELS: Final = frozenset({"severity", "alertname"})


@dataclass(frozen=True)
class Mixin:
    """How the rules are rendered for one installation (the defaults: this repository's)."""

    job_selector: str = JOB_SELECTOR
    runbook_url_pattern: str = RUNBOOK_URL_PATTERN
    extra_labels: Mapping[str, str] = field(default_factory=dict)
    thresholds: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ValueError("; ".join(problems))

    def problems(self) -> list[str]:
        out: list[str] = []
        if not _SELECTOR.fullmatch(self.job_selector):
            out.append(
                f"job selector {self.job_selector!r}: not PromQL label matchers"
                ' (e.g. job="remediator" or job=~"remediator|remediator-ha")'
            )
        if self.runbook_url_pattern.count("%s") != 1 or "%" in self.runbook_url_pattern.replace(
            "%s", ""
        ):
            out.append(
                f"runbook URL pattern {self.runbook_url_pattern!r}: must hold %s (the alert"
                " name in lower case) once, and no other %"
            )
        for name in self.extra_labels:
            if not _LABEL_NAME.fullmatch(name) or name.startswith("__"):
                out.append(f"label {name!r}: not a Prometheus label name")
            elif name in RESERVED_LABELS:
                out.append(f"label {name!r}: set by every alert already")
        return out

    def runbook_url(self, alert: str) -> str:
        return self.runbook_url_pattern % alert.lower()


def parse_pairs(items: list[str], what: str) -> dict[str, str]:
    """``NAME=VALUE`` arguments as a mapping; ValueError names a malformed one."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"{what} {item!r}: expected NAME=VALUE")
        out[name] = value
    return out
