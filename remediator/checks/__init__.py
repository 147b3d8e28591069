"""Built-in health checks, one per target type, in an explicit dict."""

from __future__ import annotations

from remediator.checks import docker, http, postgres, process, queue, redis, ssh
from remediator.checks.base import CheckResult, HealthCheck


def builtin_checks() -> dict[str, HealthCheck]:
    """The health check for each target type."""
    registry: dict[str, HealthCheck] = {}
    for family in (docker, redis, postgres, http, process, queue, ssh):
        for check in family.CHECKS:
            registry[check.target_type] = check
    return registry


__all__ = ["CheckResult", "HealthCheck", "builtin_checks"]
