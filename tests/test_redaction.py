"""Redaction: credentials in URLs, ``key=secret`` pairs and configured secrets are masked."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from remediator.redaction import REDACTED, redact, redact_text

SECRET = "s3cr3t-Token-value"


def test_url_credentials_key_value_pairs_and_configured_secrets_are_masked() -> None:
    text = (
        f"dsn postgresql://app:pw@127.0.0.1/db and redis://:hunter2@127.0.0.1 "
        f"password=abc token: xyz carrying {SECRET}"
    )
    out = redact_text(text, (SECRET,))
    assert "pw@" not in out and "hunter2" not in out
    assert "abc" not in out and "xyz" not in out and SECRET not in out
    assert "postgresql://***@127.0.0.1/db" in out and "redis://***@127.0.0.1" in out
    assert out.count(REDACTED) == 5


def test_text_without_anything_secret_is_returned_unchanged() -> None:
    text = "HighMemoryUsage firing on web-1 (92% of 512 MiB)"
    assert redact_text(text, (SECRET,)) == text
    assert redact({"a": [text, 1, None], "b": {"c": 2.5}}, (SECRET,)) == {
        "a": [text, 1, None],
        "b": {"c": 2.5},
    }


_URL = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]{0,31}://)(?P<creds>[^/@\s]+)@")
_KV = re.compile(
    r"(?P<key>\b(?:password|passwd|pwd|token|secret|api[_-]?key)\b\s*[=:]\s*)(?P<value>[^\s&;,]+)",
    re.IGNORECASE,
)


def _unconditional(text: str, secrets: tuple[str, ...]) -> str:
    """Every pattern applied to every string: what the separator checks must not change."""
    out = _URL.sub(lambda m: f"{m.group('scheme')}{REDACTED}@", text)
    out = _KV.sub(lambda m: f"{m.group('key')}{REDACTED}", out)
    for secret in secrets:
        if secret:
            out = out.replace(secret, REDACTED)
    return out


# Case-insensitive look-alikes too: long s, dotless i, dotted capital I, the Kelvin sign.
_FOLDED = ["pa\u017f\u017fword", "ap\u0131_key", "AP\u0130KEY", "\u212aey"]
_PIECES = st.sampled_from(
    [
        *["http://", "u:p@", "@", ":", "=", " ", "password", "Token", "api_key", "pwd"],
        *["secret", "x", "/", SECRET, "\u00e9", *_FOLDED],
    ]
)


@settings(max_examples=500, deadline=None)
@given(st.lists(_PIECES | st.text(max_size=4), max_size=12).map("".join))
def test_skipping_patterns_whose_separator_is_absent_changes_nothing(text: str) -> None:
    assert redact_text(text, (SECRET,)) == _unconditional(text, (SECRET,))
