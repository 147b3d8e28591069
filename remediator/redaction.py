"""Keeping secrets out of events, logs, messages and metrics.

Credentials in URLs and DSNs (``redis://:pw@host``, ``postgresql://user:pw@host/db``) and
``password=...`` pairs are replaced by ``***`` before anything is recorded.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

# The scheme is bounded: unbounded, every start inside a long run of letters and digits would
# scan to the run's end (quadratic: seconds for one 64 KB label value).
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]{0,31}://)(?P<creds>[^/@\s]+)@")
_KV_SECRET = re.compile(
    r"(?P<key>\b(?:password|passwd|pwd|token|secret|api[_-]?key)\b\s*[=:]\s*)(?P<value>[^\s&;,]+)",
    re.IGNORECASE,
)
REDACTED = "***"


# Every key _KV_SECRET knows starts with one of these (same case rules): a cheap test first.
_KV_HINT = re.compile(r"pass|pwd|token|secret|api", re.IGNORECASE)
_CACHED_LENGTH = 256  # short strings recur (URLs, names, messages): their results are cached


def redact_text(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` with URL credentials, ``key=secret`` pairs and the given secrets masked."""
    if len(text) <= _CACHED_LENGTH:
        return _redact_short(text, secrets)
    return _redact(text, secrets)


@functools.lru_cache(maxsize=4096)
def _redact_short(text: str, secrets: tuple[str, ...]) -> str:
    return _redact(text, secrets)


def _redact(text: str, secrets: tuple[str, ...]) -> str:
    out = text
    if "@" in out:  # each pattern needs its separator: skip the regex when it is absent
        out = _URL_CREDENTIALS.sub(lambda m: f"{m.group('scheme')}{REDACTED}@", out)
    if ("=" in out or ":" in out) and _KV_HINT.search(out):
        out = _KV_SECRET.sub(lambda m: f"{m.group('key')}{REDACTED}", out)
    for secret in secrets:
        if secret and secret in out:
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


def configured_secrets(
    config: Any, tokens: tuple[str, ...], env: Mapping[str, str]
) -> tuple[str, ...]:
    """Every secret value the configuration points at: API tokens, the Slack token, the SMTP
    password, webhook signing secrets, the audit key, Prometheus's bearer token, password and
    headers (those from environment variables), header values of targets and steps, webhook
    URLs (and their path and query), and passwords inside target URLs/DSNs."""
    found: list[str] = [t for t in tokens if t]
    notes = config.notifications
    names = [
        notes.slack.token_env if notes.slack else None,
        notes.email.password_env if notes.email else None,
        *(hook.secret_env for hook in notes.webhooks),
        *(hook.standard_webhooks_secret_env for hook in notes.webhooks),
        config.audit.encryption_key_env,
        config.prometheus.bearer_token_env,
        config.prometheus.basic_auth.password_env if config.prometheus.basic_auth else None,
    ]
    found += [env[name] for name in names if name and env.get(name)]
    if config.audit.encryption_key_env:  # several keys, comma-separated: each one is a secret
        found += [key.strip() for key in env.get(config.audit.encryption_key_env, "").split(",")]
    if notes.slack is not None and notes.slack.webhook_url:
        found.append(notes.slack.webhook_url)
    for hook in notes.webhooks:  # a generic webhook's path and query are often its secret
        found += [hook.url, *_url_tail(hook.url)]
    for playbook in config.playbooks:  # every header value of a step (http.call)
        for step in playbook.steps:
            found += getattr(step, "headers", {}).values()
    for target in config.targets:
        for attr in ("url", "replica_url", "dsn", "base_url", "backup_url"):
            value = getattr(target, attr, None)
            if isinstance(value, str):
                found += _url_passwords(value)
        for value in getattr(target, "headers", {}).values():
            found.append(value)
    found += config.prometheus.headers.values()
    return tuple(sorted({s for s in found if len(s) >= 4}, key=len, reverse=True))


def _url_passwords(url: str) -> list[str]:
    match = _URL_CREDENTIALS.search(url)
    if match is None:
        return []
    creds = match.group("creds")
    _, _, password = creds.partition(":")
    return [password] if password else [creds]


_MIN_TAIL = 8  # a shorter path ("/hook", "/api") holds no secret, and masking it would mangle text


def _url_tail(url: str) -> list[str]:
    """The path and query of ``url``, when long enough to hold a secret."""
    split = urlsplit(url)
    tail = split.path + (f"?{split.query}" if split.query else "")
    return [tail] if len(tail) >= _MIN_TAIL else []
