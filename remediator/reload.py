"""Applying a new configuration without a restart: all of it, or none of it.

A new configuration (from ``PUT /configuration``, a pattern added or deleted through the API, or
the file re-read on SIGHUP) is validated, checked for changes that need a restart, recorded as a
new version (the store flag ``config_version``, with a ``config:changed`` event in the same
commit) and only then swapped in: the engine's catalog and guards, the health monitor, the
runtime's configuration. Every later event carries the new version. A configuration that fails
any check changes nothing.

Versions survive restarts: at start-up, the loaded file is compared with the digest of the last
applied configuration; a different one becomes the next version (recorded with actor
``startup``). Changes made through the API are not written back to the file: they last until
the next restart or SIGHUP, which load the file again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from remediator import logs
from remediator.audit.events import CONFIG_CHANGED, Event
from remediator.config import document as configdoc
from remediator.config import model as config_mod
from remediator.config.model import RESTART_ONLY, Config
from remediator.config.problems import format_errors
from remediator.engine import api_patterns
from remediator.engine.api_patterns import Conflicts
from remediator.engine.decisions import Catalog
from remediator.errors import ConfigError
from remediator.policy import recording_for
from remediator.runtime import Runtime
from remediator.store import Store

log = logging.getLogger("remediator.reload")
VERSION_FLAG = "config_version"
DIGEST_FLAG = "config_digest"


@dataclass(frozen=True, slots=True)
class Applied:
    version: int
    previous_version: int
    changed: bool
    diff: dict[str, Any]


def restart_problems(old: Config, new: Config) -> list[str]:
    """One line per section that differs and cannot be changed while running."""
    return [
        f"{name}: cannot be changed while remediator runs; edit the file and restart"
        for name in RESTART_ONLY
        if getattr(old, name) != getattr(new, name)
    ]


def _stored_version(raw: str | None) -> int:
    return int(raw) if raw is not None and raw.isascii() and raw.isdigit() else 0


def _stored_digest(raw: str | None) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) and "sections" in data else None


async def startup_version(store: Store, config: Config, *, now: float) -> int:
    """The version of the configuration loaded at start-up: the last applied one if it has not
    changed since, else the next (recorded as a ``config:changed`` event)."""
    version = _stored_version(await store.flag(VERSION_FLAG))
    previous = _stored_digest(await store.flag(DIGEST_FLAG))
    current = configdoc.digest(config)
    if version and previous is not None and previous.get("hash") == current["hash"]:
        return version
    events: list[Event] = []
    if version:
        summary = configdoc.diff(previous, current)
        events.append(
            _changed_event(
                version=version + 1,
                previous=version,
                actor="startup",
                source="file",
                summary=summary,
                now=now,
            )
        )
    new_version = version + 1
    await store.set_flag(VERSION_FLAG, str(new_version), actor="startup", now=now, events=events)
    await store.set_flag(DIGEST_FLAG, json.dumps(current), actor="startup", now=now, events=[])
    return new_version


def _changed_event(
    *, version: int, previous: int, actor: str, source: str, summary: dict[str, Any], now: float
) -> Event:
    parts = [", ".join(summary["sections"]) or "nothing"]
    for section in configdoc.NAMED_SECTIONS:
        for kind in ("added", "removed", "changed"):
            names = summary[section][kind]
            if names:
                parts.append(f"{section} {kind}: {', '.join(names)}")
    return Event(
        type=CONFIG_CHANGED,
        time=now,
        outcome="applied",
        message=f"configuration version {version} (was {previous}) from {source}: "
        + "; ".join(parts),
        actor=actor,
        config_version=version,
        details={"source": source, "previous_version": previous, "diff": summary},
    )


async def apply(
    rt: Runtime, config: Config, *, actor: str, source: str, conflicts: Conflicts = "file"
) -> Applied:
    """Make ``config`` (a file's, or PUT /configuration's) the running configuration with the
    stored API patterns after its own, atomically; ConfigError changes nothing. An API pattern
    whose id ``config`` also has is dropped (``conflicts="file"``: deleted from the store with a
    ``pattern:dropped`` event) or refused (``"refuse"``: PatternExists); see
    remediator/engine/api_patterns.py."""
    async with rt.config_lock:
        stored = api_patterns.specs(await rt.store.api_patterns())
        merged = api_patterns.merge(config, stored, conflicts=conflicts)
        applied = await update_locked(rt, lambda _: merged.config, actor=actor, source=source)
        rt.api_patterns = merged.api_ids
        await api_patterns.drop(
            rt.store, merged.dropped, actor=actor, source=source, now=rt.clock.now(),
            config_version=applied.version,
        )  # fmt: skip
        return applied


async def update(
    rt: Runtime, change: Callable[[Config], Config], *, actor: str, source: str
) -> Applied:
    """Apply ``change(current configuration)``, read and written under one lock so that two
    concurrent changes cannot lose one another. ``change`` may raise to refuse."""
    async with rt.config_lock:
        return await update_locked(rt, change, actor=actor, source=source)


async def update_locked(
    rt: Runtime, change: Callable[[Config], Config], *, actor: str, source: str
) -> Applied:
    """:func:`update`, for a caller that holds ``rt.config_lock``."""
    old = rt.config
    config = change(old)
    problems = restart_problems(old, config)
    if problems:
        raise ConfigError(problems)
    try:
        Catalog.from_config(config, rt.engine.strategies)
    except (ValueError, TypeError) as exc:
        raise ConfigError([f"<root>: {exc}"]) from None
    summary = configdoc.diff(
        configdoc.digest(old, redact=False), configdoc.digest(config, redact=False)
    )
    if old == config:
        return Applied(rt.config_version, rt.config_version, False, summary)
    now = rt.clock.now()
    stored = _stored_version(await rt.store.flag(VERSION_FLAG))
    previous = rt.config_version
    version = max(stored, previous) + 1
    event = _changed_event(
        version=version,
        previous=previous,
        actor=actor,
        source=source,
        summary=summary,
        now=now,
    )
    await rt.store.set_flag(VERSION_FLAG, str(version), actor=actor, now=now, events=[event])
    # From here on nothing can fail but the digest, which only serves the next start-up.
    _swap(rt, old, config, version)
    try:
        await rt.store.set_flag(
            DIGEST_FLAG, json.dumps(configdoc.digest(config)), actor=actor, now=now, events=[]
        )
    except Exception:
        log.warning("configuration digest not stored", extra={"version": version})
    await _health_monitor(rt, old, config)
    log.info(
        "configuration applied",
        extra={"version": version, "actor": actor, "source": source, "diff": summary},
    )
    return Applied(version, previous, True, summary)


def derive(config: Config, **sections: Any) -> Config:
    """``config`` with some top-level sections replaced, validated again as a whole."""
    data = config.model_dump()
    data.update(sections)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc)) from None


def _swap(rt: Runtime, old: Config, config: Config, version: int) -> None:
    rt.engine.apply(config, version)
    rt.monitor.apply(config, version)
    rt.escalator.config = config
    rt.config = config
    rt.config_version = version
    # New targets may carry new secrets (passwords in URLs): redact those from now on.
    recording = recording_for(config, rt.authenticator)
    rt.store.configure(recording)
    logs.protect(recording.secrets)
    runner = rt.engine.runner
    if old.safety.max_concurrent_actions != config.safety.max_concurrent_actions:
        # Actions already running finish under the old limit.
        runner.slots = asyncio.Semaphore(config.safety.max_concurrent_actions)


async def _health_monitor(rt: Runtime, old: Config, new: Config) -> None:
    if old.health.enabled and not new.health.enabled:
        await rt.monitor.stop()
    elif new.health.enabled and not old.health.enabled and not rt.draining:
        await rt.monitor.start()


# -- SIGHUP ------------------------------------------------------------------------------------


async def reload_config(rt: Runtime, path: str | Path, *, actor: str) -> Applied:
    """Read ``path`` again and apply it (ConfigError changes nothing), and say so in
    ``remediator_config_last_reload_successful`` and ``..._success_timestamp_seconds``."""
    try:
        config = config_mod.load(path)
        applied = await apply(rt, config, actor=actor, source=f"file {path}")
    except Exception:
        rt.metrics.config_reload_successful.set(0)
        raise
    rt.metrics.config_reload_successful.set(1)
    rt.metrics.config_reload_timestamp.set(rt.clock.now())
    return applied


async def reload_file(rt: Runtime, path: str | Path) -> Applied | None:
    """Read ``path`` again and apply it; problems are logged and change nothing."""
    try:
        applied = await reload_config(rt, path, actor="sighup")
    except ConfigError as exc:
        log.error("configuration not reloaded", extra={"path": str(path), "problems": exc.problems})
        return None
    except Exception:
        log.exception("configuration not reloaded", extra={"path": str(path)})
        return None
    if not applied.changed:
        log.info("configuration reloaded: unchanged", extra={"version": applied.version})
    return applied


_PENDING: set[asyncio.Task[Applied | None]] = set()


def install_sighup(rt: Runtime, path: str | Path) -> None:
    """Reload ``path`` on SIGHUP (and on ``POST /-/reload``). Call from the running event loop
    (the app's ``on_runtime``)."""
    rt.config_file = Path(path)
    loop = asyncio.get_running_loop()

    def handler() -> None:
        task = loop.create_task(reload_file(rt, path), name="remediator-reload")
        _PENDING.add(task)
        task.add_done_callback(_PENDING.discard)

    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGHUP, handler)
        log.info("SIGHUP reloads the configuration", extra={"path": str(path)})


def sighup_installer(path: str | Path) -> Callable[[Runtime], None]:
    """An ``on_runtime`` hook for :func:`remediator.http.app.create_app` that installs the handler."""
    return lambda rt: install_sighup(rt, path)
