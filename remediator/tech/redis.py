"""Redis plumbing shared by the Redis actions and health checks: secret-free errors."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit


def redis_error(exc: BaseException, *urls: str | None) -> str:
    """A short one-line description of ``exc`` with the URLs and their passwords removed."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    for url in urls:
        if not url:
            continue
        try:
            password = urlsplit(url).password
        except ValueError:
            password = None
        for secret in (url, password, unquote(password) if password else None):
            if secret:
                text = text.replace(secret, "***")
    name = type(exc).__name__
    return f"{name}: {text[:200]}" if text else name
