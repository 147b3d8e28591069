"""Bearer-token (and HTTP basic) authentication with four roles.

- ``alertmanager``: may only POST alerts.
- ``viewer``: may read (events, statistics, circuit breakers, detailed health).
- ``approver``: may read, and approve or deny waiting remediations (remediator/engine/approvals.py).
- ``admin``: everything.

Tokens come from files or environment variables, never from the YAML itself. Comparison is
constant-time over every configured token; tokens never appear in logs, errors or metrics.

A token file others may read or write is refused (remediator/config/secretfile.py).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from remediator.config.model import ROLE_ENV, AuthConfig, Role
from remediator.config.secretfile import permission_problem
from remediator.errors import ConfigError

Capability = Literal["intake", "read", "approve", "admin"]
GRANTS: dict[Capability, frozenset[str]] = {
    "intake": frozenset({"alertmanager", "admin"}),
    "read": frozenset({"viewer", "approver", "admin"}),
    "approve": frozenset({"approver", "admin"}),
    "admin": frozenset({"admin"}),
}


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    role: Role

    def may(self, capability: Capability) -> bool:
        return self.role in GRANTS[capability]


@dataclass(frozen=True, slots=True)
class _Credential:
    principal: Principal
    digest: bytes


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class Authenticator:
    def __init__(self, credentials: list[tuple[Principal, str]]) -> None:
        self._credentials = [_Credential(p, _digest(token)) for p, token in credentials]
        self._tokens = tuple(token for _, token in credentials)

    @property
    def secrets(self) -> tuple[str, ...]:
        """The token values, only so that they can be redacted wherever text is recorded."""
        return self._tokens

    @property
    def enabled(self) -> bool:
        return bool(self._credentials)

    def names(self) -> list[str]:
        return [c.principal.name for c in self._credentials]

    def identify(self, token: str) -> Principal | None:
        """The principal owning ``token``; compares against every token in constant time."""
        presented = _digest(token)
        found: Principal | None = None
        for credential in self._credentials:
            if hmac.compare_digest(presented, credential.digest):
                found = credential.principal
        return found

    def from_header(self, authorization: str | None) -> Principal | None:
        """``Bearer <token>``, or ``Basic`` with the token as password (Alertmanager's
        ``basic_auth``)."""
        if not authorization:
            return None
        scheme, _, value = authorization.partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer" and value:
            return self.identify(value)
        if scheme.lower() == "basic" and value:
            try:
                decoded = base64.b64decode(value, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return None
            _, sep, password = decoded.partition(":")
            return self.identify(password) if sep and password else None
        return None


def token_paths(config: AuthConfig, base: Path | None = None) -> list[tuple[int, Path]]:
    """Each ``auth.tokens[i].token_file``, by index, relative ones under ``base``."""
    out: list[tuple[int, Path]] = []
    for i, spec in enumerate(config.tokens):
        if spec.token_file is not None:
            path = Path(spec.token_file)
            out.append((i, base / path if base is not None and not path.is_absolute() else path))
    return out


def load_credentials(
    config: AuthConfig, env: Mapping[str, str] | None = None, base: Path | None = None
) -> list[tuple[Principal, str]]:
    """Every configured token, read from its file or variable; problems as ConfigError."""
    env = os.environ if env is None else env
    problems: list[str] = []
    out: list[tuple[Principal, str]] = []
    paths = dict(token_paths(config, base))
    for i, spec in enumerate(config.tokens):
        token = ""
        if i in paths:
            path = paths[i]
            problem = permission_problem(path)
            if problem is not None:
                problems.append(f"auth.tokens[{i}].token_file: {problem}")
                continue
            try:
                token = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                problems.append(f"auth.tokens[{i}].token_file: cannot read: {exc.strerror}")
                continue
        elif spec.token_env is not None:
            token = env.get(spec.token_env, "").strip()
            if not token:
                problems.append(f"auth.tokens[{i}].token_env: {spec.token_env} is not set")
                continue
        if len(token) < 16:
            problems.append(f"auth.tokens[{i}]: token is shorter than 16 characters")
            continue
        out.append((Principal(spec.name, spec.role), token))
    for role, var in ROLE_ENV.items():
        token = env.get(var, "").strip()
        if token:
            if len(token) < 16:
                problems.append(f"{var}: token is shorter than 16 characters")
                continue
            out.append((Principal(f"env-{role}", role), token))  # type: ignore[arg-type]
    if problems:
        raise ConfigError(problems)
    return out
