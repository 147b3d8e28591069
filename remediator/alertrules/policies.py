"""When each alert fires: a threshold, a ``for:`` duration and a severity.

The thresholds of the host, container and service alerts come from ``self_healing`` (percentages
there, ratios in PromQL); the others, and every ``for:`` and severity, are fixed here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Final, Literal

from remediator.config.model import SelfHealingConfig

Severity = Literal["critical", "warning", "info"]


@dataclass(frozen=True)
class Policy:
    """When an alert fires: value compared with ``threshold``, held for ``for_``."""

    threshold: float | None
    for_: str
    severity: Severity


# The thresholds of the alerts that :func:`thresholds` names are replaced by ``self_healing``'s.
_TABLE: Final[dict[str, Policy]] = {
    # Host (node_exporter). Ratios are 0..1.
    "HostMemoryHigh": Policy(0.85, "5m", "warning"),  # 1 - MemAvailable / MemTotal
    "HostDiskUsageHigh": Policy(0.90, "5m", "warning"),  # 1 - avail / size, writable fs
    "HostDiskFillingUp": Policy(0.80, "30m", "critical"),  # usage floor for the 4h prediction
    "HostCpuHigh": Policy(0.80, "10m", "warning"),  # 1 - idle share, all CPUs
    # Containers (cAdvisor).
    "ContainerMemoryHigh": Policy(0.85, "5m", "warning"),  # working set / memory limit
    "ContainerCpuHigh": Policy(0.80, "10m", "warning"),  # CPU used / CPU quota
    # Services (http_request_duration_seconds, http_requests_total).
    "ServiceLatencyHigh": Policy(5.0, "5m", "critical"),  # p99, seconds
    "ServiceErrorRateHigh": Policy(0.05, "5m", "critical"),  # 5xx / all requests
    # remediator itself (job="remediator").
    "RemediatorDown": Policy(None, "5m", "critical"),
    "RemediatorAbsent": Policy(None, "5m", "critical"),
    "RemediatorWebhookErrors": Policy(0.05, "10m", "critical"),  # 5xx / all webhook requests
    "RemediatorRemediationsFailing": Policy(0.25, "15m", "warning"),  # failure / (success+failure)
    "RemediatorCircuitBreakerOpen": Policy(None, "15m", "warning"),
    "RemediatorInboxBacklog": Policy(100, "10m", "warning"),  # stored, unprocessed alerts
    "RemediatorOutboxBacklog": Policy(50, "15m", "warning"),  # undelivered notifications
    "RemediatorNotificationsDead": Policy(0, "1m", "warning"),  # notifications given up, 30m
    "RemediatorEscalating": Policy(0, "1m", "warning"),  # escalations in the last 30m
    "RemediatorAuditWriteFailures": Policy(0, "1m", "critical"),  # lost audit events, 15m
    "RemediatorStoreWriteFailures": Policy(0, "5m", "critical"),  # failed commits in 5m
    "RemediatorWebhookRejected": Policy(0, "1m", "critical"),  # 4xx webhooks (lost), 15m
    "RemediatorConfigReloadFailed": Policy(None, "10m", "warning"),
    "RemediatorReconcileFailing": Policy(0.5, "15m", "warning"),  # failed / all rounds, 15m
    "RemediatorPaused": Policy(None, "1h", "warning"),  # kill switch on for longer than this
    "RemediatorStoreGrowing": Policy(1, "30m", "warning"),  # GiB a day, the last 6h's trend
    # Queues of rq, celery and rabbitmq targets (remediator_queue_*, issue 14).
    "QueueBacklogGrowing": Policy(100, "10m", "warning"),  # queued jobs, and growing over 15m
    "QueueFailedJobsRising": Policy(10, "5m", "warning"),  # more failed jobs in 15m
    "QueueNoConsumers": Policy(None, "10m", "critical"),  # waiting jobs, no consumer
    "QueuePaused": Policy(None, "15m", "warning"),
    "QueueOldestJobTooOld": Policy(1800, "10m", "warning"),  # seconds the head job waited
}
DISK_FULL_HORIZON_HOURS: Final = 4  # HostDiskFillingUp: predicted to be full within this
# node_exporter filesystems that are worth alerting on (no RAM-backed or image/overlay layers).
FS_SELECTOR: Final = 'fstype!~"tmpfs|ramfs|devtmpfs|overlay|squashfs|fuse.lxcfs"'


def thresholds(healing: SelfHealingConfig) -> dict[str, float]:
    """Alert name -> the threshold ``self_healing`` gives it, as the PromQL compares it."""
    return {
        "HostMemoryHigh": healing.memory_threshold / 100,
        "ContainerMemoryHigh": healing.memory_threshold / 100,
        "HostDiskUsageHigh": healing.disk_threshold / 100,
        "HostCpuHigh": healing.cpu_threshold / 100,
        "ContainerCpuHigh": healing.cpu_threshold / 100,
        "ServiceLatencyHigh": healing.response_time_threshold,
        "ServiceErrorRateHigh": healing.error_rate_threshold / 100,
    }


def policies(
    healing: SelfHealingConfig, overrides: Mapping[str, float] | None = None
) -> dict[str, Policy]:
    """Every alert's policy, with the thresholds of ``healing`` and then of ``overrides``
    (alert name -> threshold, as the PromQL compares it); ValueError names an alert that has
    no threshold."""
    given = thresholds(healing)
    for name, value in (overrides or {}).items():
        if name not in _TABLE or _TABLE[name].threshold is None:
            with_threshold = sorted(n for n, p in _TABLE.items() if p.threshold is not None)
            raise ValueError(
                f"threshold {name}: no such alert with a threshold (one of "
                f"{', '.join(with_threshold)})"
            )
        if not math.isfinite(value):
            raise ValueError(f"threshold {name}: {value} is not a finite number")
        given[name] = value
    return {
        name: replace(policy, threshold=given[name]) if name in given else policy
        for name, policy in _TABLE.items()
    }


POLICIES: Final = policies(SelfHealingConfig())  # for the default ``self_healing``
