"""Target selectors: the targets a playbook may act on (its allow-list).

A playbook whose target is a template (``{{ labels.container }}``) resolves it from alert text,
which anyone who can make Alertmanager fire controls. Without a selector every registered
target is reachable; with one, a resolved target outside it is refused before any action. A
target is allowed when its name is in ``names`` or it carries every label in ``labels``.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from remediator.config.targets import check_labels


class TargetSelector(BaseModel):
    """``names`` and/or ``labels``: a target is allowed if either selects it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    names: list[str] = Field(
        default_factory=list, description="Registered target names it may act on."
    )
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="It may also act on every target that carries all these labels.",
    )

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        return check_labels(value)

    @model_validator(mode="after")
    def _not_empty(self) -> TargetSelector:
        if not self.names and not self.labels:
            raise ValueError("name at least one target in 'names' or one label in 'labels'")
        return self

    def allows(self, name: str, labels: Mapping[str, str]) -> bool:
        """Is the target ``name`` with these labels on the list?"""
        if name in self.names:
            return True
        return bool(self.labels) and all(labels.get(k) == v for k, v in self.labels.items())

    def describe(self) -> str:
        """The selector in words, for refusals and warnings."""
        parts = [f"names {', '.join(self.names)}"] if self.names else []
        if self.labels:
            said = ", ".join(f"{k}={v}" for k, v in sorted(self.labels.items()))
            parts.append(f"labels {said}")
        return " or ".join(parts)
