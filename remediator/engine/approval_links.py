"""The signed links of approval emails: one per approver and decision, single-use, expiring.

A token is ``<payload>.<mac>`` (both base64url): the payload names the approval, the decision
(``approve`` or ``deny``), the approver's email address and the expiry (the approval's own);
the MAC is HMAC-SHA256 (``cryptography``) with the key named by ``approvals.link_secret_env``.
:meth:`LinkSigner.verify` answers the approver only for an untampered token of that approval
and decision that has not expired; the HTTP side (remediator/http/approval_links.py) records
each used token in the store, so a second use is refused on every replica.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, hmac

from remediator.errors import ConfigError

DECISIONS: Final = ("approve", "deny")
MIN_KEY: Final = 32  # characters of key, at least
MAX_TOKEN: Final = 1024


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class Link:
    """What a valid token grants: ``email`` may take ``decision`` on approval ``approval``."""

    approval: int
    decision: str
    email: str
    expires: float


class LinkSigner:
    """Signs and checks the approval links (one key, from the environment)."""

    def __init__(self, key: bytes, *, public_url: str = "") -> None:
        self._key = key
        self.public_url = public_url.rstrip("/")

    def _mac(self, payload: bytes) -> hmac.HMAC:
        mac = hmac.HMAC(self._key, hashes.SHA256())
        mac.update(b"remediator-approval-link\x00" + payload)
        return mac

    def sign(self, *, approval: int, decision: str, email: str, expires: float) -> str:
        if decision not in DECISIONS:
            raise ValueError(f"not a decision: {decision!r}")
        payload = f"{approval}\x00{decision}\x00{int(expires)}\x00{email.lower()}".encode()
        return f"{_b64(payload)}.{_b64(self._mac(payload).finalize())}"

    def verify(self, token: str, *, approval: int, decision: str, now: float) -> Link | None:
        """The link ``token`` grants for ``approval`` and ``decision``; None if it was not
        signed with this key, names another approval or decision, or has expired."""
        if not token or len(token) > MAX_TOKEN or not token.isascii() or token.count(".") != 1:
            return None
        encoded, sig = token.split(".")
        try:
            payload, mac = _unb64(encoded), _unb64(sig)
            self._mac(payload).verify(mac)
            raw_id, raw_decision, raw_expires, email = payload.decode("utf-8").split("\x00")
        except (binascii.Error, ValueError, InvalidSignature):
            return None
        if raw_id != str(approval) or raw_decision != decision or not raw_expires.isdigit():
            return None
        if float(raw_expires) <= now:
            return None
        return Link(approval, decision, email, float(raw_expires))

    def url(self, *, approval: int, decision: str, email: str, expires: float) -> str:
        """The link to the confirm page of ``decision`` on ``approval`` for ``email``."""
        token = self.sign(approval=approval, decision=decision, email=email, expires=expires)
        path = f"/api/v1/recovery/approvals/{approval}/email/{decision}"
        return f"{self.public_url}{path}?token={quote(token)}"


def link_signer(
    *, secret_env: str | None, public_url: str | None, env: Mapping[str, str]
) -> LinkSigner | None:
    """The signer named by the configuration (None without ``link_secret_env``); a key that is
    missing or shorter than :data:`MIN_KEY` characters is a configuration error."""
    if secret_env is None:
        return None
    key = env.get(secret_env, "").strip()
    if len(key) < MIN_KEY:
        raise ConfigError(
            [f"approvals.link_secret_env: {secret_env} must hold at least {MIN_KEY} characters"]
        )
    return LinkSigner(key.encode(), public_url=public_url or "")
