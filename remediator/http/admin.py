"""The management API's writes (admin only). Each one is recorded as an event whose actor is the
name of the caller's token."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError
from pydantic_core import from_json
from starlette.requests import Request
from starlette.responses import Response

from remediator import reload
from remediator.audit import events as ev
from remediator.audit.events import Event
from remediator.config import destinations
from remediator.config import document as configdoc
from remediator.config import model as config_mod
from remediator.config.auth import Principal
from remediator.config.environment import expand_env
from remediator.config.model import Config
from remediator.config.patterns import DEFAULT_PATTERNS, PatternSpec, effective_patterns
from remediator.config.problems import format_errors
from remediator.engine import dryrun, manual, quarantine
from remediator.engine.guards import PAUSE_FLAG, CircuitBreakers, Transition, breaker_json
from remediator.errors import (
    ConfigError,
    Conflict,
    MalformedJSON,
    Missing,
    PatternExists,
    SecretDestinationChanged,
    ServiceNotFound,
    ValidationFailed,
)
from remediator.http.intake import parse_payload
from remediator.http.management import invalid, known_secrets, ok, parse_body
from remediator.http.schemas import (
    BreakerReset,
    ConfigurationApplied,
    DryRunRequest,
    DryRunResponse,
    LiftRequest,
    PatternAdded,
    PatternDeleted,
    PauseRequest,
    PauseState,
    QuarantineLifted,
    TriggerRequest,
    TriggerResponse,
)
from remediator.http.web import read_body
from remediator.runtime import Runtime
from remediator.store.api_patterns import StoredPattern

# -- circuit breakers --------------------------------------------------------------------------


async def reset_breaker(request: Request, rt: Runtime, who: Principal) -> Response:
    """Close a target's circuit breaker and clear its failure count."""
    service = request.path_params["service"]
    if rt.config.target(service) is None:
        raise ServiceNotFound(f"target {service!r} is not registered")
    before = await rt.store.breaker(service)
    now = rt.clock.now()

    def events_for(_: Transition) -> list[Event]:
        return [
            Event(
                type=ev.CIRCUIT_CLOSED,
                time=now,
                target=service,
                outcome="closed",
                message=f"circuit reset by {who.name} (was {before.state}, "
                f"{before.failures} consecutive failure(s))",
                actor=who.name,
                config_version=rt.config_version,
                details={"manual": True, "previous_state": before.state},
            )
        ]

    transition = await CircuitBreakers(rt.store).reset(service, now=now, events=events_for)
    if transition.changed_to is None:  # it was closed: the store recorded nothing
        await rt.store.append(events_for(transition))
    rt.metrics.circuit_state.labels(service).set(0)
    return ok(
        BreakerReset,
        {
            "breaker": breaker_json(transition.state, rt.config.circuit_breaker),
            "previous_state": before.state,
            "changed": before != transition.state,
        },
    )


# -- quarantine --------------------------------------------------------------------------------


async def lift_quarantine(request: Request, rt: Runtime, who: Principal) -> Response:
    """Release a quarantined target (a reason is required); unpause what it paused."""
    req = await parse_body(request, rt, LiftRequest)
    lifted = await lift(
        rt, request.path_params["target"], actor=who.name, reason=req.reason.strip()
    )
    return ok(QuarantineLifted, lifted.as_json())


async def lift(rt: Runtime, name: str, *, actor: str, reason: str) -> quarantine.Lifted:
    """:func:`lift_in` for the API, with the runtime's store, clients and action slots."""
    runner = rt.engine.runner
    lifted = await quarantine.lift_in(
        rt.store,
        name,
        actor=actor,
        reason=reason,
        now=rt.clock.now(),
        config=rt.config,
        config_version=rt.config_version,
        clients=rt.clients,
        unpause=runner.actions.get("docker.unpause"),
        slots=runner.slots,
    )
    rt.metrics.quarantined.labels(name).set(0)
    return lifted


# -- manual runs and dry runs ------------------------------------------------------------------


async def trigger(request: Request, rt: Runtime, who: Principal) -> Response:
    """Run a playbook or one action on a target now, through the guards."""
    req = await parse_body(request, rt, TriggerRequest)
    reason = req.reason.strip()
    if req.force and not reason:
        raise ValidationFailed(["reason: required with force (it is recorded in the audit)"])
    plan, target = manual.resolve(
        rt.engine.catalog, req.target, playbook=req.playbook, action=req.action, params=req.params
    )
    result = await manual.trigger(
        rt.engine.runs,
        plan,
        target,
        actor=who.name,
        force=req.force,
        reason=reason,
        dry_run=req.dry_run,
    )
    return ok(TriggerResponse, result.as_json())


