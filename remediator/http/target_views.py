"""Read endpoints about targets: one target's state, and the quarantined targets.

What a target is doing now, from the store every replica shares (breaker, quarantine, the active
endpoint after a failover) and from this replica's health monitor (its last check).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from remediator.clock import iso
from remediator.config.auth import Principal
from remediator.config.targets import HttpTarget, Target
from remediator.engine import quarantine
from remediator.engine.guards import breaker_json
from remediator.engine.runner import following_failover, on_backup
from remediator.errors import ServiceNotFound
from remediator.http.management import known_secrets, ok
from remediator.http.schemas import QuarantineResponse, TargetResponse
from remediator.redaction import redact_text
from remediator.runtime import Runtime
from remediator.store.records import TargetState


def endpoint_json(rt: Runtime, target: HttpTarget, *, state: TargetState) -> dict[str, Any]:
    secrets = known_secrets(rt)
    active = following_failover(target, state.data)
    assert isinstance(active, HttpTarget)
    return {
        "primary_url": redact_text(target.base_url, secrets),
        "backup_url": redact_text(target.backup_url, secrets) if target.backup_url else None,
        "active_url": redact_text(active.base_url, secrets),
        "on_backup": on_backup(target, state.data),
    }


async def target_json(rt: Runtime, target: Target) -> dict[str, Any]:
    state = await rt.store.target_state(target.name)
    breaker = await rt.store.breaker(target.name)
    checked = rt.monitor.status(target.name)
    return {
        "target": target.name,
        "type": target.type,
        "health": {
            "status": "unknown" if checked is None else ("up" if checked.healthy else "down"),
            "detail": "" if checked is None else redact_text(checked.detail, known_secrets(rt)),
        },
        "breaker": breaker_json(breaker, rt.config.circuit_breaker),
        "quarantine": {
            "quarantined": state.quarantined,
            "quarantined_at": iso(state.quarantined_at) if state.quarantined_at else None,
            "reason": state.quarantine_reason,
        },
        "endpoint": endpoint_json(rt, target, state=state)
        if isinstance(target, HttpTarget)
        else None,
    }


async def get_target(request: Request, rt: Runtime, who: Principal) -> Response:
    """A registered target: health, circuit breaker, quarantine, active endpoint."""
    name = request.path_params["name"]
    target = rt.config.target(name)
    if target is None:
        raise ServiceNotFound(f"target {name!r} is not registered")
    return ok(TargetResponse, await target_json(rt, target))


async def list_quarantine(request: Request, rt: Runtime, who: Principal) -> Response:
    """Every quarantined target, registered or not, by name."""
    found = await rt.store.quarantined_targets()
    return ok(QuarantineResponse, {"quarantined": [quarantine.state_json(s) for s in found]})
