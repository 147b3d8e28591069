"""Following an HTTP target's failover: which of its endpoints is active.

``http.failover`` makes the target's ``backup_url`` active and ``http.failback`` its
``base_url`` again; the runner keeps the URL the switch reported as ``active_url`` in the
target's stored data (``target_state``), which every replica and a restarted remediator read.
From then on the target's health check and every other step on it use the active endpoint: they
get the target with ``base_url`` replaced by it (:func:`following`). A stored URL that is not
the configured ``backup_url`` (the configuration changed since) is ignored: the primary is used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from remediator.actions.http import ACTIVE_URL
from remediator.config.targets import HttpTarget, Target
from remediator.store.base import TargetStates

__all__ = ["ACTIVE_URL", "following", "on_backup", "resolve"]


def on_backup(target: HttpTarget, data: Mapping[str, Any]) -> bool:
    """Whether the stored state says the target runs on its (still configured) backup."""
    url = data.get(ACTIVE_URL)
    return target.backup_url is not None and url == target.backup_url != target.base_url


def following(target: Target, data: Mapping[str, Any]) -> Target:
    """``target`` as its checks and steps use it: on its backup, with ``base_url`` the backup."""
    if not isinstance(target, HttpTarget) or not on_backup(target, data):
        return target
    return target.model_copy(update={"base_url": target.backup_url})


async def resolve(store: TargetStates, target: Target) -> Target:
    """:func:`following` with the target's stored state (read only for an HTTP target with a
    backup: no other target can be on a backup)."""
    if not isinstance(target, HttpTarget) or target.backup_url is None:
        return target
    return following(target, (await store.target_state(target.name)).data)
