"""How events are recorded: secrets redacted, free text optionally encrypted, notifications
routed — all inside the transaction that appends the event.

A :class:`Recording` is handed to the store; the store applies it to every appended event:

1. ``redact``: configured secrets (tokens, passwords, DSN credentials) never reach the table;
2. the hash chain is computed over the redacted plaintext record;
3. ``seal``: with ``audit.encryption_key_env`` set, ``message`` and ``details`` are stored
   encrypted with Fernet (AES-128-CBC + HMAC-SHA256, from ``cryptography``); reads ``open`` them;
4. ``route``: the notifications the event causes are written to the outbox in the same commit.

With a key, the store seals every column that holds alert text the same way (the inbox's labels,
annotations, alertname, generator_url, receiver and group_key; the episode's alertname; the
event's alertname and actor; the outbox payload and last error): what stays readable is listed
in docs/architecture.md ("Encryption at rest"). The variable may hold several keys separated by
commas (:class:`~cryptography.fernet.MultiFernet`): the first seals, every one opens, so a key
is rotated by putting the new one first and dropping the old one once no row needs it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from remediator.audit.events import Event, evolve
from remediator.errors import SealedUnreadable
from remediator.redaction import redact, redact_text

SEALED = "enc:"


_SORTED = json.JSONEncoder(sort_keys=True)  # json.dumps(..., sort_keys=True), built once


@dataclass(frozen=True, slots=True)
class OutboxRow:
    channel: str
    destination: str
    incident: str
    phase: str
    payload: dict[str, Any]
    dedupe_key: str | None = None
    # Rows of one batch key are delivered together (remediator/engine/outbox.py), not before
    # ``not_before`` (None: at once), so a storm's escalations make one message per window.
    batch_key: str | None = None
    not_before: float | None = None


Router = Callable[[Event], list[OutboxRow]]


@dataclass
class Recording:
    secrets: tuple[str, ...] = ()
    cipher: Fernet | MultiFernet | None = None
    route: Router | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    _last_details: tuple[dict[str, Any], dict[str, Any]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def redact(self, event: Event) -> Event:
        """The event with every configured secret masked (the same event if it has none)."""
        message = redact_text(event.message, self.secrets)
        details = self._redact_details(event.details)
        if message == event.message and details is event.details:
            return event
        return evolve(event, message=message, details=details)

    def _redact_details(self, details: dict[str, Any]) -> dict[str, Any]:
        """``details`` redacted: the same object if nothing changed. The events of one alert
        share their details object, so the last one seen is remembered (held, so its identity
        stays its own; events and their details are never changed once made)."""
        last = self._last_details
        if last is not None and last[0] is details:
            return last[1]
        redacted: dict[str, Any] = redact(details, self.secrets)
        if redacted == details:
            redacted = details
        self._last_details = (details, redacted)
        return redacted

    def seal_text(self, text: str) -> str:
        if self.cipher is None:
            return text
        return SEALED + self.cipher.encrypt(text.encode()).decode()

    def open_text(self, stored: str) -> str:
        if not stored.startswith(SEALED):
            return stored
        if self.cipher is None:
            return stored  # sealed, and no key here: shown as stored
        try:
            return self.cipher.decrypt(stored[len(SEALED) :].encode()).decode()
        except InvalidToken:
            return stored

    def open_json(self, stored: str, what: str) -> Any:
        """A sealed (or plain) JSON column decoded; a sealed one this recording cannot open
        raises :class:`SealedUnreadable` naming ``what`` (plain JSON never starts with
        :data:`SEALED`, so nothing is guessed)."""
        text = self.open_text(stored)
        if text.startswith(SEALED):
            raise SealedUnreadable(
                f"{what} is encrypted with a key that audit.encryption_key_env does not hold"
                if self.cipher is not None
                else f"{what} is encrypted and audit.encryption_key_env is not set"
            )
        return json.loads(text)

    def seal_details(self, details: dict[str, Any]) -> str:
        return self.seal_json(_SORTED.encode(details))

    def seal_json(self, text: str) -> str:
        """Details already encoded as JSON, sealed if the policy encrypts."""
        return self.seal_text(text) if self.cipher is not None else text

    def open_details(self, stored: str) -> dict[str, Any]:
        text = self.open_text(stored)
        if text.startswith(SEALED):
            return {"sealed": True}
        loaded: dict[str, Any] = json.loads(text)
        return loaded


def cipher_from_env(name: str | None, env: Mapping[str, str]) -> MultiFernet | None:
    """The cipher from the keys in environment variable ``name`` (None: no encryption): one
    Fernet key, or several separated by commas — the first encrypts, any of them decrypts."""
    if not name:
        return None
    keys = [key.strip() for key in env.get(name, "").split(",") if key.strip()]
    if not keys:
        raise ValueError(f"audit.encryption_key_env: {name} is not set")
    ciphers: list[Fernet] = []
    for number, key in enumerate(keys, start=1):
        try:
            ciphers.append(Fernet(key.encode()))
        except ValueError:
            raise ValueError(
                f"audit.encryption_key_env: key {number} of {name} is not a Fernet key "
                "(32 url-safe base64-encoded bytes; make one with "
                "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`)"
            ) from None
    return MultiFernet(ciphers)
