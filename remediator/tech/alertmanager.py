"""Alertmanager's silences API (v2): create, list and expire, with bounded timeouts.

Matchers are always literal equalities (``isRegex: false``, ``isEqual: true``): a label value
comes from the alert, which anyone who can make Alertmanager fire writes, so it is never read as
a regex. Errors are :class:`AlertmanagerError` with a message free of the URL.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx2

from remediator.tech.http import http_error, join_url

TIMEOUT = 5.0  # seconds, per request: a slow Alertmanager delays silences, never remediations
CREATED_BY = "remediator"
MAX_ANSWER = 16 * 1024 * 1024  # bytes of a silence listing read at most


class AlertmanagerError(Exception):
    """Alertmanager could not be reached or refused the request."""


@dataclass(frozen=True, slots=True)
class ListedSilence:
    id: str
    created_by: str
    comment: str
    state: str  # active, pending or expired


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat().replace("+00:00", "Z")


def literal_matchers(labels: Mapping[str, str]) -> list[dict[str, Any]]:
    """One literal equality matcher per label."""
    return [
        {"name": name, "value": value, "isRegex": False, "isEqual": True}
        for name, value in sorted(labels.items())
    ]


class SilenceClient:
    """One Alertmanager's ``/api/v2/silences``; ``client`` shared, never closed here."""

    def __init__(self, url: str, client: httpx2.AsyncClient, *, timeout: float = TIMEOUT) -> None:
        self.url = url
        self.client = client
        self.timeout = timeout

    async def _call(self, method: str, path: str, body: Any = None) -> httpx2.Response:
        try:
            return await self.client.request(
                method,
                join_url(self.url, path),
                json=body,
                timeout=self.timeout,
                follow_redirects=False,
                headers={"Accept": "application/json"},
            )
        except (httpx2.HTTPError, httpx2.InvalidURL) as exc:
            raise AlertmanagerError(f"{method} {path}: {http_error(exc, (self.url,))}") from None

    async def create(
        self, *, labels: Mapping[str, str], starts_at: float, ends_at: float, comment: str
    ) -> str:
        """A new silence matching exactly ``labels``; its id."""
        body = {
            "matchers": literal_matchers(labels),
            "startsAt": _iso(starts_at),
            "endsAt": _iso(ends_at),
            "createdBy": CREATED_BY,
            "comment": comment,
        }
        answer = await self._call("POST", "/api/v2/silences", body)
        if answer.status_code != 200:
            raise AlertmanagerError(f"POST /api/v2/silences: HTTP {answer.status_code}")
        try:
            found = answer.json()["silenceID"]
        except (ValueError, KeyError, TypeError):
            raise AlertmanagerError("POST /api/v2/silences: invalid answer") from None
        if not isinstance(found, str) or not found:
            raise AlertmanagerError("POST /api/v2/silences: invalid answer")
        return found

    async def expire(self, silence_id: str) -> None:
        """Expire the silence; one that is gone or already expired counts as expired."""
        answer = await self._call("DELETE", f"/api/v2/silence/{quote(silence_id, safe='')}")
        if answer.status_code in (200, 404):
            return
        if answer.status_code == 500 and "already expired" in answer.text[:1000]:
            return
        raise AlertmanagerError(f"DELETE /api/v2/silence/ID: HTTP {answer.status_code}")

    async def listed(self) -> list[ListedSilence]:
        """Every silence Alertmanager has (expired ones included)."""
        answer = await self._call("GET", "/api/v2/silences")
        if answer.status_code != 200:
            raise AlertmanagerError(f"GET /api/v2/silences: HTTP {answer.status_code}")
        if len(answer.content) > MAX_ANSWER:
            raise AlertmanagerError("GET /api/v2/silences: answer too large")
        try:
            entries = answer.json()
            return [
                ListedSilence(
                    id=str(e["id"]),
                    created_by=str(e.get("createdBy", "")),
                    comment=str(e.get("comment", "")),
                    state=str(e.get("status", {}).get("state", "")),
                )
                for e in entries
            ]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise AlertmanagerError("GET /api/v2/silences: invalid answer") from None