async def dry_run(request: Request, rt: Runtime, who: Principal) -> Response:
    """What would happen: for an Alertmanager payload, or for a target and playbook/action."""
    body = await read_body(request, rt.config.server.max_body_bytes)
    try:
        data = from_json(body)
    except ValueError:
        raise MalformedJSON("the body is not valid JSON") from None
    if isinstance(data, dict) and "alerts" in data:
        payload = parse_payload(body)
        traces = await dryrun.trace_alerts(rt.engine.runs, rt.engine.catalog, list(payload.alerts))
        return ok(DryRunResponse, {"mode": "alerts", "traces": traces})
    try:
        req = DryRunRequest.model_validate_json(body, strict=True)
    except ValidationError as exc:
        raise invalid(exc) from None
    plan, target = manual.resolve(
        rt.engine.catalog, req.target, playbook=req.playbook, action=req.action, params=req.params
    )
    trace = await dryrun.trace_target(rt.engine.runs, plan, target)
    return ok(DryRunResponse, {"mode": "target", "traces": [trace]})


# -- configuration -----------------------------------------------------------------------------


_NESTED = re.compile(r"^<root>: (?=[a-z_][a-zA-Z0-9_.\[\]]*: )")


def _tidy(lines: list[str]) -> list[str]:
    """``<root>: playbooks[0].target: ...`` (one cross-field problem) as ``playbooks[0]...``."""
    return [_NESTED.sub("", line) for line in lines]


def validate_configuration(data: Any) -> Config:
    """A configuration from a JSON document, validated with strict JSON types; 422 with one line
    per problem. ``${VAR}`` is not expanded: reading the server's environment is for the file
    only, else an admin could read any variable back through GET /configuration."""
    if not isinstance(data, dict):
        raise ValidationFailed(["<root>: the configuration must be a JSON object"])
    problems: list[str] = []
    expand_env(data, {}, "", problems)
    if problems:
        raise ValidationFailed(
            [line.replace("is not set", "cannot be used through the API") for line in problems]
        )
    try:
        Config.model_validate(data, strict=True)
    except ValidationError as exc:
        raise ValidationFailed(_tidy(format_errors(exc))) from None
    try:
        return config_mod.parse(data, env={})
    except ConfigError as exc:
        raise ValidationFailed(_tidy(exc.problems)) from None


def applied_json(applied: reload.Applied) -> dict[str, Any]:
    return {
        "version": applied.version,
        "previous_version": applied.previous_version,
        "changed": applied.changed,
        "diff": applied.diff,
    }


async def put_configuration(request: Request, rt: Runtime, who: Principal) -> Response:
    """Replace the whole configuration without a restart; a bad one changes nothing."""
    body = await read_body(request, rt.config.server.max_body_bytes)
    try:
        data = from_json(body)
    except ValueError:
        raise MalformedJSON("the body is not valid JSON") from None
    current = rt.config.model_dump(mode="json")
    data, held = configdoc.restore(data, current, secrets=known_secrets(rt))
    config = validate_configuration(data)
    moved = destinations.moved(config, rt.config, held)
    if moved:
        raise SecretDestinationChanged(moved)
    try:
        applied = await reload.apply(rt, config, actor=who.name, source="api", conflicts="refuse")
    except ConfigError as exc:
        raise ValidationFailed(_tidy(exc.problems)) from None
    return ok(ConfigurationApplied, applied_json(applied))


# -- patterns ----------------------------------------------------------------------------------


async def add_pattern(request: Request, rt: Runtime, who: Principal) -> Response:
    """Add a pattern after the configuration's and the earlier API ones (before the
    built-ins), stored first: reloads and restarts keep it (remediator/engine/api_patterns.py)."""
    spec = await parse_body(request, rt, PatternSpec)
    record = StoredPattern(
        id=spec.id, spec=spec.model_dump(mode="json"), actor=who.name, added_at=rt.clock.now()
    )

    def change(config: Config) -> Config:
        known = effective_patterns(config.patterns, builtin=config.builtin_patterns)
        if spec.id in {p.id for p in known}:
            raise PatternExists(f"a pattern with id {spec.id!r} exists")
        return reload.derive(config, patterns=[*config.model_dump()["patterns"], spec.model_dump()])

    async with rt.config_lock:
        config = _checked(lambda: change(rt.config))
        if await rt.store.add_api_pattern(record, events=[]) is None:
            raise PatternExists(f"a pattern with id {spec.id!r} is stored (added on a replica)")
        try:
            applied = await _apply_locked(rt, config, who)
        except BaseException:
            with contextlib.suppress(Exception):
                await rt.store.delete_api_patterns([spec.id], events=[])
            raise
        rt.api_patterns = rt.api_patterns | {spec.id}
    pattern = {**record.spec, "builtin": False, "source": "api"}
    return ok(PatternAdded, {"version": applied.version, "pattern": pattern}, 201)


