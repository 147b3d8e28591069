"""The alerts on hosts, containers and services: the ``self_healing`` thresholds."""

from __future__ import annotations

from typing import Any

from remediator.alertrules.rulebook import RuleBook


def host_rules(book: RuleBook) -> list[dict[str, Any]]:
    return [
        book.alert(
            "HostMemoryHigh",
            "1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes > %(threshold)s",
            summary="Host memory usage is high.",
            description="Memory usage on {{ $labels.instance }} is {{ $value | humanizePercentage }}"
            " (threshold %(threshold_pct)s) for more than %(for)s.",
        ),
        book.alert(
            "HostDiskUsageHigh",
            """
            (
              1 - node_filesystem_avail_bytes{%(fs)s}
                / node_filesystem_size_bytes{%(fs)s}
              > %(threshold)s
            )
            and
            node_filesystem_readonly{%(fs)s} == 0
            """,
            summary="Host filesystem is almost full.",
            description="Filesystem {{ $labels.mountpoint }} ({{ $labels.device }}) on {{ $labels.instance }}"
            " is {{ $value | humanizePercentage }} full (threshold %(threshold_pct)s).",
        ),
        book.alert(
            "HostDiskFillingUp",
            """
            (
              1 - node_filesystem_avail_bytes{%(fs)s}
                / node_filesystem_size_bytes{%(fs)s}
              > %(threshold)s
            )
            and
            predict_linear(node_filesystem_avail_bytes{%(fs)s}[6h], %(horizon_s)s) < 0
            and
            node_filesystem_readonly{%(fs)s} == 0
            """,
            summary="Host filesystem is predicted to be full within hours.",
            description="Filesystem {{ $labels.mountpoint }} ({{ $labels.device }}) on {{ $labels.instance }}"
            " is {{ $value | humanizePercentage }} full and, at the rate of the last 6h,"
            " will be full within %(horizon)s.",
        ),
        book.alert(
            "HostCpuHigh",
            """
            1 - avg without (cpu, mode) (rate(node_cpu_seconds_total{mode="idle"}[5m]))
            > %(threshold)s
            """,
            summary="Host CPU usage is high.",
            description="CPU usage on {{ $labels.instance }} is {{ $value | humanizePercentage }}"
            " (threshold %(threshold_pct)s) for more than %(for)s.",
        ),
    ]


def container_rules(book: RuleBook) -> list[dict[str, Any]]:
    # cAdvisor names a Docker container in `name`; remediator reads the target from `container`.
    return [
        book.alert(
            "ContainerMemoryHigh",
            """
            label_replace(
                container_memory_working_set_bytes{name!=""}
              / on (instance, job, name)
                (container_spec_memory_limit_bytes{name!=""} > 0),
              "container", "$1", "name", "(.+)"
            )
            > %(threshold)s
            """,
            summary="Container memory usage is close to its limit.",
            description="Container {{ $labels.container }} on {{ $labels.instance }} uses"
            " {{ $value | humanizePercentage }} of its memory limit"
            " (threshold %(threshold_pct)s) for more than %(for)s.",
        ),
        book.alert(
            "ContainerCpuHigh",
            """
            label_replace(
                sum by (instance, job, name) (rate(container_cpu_usage_seconds_total{name!=""}[5m]))
              / on (instance, job, name)
                (container_spec_cpu_quota{name!=""} / container_spec_cpu_period{name!=""} > 0),
              "container", "$1", "name", "(.+)"
            )
            > %(threshold)s
            """,
            summary="Container CPU usage is close to its quota.",
            description="Container {{ $labels.container }} on {{ $labels.instance }} uses"
            " {{ $value | humanizePercentage }} of its CPU quota"
            " (threshold %(threshold_pct)s) for more than %(for)s.",
        ),
    ]


def service_rules(book: RuleBook) -> list[dict[str, Any]]:
    return [
        book.alert(
            "ServiceLatencyHigh",
            """
            histogram_quantile(0.99,
              sum by (service, le) (rate(http_request_duration_seconds_bucket[5m]))
            )
            > %(threshold)s
            """,
            summary="Service p99 latency is high.",
            description="p99 latency of service {{ $labels.service }} is {{ $value | humanizeDuration }}"
            " (threshold %(threshold)ss) for more than %(for)s.",
        ),
        book.alert(
            "ServiceErrorRateHigh",
            """
            sum by (service) (rate(http_requests_total{code=~"5.."}[5m]))
              /
            sum by (service) (rate(http_requests_total[5m]))
            > %(threshold)s
            """,
            summary="Service error rate is high.",
            description="{{ $value | humanizePercentage }} of requests to service {{ $labels.service }}"
            " fail with 5xx (threshold %(threshold_pct)s) for more than %(for)s.",
        ),
    ]
