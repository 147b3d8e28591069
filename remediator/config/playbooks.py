"""Playbooks: which alerts they handle, which target they act on, and the steps they run."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from remediator.config.approvals import ApprovalSpec
from remediator.config.durations import Duration
from remediator.config.patterns import Matcher, parse
from remediator.config.selectors import TargetSelector
from remediator.config.silences import SilenceSpec
from remediator.config.steps import Step, Template, compile_template

Priority = Literal["critical", "high", "medium", "low"]
PRIORITY_RANK: dict[str, int] = {"critical": 0, "high": 1, "medium": 2, "low": 3}


class RetrySpec(BaseModel):
    """Backoff between attempts: ``min(initial_delay * multiplier ** attempt, max_delay)``,
    with full jitter."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_attempts: int = Field(default=3, ge=1, le=20)
    initial_delay: Duration = 1.0
    multiplier: float = Field(default=2.0, ge=1.0, le=10.0)
    max_delay: Duration = 60.0


class WindowLimit(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    count: int = Field(ge=1)
    window: Duration = 3600.0


class PlaybookSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    # Its steps' secrets (http.call headers) go to its target (remediator/config/destinations.py)
    DESTINATION: ClassVar[tuple[str, ...]] = ("target",)
    DESTINATION_REFS: ClassVar[dict[str, str]] = {"target": "targets"}

    name: str = Field(pattern=r"^[a-zA-Z0-9_.-]{1,64}$")
    match: list[str] = Field(default_factory=list)
    pattern: str | None = None  # a pattern id or a category
    target: str
    targets: TargetSelector | None = Field(
        default=None,
        description="The allow-list: the targets it may act on, by `names` and/or `labels`; a "
        "rendered target outside it is refused (`target_not_allowed`). `null`: any registered "
        "target, and `check-config` warns when `target` is a template.",
    )
    priority: Priority = "medium"
    steps: list[Step] = Field(min_length=1)
    retry: RetrySpec = Field(default_factory=RetrySpec)
    cooldown: Duration = 300.0
    max_per_window: WindowLimit | None = Field(default_factory=lambda: WindowLimit(count=3))
    dry_run: bool = False
    approval: ApprovalSpec | None = Field(
        default=None,
        description="When set, a remediation whose guards pass waits for a listed approver "
        "(state `awaiting_approval`) instead of running (docs/playbooks.md#approvals).",
    )
    silence: SilenceSpec | None = Field(
        default=None,
        description="When set, the alert is silenced in Alertmanager while its remediation runs "
        "or awaits approval, and while the target it quarantined stays quarantined "
        "(docs/playbooks.md#silences).",
    )

    @field_validator("match")
    @classmethod
    def _matchers(cls, value: list[str]) -> list[str]:
        for item in value:
            parse(item)
        return value

    @field_validator("target")
    @classmethod
    def _template(cls, value: str) -> str:
        compile_template(value)
        return value

    def matchers(self) -> list[Matcher]:
        return [parse(item) for item in self.match]

    def target_template(self) -> Template:
        return compile_template(self.target)