async def delete_pattern(request: Request, rt: Runtime, who: Principal) -> Response:
    """Delete a pattern: one added through the API for good (from the store), one of the
    configuration until the next reload; built-in ones cannot be deleted."""
    pattern_id = request.path_params.get("id") or request.query_params.get("id") or ""
    if not pattern_id:
        raise ValidationFailed(["id: required"])

    def change(config: Config) -> Config:
        kept = [p for p in config.patterns if p.id != pattern_id]
        if len(kept) == len(config.patterns):
            if config.builtin_patterns and pattern_id in {p.id for p in DEFAULT_PATTERNS}:
                raise Conflict(
                    "PATTERN_BUILTIN",
                    f"{pattern_id!r} is a built-in pattern; set builtin_patterns: false in the "
                    "configuration to drop the built-ins",
                )
            raise Missing("PATTERN_NOT_FOUND", f"no user pattern with id {pattern_id!r}")
        return reload.derive(config, patterns=[p.model_dump() for p in kept])

    async with rt.config_lock:
        config = _checked(lambda: change(rt.config))
        stored = []
        if pattern_id in rt.api_patterns:
            stored = [p for p in await rt.store.api_patterns() if p.id == pattern_id]
            await rt.store.delete_api_patterns([pattern_id], events=[])
        try:
            applied = await _apply_locked(rt, config, who)
        except BaseException:
            with contextlib.suppress(Exception):
                for record in stored:  # put it back where it was
                    await rt.store.add_api_pattern(record, events=[])
            raise
        rt.api_patterns = rt.api_patterns - {pattern_id}
    return ok(PatternDeleted, {"version": applied.version, "deleted": pattern_id})


def _checked(change: Callable[[], Config]) -> Config:
    try:
        return change()
    except ConfigError as exc:
        raise ValidationFailed(_tidy(exc.problems)) from None


async def _apply_locked(rt: Runtime, config: Config, who: Principal) -> reload.Applied:
    try:
        return await reload.update_locked(
            rt, lambda _: config, actor=who.name, source="api:patterns"
        )
    except ConfigError as exc:
        raise ValidationFailed(_tidy(exc.problems)) from None


# -- the kill switch ---------------------------------------------------------------------------


async def _switch(request: Request, rt: Runtime, who: Principal, *, paused: bool) -> Response:
    req = await parse_body(request, rt, PauseRequest, optional=True)
    changed = await switch(rt, who, paused=paused, reason=req.reason.strip())
    return ok(PauseState, {"paused": paused, "changed": changed})


async def switch(rt: Runtime, who: Principal, *, paused: bool, reason: str) -> bool:
    """Set the kill switch, recorded with ``who`` as actor; whether it changed."""
    was = await rt.engine.guards.paused()
    now = rt.clock.now()
    kind, verb = (ev.RECOVERY_PAUSED, "paused") if paused else (ev.RECOVERY_RESUMED, "resumed")
    event = Event(
        type=kind,
        time=now,
        severity="high" if paused else "info",
        outcome=verb,
        message=f"automatic recovery {verb} by {who.name}" + (f": {reason}" if reason else ""),
        actor=who.name,
        config_version=rt.config_version,
        details={"reason": reason, "changed": was != paused},
    )
    await rt.store.set_flag(
        PAUSE_FLAG, "1" if paused else "0", actor=who.name, now=now, events=[event]
    )
    rt.metrics.paused.set(1 if paused else 0)
    return was != paused


async def pause(request: Request, rt: Runtime, who: Principal) -> Response:
    """Turn the global kill switch on: no action runs until resumed."""
    return await _switch(request, rt, who, paused=True)


async def resume(request: Request, rt: Runtime, who: Principal) -> Response:
    """Turn the global kill switch off."""
    return await _switch(request, rt, who, paused=False)
