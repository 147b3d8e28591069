"""The endpoints Prometheus's own conventions name: liveness, readiness and reload.

- ``GET /-/healthy``: 200 while the process serves requests, whatever the state of the store
  (a liveness probe: a database outage must not restart every replica).
- ``GET /-/ready``: 200 once start-up is done and while the store answers and the process is not
  draining; 503 otherwise (a readiness probe: take the replica out of the Service).
- ``POST /-/reload`` (admin): what SIGHUP does, read the configuration file again and apply it;
  the answer says whether it did (remediator/reload.py).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from remediator import reload
from remediator.config.auth import Principal
from remediator.errors import ConfigError, Conflict, StoreUnavailable, ValidationFailed
from remediator.http.admin import applied_json
from remediator.http.management import ok
from remediator.http.schemas import ConfigurationApplied, ProbeResponse
from remediator.runtime import Runtime


async def healthy(request: Request) -> Response:
    """200 while the process serves; the store is not asked."""
    return ok(ProbeResponse, {"status": "healthy"})


async def ready(request: Request) -> Response:
    """200 when this replica should receive traffic; 503 with the reason otherwise."""
    rt: Runtime | None = getattr(request.state, "runtime", None)
    reason = ""
    if rt is None or not rt.started:
        reason = "starting"
    elif rt.draining:
        reason = "draining"
    else:
        try:
            await rt.store.ping()
        except StoreUnavailable:
            reason = "store unavailable"
    if reason:
        return ok(ProbeResponse, {"status": "not ready", "reason": reason}, 503)
    return ok(ProbeResponse, {"status": "ready"})


async def reload_configuration(request: Request, rt: Runtime, who: Principal) -> Response:
    """Read the configuration file again and apply it (as SIGHUP does); a bad one changes
    nothing and is a 422 naming each problem."""
    if rt.config_file is None:
        raise Conflict("NO_CONFIG_FILE", "remediator was started without a configuration file")
    try:
        applied = await reload.reload_config(rt, rt.config_file, actor=who.name)
    except ConfigError as exc:
        raise ValidationFailed(exc.problems) from None
    return ok(ConfigurationApplied, applied_json(applied))
