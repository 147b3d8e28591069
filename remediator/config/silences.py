"""Silences: an Alertmanager silence while remediator handles an alert.

A playbook with ``silence: {enabled: true}`` has remediator silence the alert it handles while
its remediation runs or awaits approval, and while the target it quarantined stays
quarantined; the top-level ``silences:`` section names the Alertmanager to silence in. The
engine side lives in remediator/engine/silences.py.
"""

from __future__ import annotations

import re
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from remediator.config.durations import Duration

LABEL_NAME = r"^[a-zA-Z_][a-zA-Z0-9_]{0,127}$"


class SilenceSpec(BaseModel):
    """A playbook's silence: which labels it matches and how long it may last."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=True, description="Silence the alert while it is handled.")
    matchers: list[str] = Field(
        default_factory=list,
        max_length=32,
        description="The label names the silence matches, each by equality with the alert's "
        "value (a label the alert lacks matches its absence); `[]`: every label of the alert.",
    )
    duration_cap: Duration = Field(
        default=3600.0,
        gt=0,
        le=7 * 86400.0,
        description="The silence ends by itself after this long, even if remediator never "
        "expires it.",
    )

    @field_validator("matchers")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not re.fullmatch(LABEL_NAME, name):
                raise ValueError(f"silence.matchers: not a label name: {name!r}")
        return value


class SilencesConfig(BaseModel):
    """The Alertmanager that playbooks with ``silence:`` silence in."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    DESTINATION: ClassVar[tuple[str, ...]] = ("url",)

    url: str | None = Field(
        default=None,
        description="Alertmanager's base URL (API v2). Unset: `alertmanager.url`; neither set: "
        "no silences are made.",
    )
    link: str | None = Field(
        default=None,
        description="remediator's own base URL as the team reaches it: each silence's comment "
        "links to the incident's events under it (`LINK/api/v1/recovery/events?fingerprint=...`).",
    )
    interval: Duration = Field(
        default=60.0,
        ge=1.0,
        description="How often silences are checked against what remediator handles (and "
        "its stale silences expired) even when no event asks for it.",
    )


def silence_problems(
    index: int, spec: SilenceSpec | None, section: SilencesConfig, alertmanager_url: str | None
) -> list[str]:
    """A playbook that asks for silences with no Alertmanager to make them in."""
    if spec is None or not spec.enabled or section.url or alertmanager_url:
        return []
    return [f"playbooks[{index}].silence: set silences.url (or alertmanager.url) to silence"]
