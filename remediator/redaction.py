"""Keeping secrets out of events, logs, messages and metrics.

Credentials in URLs and DSNs (``redis://:pw@host``, ``postgresql://user:pw@host/db``) and
``password=...`` pairs are replaced by ``***`` before anything is recorded.
"""

from __future__ import annotations

import re
from typing import Any

_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<creds>[^/@\s]+)@")
_KV_SECRET = re.compile(
    r"(?P<key>\b(?:password|passwd|pwd|token|secret|api[_-]?key)\b\s*[=:]\s*)(?P<value>[^\s&;,]+)",
    re.IGNORECASE,
)
REDACTED = "***"


def redact_text(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` with URL credentials, ``key=secret`` pairs and the given secrets masked."""
    out = _URL_CREDENTIALS.sub(lambda m: f"{m.group('scheme')}{REDACTED}@", text)
    out = _KV_SECRET.sub(lambda m: f"{m.group('key')}{REDACTED}", out)
    for secret in secrets:
        if secret:
            out = out.replace(secret, REDACTED)
    return out


def redact(value: Any, secrets: tuple[str, ...] = ()) -> Any:
    """Redact every string inside a JSON-like value."""
    if isinstance(value, str):
        return redact_text(value, secrets)
    if isinstance(value, list):
        return [redact(v, secrets) for v in value]
    if isinstance(value, dict):
        return {k: redact(v, secrets) for k, v in value.items()}
    return value
