"""``GET /api/v1/recovery/alerts/poisoned``: the stored alerts the worker quarantined.

An alert claimed more than ``worker.max_attempts`` times without being done (its processing
raised, overran its lease, or the process died during it) is a poison item: the worker records
``alert:poisoned`` and never claims it again (remediator/engine/worker.py). This lists them,
newest first, so an operator can see what was set aside.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from remediator.clock import iso
from remediator.config.auth import Principal
from remediator.engine.decisions import sanitize
from remediator.http.management import ok
from remediator.http.schemas import PoisonedResponse
from remediator.runtime import Runtime

LIMIT = 100  # the newest quarantined alerts listed


async def list_poisoned(request: Request, rt: Runtime, who: Principal) -> Response:
    """The newest quarantined alerts (at most :data:`LIMIT`)."""
    found = await rt.store.poisoned(LIMIT)
    items = [
        {
            "id": p.id,
            "fingerprint": p.fingerprint,
            "episode": p.episode_id,
            "status": p.status,
            "alertname": sanitize(p.alertname),
            "received_at": iso(p.received_at),
            "attempts": p.attempts,
            "poisoned_at": iso(p.poisoned_at) if p.poisoned_at is not None else None,
        }
        for p in found
    ]
    return ok(PoisonedResponse, {"poisoned": items})
