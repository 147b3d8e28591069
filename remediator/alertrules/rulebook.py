"""One alerting or recording rule, its ``for:``, severity and threshold from a policy.

Expressions and descriptions are ``%``-templates filled from the alert's policy:
``%(threshold)s`` (as written in PromQL), ``%(threshold_pct)s`` (ratio as a percentage),
``%(for)s``, ``%(job)s`` (the mixin's job selector: remediator's own series), and the shared
``%(fs)s`` (node_exporter filesystem selector), ``%(horizon)s``
and ``%(horizon_s)s`` (HostDiskFillingUp's prediction horizon, as text and in seconds).

The expressions keep their thresholds as literals (``... > 0.85``): they read the same in the
rule files, in the Prometheus UI and in the alert's generator URL, descriptions can quote the
threshold, and the promtool tests need no threshold series.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from remediator.alertrules.mixin import Mixin
from remediator.alertrules.policies import DISK_FULL_HORIZON_HOURS, FS_SELECTOR, Policy


def _number(value: float) -> str:
    return f"{value:g}"


def _params(policy: Policy | None, mixin: Mixin) -> dict[str, str]:
    params = {"job": mixin.job_selector}
    if policy is None:
        return params
    params |= {
        "for": policy.for_,
        "fs": FS_SELECTOR,
        "horizon": f"{DISK_FULL_HORIZON_HOURS}h",
        "horizon_s": str(DISK_FULL_HORIZON_HOURS * 3600),
    }
    if policy.threshold is not None:
        params["threshold"] = _number(policy.threshold)
        params["threshold_pct"] = f"{policy.threshold * 100:g}%"
    return params


def _clean(expr: str) -> str:
    lines = [line.rstrip() for line in expr.strip("\n").splitlines()]
    indent = min(len(line) - len(line.lstrip()) for line in lines if line)
    return "\n".join(line[indent:] for line in lines)


@dataclass(frozen=True)
class RuleBook:
    """Builds rules from one table of policies (alert name -> :class:`Policy`)."""

    policies: Mapping[str, Policy]
    mixin: Mixin = field(default_factory=Mixin)

    def alert(self, name: str, expr: str, *, summary: str, description: str) -> dict[str, Any]:
        """One alerting rule; ``for``, ``severity`` and the runbook link come from the policy."""
        policy = self.policies[name]
        params = _params(policy, self.mixin)
        return {
            "alert": name,
            "expr": _clean(expr % params),
            "for": policy.for_,
            "labels": {"severity": policy.severity, **self.mixin.extra_labels},
            "annotations": {
                "summary": summary,
                "description": description % params,
                "runbook_url": self.mixin.runbook_url(name),
            },
        }

    def record(self, name: str, expr: str) -> dict[str, Any]:
        """One recording rule (``%(job)s`` is the mixin's job selector)."""
        return {"record": name, "expr": _clean(expr % _params(None, self.mixin))}
