"""Link hosts: which links taken from an alert a notification may show.

An alert's ``runbook_url`` annotation and its ``generatorURL`` are alert text: anyone who can
make Alertmanager fire writes them. A notification shows such a link only when its host is on
``notifications.link_hosts`` (an exact host, or ``*.example.com`` for any subdomain of
``example.com``); any other link is replaced by :data:`HIDDEN`. A link must be plain
``http``/``https`` with no user part, no backslash and no whitespace, so that the host a reader's
client opens is the host checked here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import urlsplit

HIDDEN = "(link hidden: host not allowed)"
_HOST = re.compile(
    r"^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
)
_UNSAFE = re.compile(r"[\\\s@\x00-\x1f\x7f]")


def check_host(host: str) -> str:
    """A configured host, lower-cased; ``ValueError`` for anything but a host or ``*.host``."""
    value = host.strip().lower()
    if not _HOST.match(value) or len(value) > 253:
        raise ValueError(
            f"invalid host {host!r}: a host name such as runbooks.example.com, or *.example.com"
        )
    return value


def host_of(url: str) -> str | None:
    """The host an ``http(s)`` link opens, or None when it is not a plain web link."""
    if _UNSAFE.search(url):
        return None
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not host:
        return None
    return host.rstrip(".").lower()


def allowed(url: str, hosts: Sequence[str]) -> bool:
    """May a notification show ``url`` as a link?"""
    host = host_of(url)
    if host is None:
        return False
    for entry in hosts:
        if entry.startswith("*."):
            if host.endswith(entry[1:]):
                return True
        elif host == entry:
            return True
    return False
