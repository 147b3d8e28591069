"""HTTP plumbing shared by the HTTP actions and health checks: URLs and secret-free errors."""

from __future__ import annotations


def join_url(base_url: str, path: str) -> str:
    """``base_url`` (its own path kept) + ``path`` (which starts with ``/``)."""
    return base_url.rstrip("/") + path


def http_error(
    exc: BaseException, urls: tuple[str | None, ...], headers: dict[str, str] | None = None
) -> str:
    """A short one-line description of ``exc`` without the URLs or header values."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if "header" in text.lower() or isinstance(exc, UnicodeError):
        text = "invalid header (name/value hidden)"
    secrets = [url.rstrip("/") for url in urls if url]
    for value in (headers or {}).values():
        secrets += [value, repr(value.encode("utf-8", "replace"))[2:-1]]
    for secret in sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True):
        text = text.replace(secret, "***")
    name = type(exc).__name__
    return f"{name}: {text[:200]}" if text else name
