"""The one SQLite statement that reads everything the guards need (see guards.py)."""

from __future__ import annotations

from typing import Any

from remediator.store.records import COUNTED


def guard_snapshot_sql(
    *,
    target: str,
    playbook: str,
    flag: str,
    peers: list[str] | None,
    since: float | None,
    episode_id: int | None,
) -> tuple[str, list[Any]]:
    """The statement and its parameters; its one row is read by ``guard_snapshot_from_row``.
    Every part is an index look-up: the alerting count probes the open episodes of each peer
    (``episodes_open_target``)."""
    marks = ",".join("?" * len(COUNTED))
    names = sorted(set(peers or []))
    peers_cte, alerting, count = "", "NULL" if peers is None else "0", "NULL"
    if names:  # one index probe per peer (episodes_open_target)
        peers_cte = f"WITH peers(name) AS (VALUES {','.join(['(?)'] * len(names))}) "
        alerting = (
            "(SELECT count(*) FROM peers WHERE EXISTS (SELECT 1 FROM episodes o "
            "WHERE o.resolved_at IS NULL AND o.target = peers.name))"
        )
    if since is not None:
        count = (
            "(SELECT count(*) FROM remediations WHERE target = ? AND started_at > ? "  # noqa: S608
            f"AND state IN ({marks}))"
        )
    sql = (
        f"{peers_cte}SELECT e.id, e.fingerprint, e.starts_at, e.resolved_at, "  # noqa: S608
        "(SELECT value FROM flags WHERE name = ?), "
        "t.registered_at, t.quarantined_at, t.quarantine_reason, t.data, "
        "b.state, b.failures, b.opened_at, b.trials, "
        "(SELECT max(started_at) FROM remediations WHERE target = ? AND playbook = ? "
        f"AND state IN ({marks})), {count}, {alerting} "
        "FROM (SELECT 1) AS one LEFT JOIN episodes AS e ON e.id = ? "
        "LEFT JOIN target_state AS t ON t.target = ? LEFT JOIN breakers AS b ON b.target = ?"
    )
    params: list[Any] = [*names, flag, target, playbook, *COUNTED]
    if since is not None:
        params += [target, since, *COUNTED]
    params += [episode_id, target, target]
    return sql, params
