"""The console's sign-in: a session cookie holding a signed random id, the token it stands for
kept in this process only, and a CSRF token per session.

The key that signs the cookie is made per process (:class:`Sessions` is built once per app), so a
restart signs everybody out. Each request authorises the kept token again with the API's own
:func:`remediator.http.web.authorize`, so roles and revoked tokens behave exactly as in the API.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer

COOKIE = "remediator_console"
MAX_AGE = 12 * 3600  # seconds a sign-in lasts
MAX_SESSIONS = 10_000


@dataclass(frozen=True)
class Session:
    token: str
    csrf: str


class Sessions:
    """Signed session ids and the tokens they stand for."""

    def __init__(self, key: bytes | None = None) -> None:
        self._signer = URLSafeTimedSerializer(key or secrets.token_bytes(32), salt="console")
        self._kept: dict[str, Session] = {}

    def open(self, token: str) -> tuple[str, Session]:
        """A new session for ``token``: the cookie value and the session."""
        if len(self._kept) >= MAX_SESSIONS:
            self._kept.pop(next(iter(self._kept)))
        sid = secrets.token_urlsafe(24)
        session = Session(token=token, csrf=secrets.token_urlsafe(24))
        self._kept[sid] = session
        return self._signer.dumps(sid), session

    def find(self, cookie: str | None) -> Session | None:
        """The session a cookie names, or None (absent, forged, expired or closed)."""
        if not cookie:
            return None
        try:
            sid = self._signer.loads(cookie, max_age=MAX_AGE)
        except BadSignature:
            return None
        return self._kept.get(sid) if isinstance(sid, str) else None

    def close(self, cookie: str | None) -> None:
        if not cookie:
            return
        try:
            sid = self._signer.loads(cookie, max_age=MAX_AGE)
        except BadSignature:
            return
        if isinstance(sid, str):
            self._kept.pop(sid, None)


def csrf_ok(session: Session, presented: str | None) -> bool:
    """Whether a form's CSRF token is its session's."""
    return bool(presented) and hmac.compare_digest(session.csrf, str(presented))
