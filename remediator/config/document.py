"""The configuration as a document: redacted for reading, compared for changes.

``GET /configuration`` shows every value except secrets: credentials in URLs and DSNs, values of
keys that name a secret (``password``, ``token``, ...), and by position every header value (of
targets, ``http.call`` steps, Prometheus) and the path and query of every notifier URL (Slack's
``webhook_url``, each webhook's ``url``), whatever the names. Names of token files and
environment variables are shown: they are not secrets.

A document read with GET can be sent back with PUT unchanged: :func:`restore` puts the current
value back wherever the new document still holds exactly the redacted form of it, and says where
the document relies on a secret it does not carry (for :mod:`remediator.config.destinations`,
which refuses one whose destination moved).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from remediator.config.model import Config
from remediator.redaction import REDACTED, redact_text

_SECRET_KEY = re.compile(
    r"authorization|cookie|password|passwd|secret|token|api[-_]?key|private[-_]?key|credential",
    re.IGNORECASE,
)
_NAME_SUFFIXES = ("_env", "_file")  # token_env, password_env, token_file: names, not values
_PATH_SECRET_KEYS = frozenset({"webhook_url"})  # Slack-style URLs whose path is the secret
# By position: (the key of the enclosing mapping or list, the key) of URLs whose path and query are
# redacted (a generic webhook's path is often its secret); every value of a ``headers`` mapping.
_PATH_SECRET_PLACES = frozenset({("webhooks", "url")})
_HEADERS = "headers"
_URL = re.compile(r"^(?P<origin>[a-zA-Z][a-zA-Z0-9+.-]*://[^/?#]*)(?P<rest>[/?#].*)$", re.DOTALL)
# Lists whose items are matched by name when restoring secrets (else by position).
_ITEM_KEYS = ("name", "id")


def _secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key)) and not key.lower().endswith(_NAME_SUFFIXES)


Secrets = tuple[str, ...]


def _redact_leaf(
    key: str | None, value: str, secrets: Secrets = (), parent: str | None = None
) -> str:
    if (key is not None and _secret_key(key)) or parent == _HEADERS:
        return REDACTED if value else value
    if key in _PATH_SECRET_KEYS or (parent, key) in _PATH_SECRET_PLACES:
        match = _URL.match(value)
        if match:
            return redact_text(match.group("origin"), secrets) + "/" + REDACTED
    return redact_text(value, secrets)


def redact_document(
    value: Any, key: str | None = None, secrets: Secrets = (), parent: str | None = None
) -> Any:
    """A JSON-like document with every secret replaced by ``***``; ``secrets`` are values to
    mask wherever they appear (the API tokens, values the configuration points at). ``parent``
    is the key of the mapping (or list) that holds ``key``."""
    if isinstance(value, str):
        return _redact_leaf(key, value, secrets, parent)
    if isinstance(value, dict):
        return {k: redact_document(v, str(k), secrets, key) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_document(v, key, secrets, parent) for v in value]
    return value


def redacted(config: Config, secrets: Secrets = ()) -> dict[str, Any]:
    """The configuration as JSON with secrets redacted."""
    document: dict[str, Any] = redact_document(config.model_dump(mode="json"), secrets=secrets)
    return document


def _item_key(item: Any) -> str | None:
    if isinstance(item, dict):
        for name in _ITEM_KEYS:
            if isinstance(item.get(name), str):
                return f"{name}={item[name]}"
    return None


Path = tuple[str | int, ...]


def restore(new: Any, old: Any, secrets: Secrets = ()) -> tuple[Any, list[Path]]:
    """``new`` with every redacted value that still equals the redacted ``old`` value at the same
    place replaced by the ``old`` value (list items are matched by ``name``/``id`` when they
    have one, else by position), and the paths (in ``new``) where the document relies on a
    secret it does not carry: each value restored, and each value still holding ``***`` where
    ``old`` held a secret (a URL whose credentials were kept while its host changed)."""
    held: list[Path] = []
    return _restore(new, old, key=None, parent=None, secrets=secrets, path=(), held=held), held


def _restore(
    new: Any,
    old: Any,
    *,
    key: str | None,
    parent: str | None,
    secrets: Secrets,
    path: Path,
    held: list[Path],
) -> Any:
    if isinstance(new, str):
        if not isinstance(old, str) or REDACTED not in new:
            return new
        redacted_old = _redact_leaf(key, old, secrets, parent)
        if new == redacted_old:
            if new != old:
                held.append(path)
            return old
        if REDACTED in redacted_old and redacted_old != old:
            held.append(path)  # stands for a secret, but not at the same place: not restored
        return new
    if isinstance(new, dict):
        previous = old if isinstance(old, dict) else {}
        return {
            k: _restore(v, previous.get(k), key=str(k), parent=key, secrets=secrets,
                        path=(*path, str(k)), held=held)
            for k, v in new.items()
        }  # fmt: skip
    if isinstance(new, list):
        olds = old if isinstance(old, list) else []
        by_key = {k: item for item in olds if (k := _item_key(item)) is not None}
        out = []
        for i, item in enumerate(new):
            item_key = _item_key(item)
            if item_key is not None:
                match = by_key.get(item_key)
            else:
                match = olds[i] if i < len(olds) else None
            out.append(_restore(item, match, key=key, parent=parent, secrets=secrets,
                                path=(*path, i), held=held))  # fmt: skip
        return out
    return new


# -- comparing configurations ------------------------------------------------------------------

NAMED_SECTIONS = {"targets": "name", "playbooks": "name", "patterns": "id"}


def _hash(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def digest(config: Config, *, redact: bool = True) -> dict[str, Any]:
    """Hashes of the whole configuration, of each top-level section and of each named target,
    playbook and pattern. With ``redact`` (what is persisted) the hashes are over the redacted
    document, so nothing derived from a secret is stored; a change to a secret alone then does
    not show."""
    data = config.model_dump(mode="json")
    if redact:
        data = redact_document(data)
    out: dict[str, Any] = {
        "hash": _hash(data),
        "sections": {name: _hash(value) for name, value in data.items()},
    }
    for section, field in NAMED_SECTIONS.items():
        out[section] = {str(item[field]): _hash(item) for item in data[section]}
    return out


def _names(old: dict[str, str], new: dict[str, str]) -> dict[str, list[str]]:
    return {
        "added": sorted(set(new) - set(old)),
        "removed": sorted(set(old) - set(new)),
        "changed": sorted(name for name in set(old) & set(new) if old[name] != new[name]),
    }


def diff(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """Which top-level sections, targets, playbooks and patterns changed between two digests
    (everything counts as changed when ``old`` is unknown)."""
    old = old or {"sections": {}, **{s: {} for s in NAMED_SECTIONS}}
    old_sections: dict[str, str] = old.get("sections", {})
    new_sections: dict[str, str] = new["sections"]
    out: dict[str, Any] = {
        "sections": sorted(
            name for name in new_sections if old_sections.get(name) != new_sections[name]
        )
    }
    for section in NAMED_SECTIONS:
        out[section] = _names(old.get(section, {}), new[section])
    return out


def changed(summary: dict[str, Any]) -> bool:
    return bool(summary["sections"])
