"""Configuration keys from the environment: ``REMEDIATOR_SERVER__PORT=9096``, through
pydantic-settings.

Every key of the file can be set by a variable: ``REMEDIATOR_`` then the key's path with ``__``
between its parts, in any case (``REMEDIATOR_STORE__URL``, ``REMEDIATOR_NOTIFICATIONS__SLACK__
CHANNEL``). A top-level key may also be given whole, as JSON (``REMEDIATOR_TARGETS='[...]'``).
Precedence, per key: the variable, then the file (after its ``${VAR}`` and ``${VAR:-default}``
references are replaced), then the default. Values are strings, validated like the file's (so
``"9096"`` is a port and ``"false"`` a boolean), and a problem with one names its variable.

The settings model is derived from :class:`~remediator.config.model.Config`'s fields, so a
section added there is settable here without a change. Variables that name no key
(``REMEDIATOR_CONFIG``, ``REMEDIATOR_ADMIN_TOKEN``, ...) are left alone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field, create_model
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict, SettingsError

from remediator.errors import ConfigError

PREFIX = "REMEDIATOR_"
DELIMITER = "__"


def _settings_model(config: type[BaseModel]) -> type[BaseSettings]:
    """A settings class with one loosely typed field per top-level key of ``config``: a
    mapping for a section (so nested variables explode into it), a list for a list, anything
    else as given. The configuration model does the validation."""
    fields: dict[str, Any] = {}
    for name, info in config.model_fields.items():
        default = info.get_default(call_default_factory=True)
        if isinstance(default, BaseModel):
            fields[name] = (dict[str, Any], Field(default_factory=dict))
        elif isinstance(default, list):
            fields[name] = (list[Any], Field(default_factory=list))
        else:
            fields[name] = (Any, None)
    model: type[BaseSettings] = create_model(
        "EnvironmentSettings",
        __base__=BaseSettings,
        __config__=None,
        **fields,
    )
    model.model_config = SettingsConfigDict(
        env_prefix=PREFIX, env_nested_delimiter=DELIMITER, case_sensitive=False, extra="ignore"
    )
    return model


def from_environment(config: type[BaseModel], env: Mapping[str, str]) -> dict[str, Any]:
    """The configuration keys ``env`` sets, as nested data; :class:`ConfigError` if a whole
    key given as JSON is not JSON."""
    source = EnvSettingsSource(
        _settings_model(config),
        case_sensitive=False,
        env_prefix=PREFIX,
        env_nested_delimiter=DELIMITER,
    )
    source.env_vars = {name.lower(): value for name, value in env.items()}
    try:
        return dict(source())
    except SettingsError:
        bad = [
            name
            for name in env
            if name.upper().startswith(PREFIX)
            and DELIMITER not in name[len(PREFIX) :]
            and name[len(PREFIX) :].lower() in config.model_fields
        ]
        raise ConfigError(
            [f"{name}: not valid JSON" for name in bad] or ["environment: not valid JSON"]
        ) from None


def overlay(data: dict[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` with every key ``settings`` sets replaced (mappings merged key by key)."""
    out = dict(data)
    for key, value in settings.items():
        below = out.get(key)
        if isinstance(value, Mapping) and isinstance(below, dict):
            out[key] = overlay(below, value)
        else:
            out[key] = value
    return out


def variables(settings: Mapping[str, Any], path: str = "") -> dict[str, str]:
    """The field path of every key ``settings`` sets, and the variable that set it."""
    out: dict[str, str] = {}
    for key, value in settings.items():
        here = f"{path}.{key}" if path else key
        if isinstance(value, Mapping) and value:
            out.update(variables(value, here))
        else:
            out[here] = PREFIX + here.replace(".", DELIMITER).upper()
    return out


def attribute(problems: list[str], settings: Mapping[str, Any]) -> list[str]:
    """Each problem whose field a variable set, with that variable named."""
    names = variables(settings)
    out = []
    for line in problems:
        path = line.split(": ", 1)[0]
        found = [v for p, v in names.items() if path == p or path.startswith((p + ".", p + "["))]
        out.append(f"{line} (from {found[0]})" if found else line)
    return out


_ENV_REF = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(:-[^}]*)?\}")


def expand_env(value: Any, env: Mapping[str, str], path: str, problems: list[str]) -> Any:
    """``${VAR}`` in any string replaced by the environment's value; missing ones are problems.
    ``${VAR:-default}``: the default when the variable is not set or empty."""
    if isinstance(value, str):

        def sub(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if default is not None:
                return env.get(name) or default[2:]
            if name not in env:
                problems.append(f"{path or '<root>'}: environment variable {name} is not set")
                return ""
            return env[name]

        return _ENV_REF.sub(sub, value)
    if isinstance(value, list):
        return [expand_env(v, env, f"{path}[{i}]", problems) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {
            k: expand_env(v, env, f"{path}.{k}" if path else str(k), problems)
            for k, v in value.items()
        }
    return value
