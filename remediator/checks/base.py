"""The health check interface: one built-in check per target type, plus plugins."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol

from remediator.clients import Clients
from remediator.config.targets import Target


@dataclass(frozen=True, slots=True)
class CheckResult:
    healthy: bool
    detail: str
    duration: float = 0.0


class HealthCheck(Protocol):
    target_type: ClassVar[str]

    async def check(self, target: Target, clients: Clients, *, timeout: float) -> CheckResult: ...
