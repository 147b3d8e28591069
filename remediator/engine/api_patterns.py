"""Failure patterns added through the API: stored, and kept across reloads and restarts.

``POST /patterns`` stores the pattern (remediator/store/api_patterns.py) before it runs, and
``DELETE /patterns/{id}`` deletes it from the store. The running patterns are always the
configuration's own (the file's, or the last PUT /configuration's), then the API patterns in the
order they were added, then the built-ins: :func:`merge` builds that list whenever a
configuration is applied (start-up, SIGHUP, PUT /configuration), from the patterns stored then.

When the configuration and an API pattern share an id:

- the file (start-up, SIGHUP) wins: the API pattern is deleted from the store and a
  ``pattern:dropped`` event says so (:func:`drop`);
- PUT /configuration is refused (409 ``PATTERN_EXISTS``) unless its pattern is the API
  pattern unchanged (a document read with GET lists the API patterns): that one stays an API
  pattern;
- ``POST /patterns`` with an id already in effect is refused (409 ``PATTERN_EXISTS``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from pydantic import ValidationError

from remediator.audit.events import PATTERN_DROPPED, Event
from remediator.config.model import Config
from remediator.config.patterns import PatternSpec
from remediator.errors import PatternExists
from remediator.store import Store
from remediator.store.api_patterns import StoredPattern

log = logging.getLogger("remediator.api_patterns")
Conflicts = Literal["file", "refuse"]


@dataclass(frozen=True, slots=True)
class Merged:
    config: Config  # the configuration's patterns, then the API patterns
    api_ids: frozenset[str]  # the ids of the API patterns in it
    dropped: tuple[PatternSpec, ...]  # API patterns the configuration overrode (file wins)


def specs(stored: list[StoredPattern]) -> list[PatternSpec]:
    """The stored patterns as specifications, in order; one that no longer validates (a
    stored row from another version) is logged and left out."""
    out = []
    for row in stored:
        try:
            out.append(PatternSpec.model_validate(row.spec))
        except ValidationError as exc:
            log.error("stored API pattern skipped", extra={"id": row.id, "problem": str(exc)})
    return out


def merge(base: Config, api: list[PatternSpec], *, conflicts: Conflicts) -> Merged:
    """``base`` with the API patterns after its own (see the module's docstring for ids in
    both); PatternExists when ``conflicts`` is ``refuse`` and they differ."""
    by_id = {spec.id: spec for spec in api}
    own: list[PatternSpec] = []
    dropped: list[PatternSpec] = []
    for spec in base.patterns:
        mine = by_id.get(spec.id)
        if mine is None:
            own.append(spec)
        elif conflicts == "file":
            own.append(spec)
            dropped.append(mine)
        elif mine != spec:
            raise PatternExists(
                f"patterns: {spec.id!r} is a pattern added through the API; delete it "
                "(DELETE /patterns/{id}) before defining another one with its id"
            )
    taken = {spec.id for spec in own}
    kept = [spec for spec in api if spec.id not in taken]
    config = base.model_copy(update={"patterns": [*own, *kept]})
    return Merged(config, frozenset(spec.id for spec in kept), tuple(dropped))


def dropped_event(
    spec: PatternSpec, *, actor: str, source: str, now: float, config_version: int
) -> Event:
    return Event(
        type=PATTERN_DROPPED,
        time=now,
        severity="medium",
        outcome="dropped",
        message=f"pattern {spec.id!r} added through the API was deleted: the configuration "
        f"from {source} defines a pattern with this id, which wins",
        actor=actor,
        config_version=config_version,
        details={"source": source, "pattern": spec.model_dump(mode="json")},
    )


async def drop(
    store: Store,
    dropped: tuple[PatternSpec, ...],
    *,
    actor: str,
    source: str,
    now: float,
    config_version: int,
) -> None:
    """Delete the API patterns the configuration overrode, with one ``pattern:dropped`` event
    each. Not fatal: the configuration's patterns run already, and the next reload retries."""
    if not dropped:
        return
    events = [
        dropped_event(spec, actor=actor, source=source, now=now, config_version=config_version)
        for spec in dropped
    ]
    try:
        await store.delete_api_patterns([spec.id for spec in dropped], events=events)
    except Exception:
        log.exception("API patterns not dropped", extra={"ids": [s.id for s in dropped]})


async def at_startup(store: Store, config: Config) -> Merged:
    """The file's configuration with the stored API patterns (the file wins)."""
    return merge(config, specs(await store.api_patterns()), conflicts="file")
