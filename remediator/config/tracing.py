"""Tracing: OpenTelemetry spans for intake, decision, guards, steps, verification and
notifications, exported by OTLP/HTTP when enabled (remediator/tracing.py builds them)."""

from __future__ import annotations

import re
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
HEADER_NAME = r"^[A-Za-z0-9-]{1,64}$"


class TracingConfig(BaseModel):
    """OpenTelemetry tracing: off by default (no exporter, no spans kept)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    DESTINATION: ClassVar[tuple[str, ...]] = ("otlp_endpoint",)

    enabled: bool = Field(
        default=False, description="Record spans (and export them if an endpoint is set)."
    )
    otlp_endpoint: str | None = Field(
        default=None,
        pattern=r"^https?://",
        description="OTLP/HTTP traces URL, e.g. `http://127.0.0.1:4318/v1/traces`; none: spans are "
        "recorded (ids in logs and exemplars) but not exported.",
    )
    headers_env: dict[str, str] = Field(
        default_factory=dict,
        description="Request headers for the exporter: header name -> the environment variable "
        "holding its value (never the value itself).",
    )
    service_name: str = Field(
        default="remediator",
        min_length=1,
        max_length=128,
        description="The `service.name` resource.",
    )
    sample_ratio: float = Field(
        default=1.0,
        ge=0,
        le=1,
        description="Share of new traces sampled; a continued `traceparent` keeps its caller's decision.",
    )

    @field_validator("headers_env")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        for header, env in value.items():
            if not re.fullmatch(HEADER_NAME, header):
                raise ValueError(f"headers_env: not a header name: {header!r}")
            if not re.fullmatch(ENV_NAME, env):
                raise ValueError(f"headers_env.{header}: not an environment variable name: {env!r}")
        return value
