"""Generate remediator's Grafana dashboards from code.

Run ``python grafana/generate.py`` to (re)write every dashboard under ``grafana/dashboards/``;
``python grafana/generate.py --check`` writes nothing and exits 1, naming each file that differs
from what the generator produces (CI and ``tests/test_dashboards.py`` use that drift check).

Dashboards are built with ``grafana-foundation-sdk`` (Grafana 11.6 types) and written
deterministically: sorted keys, 2-space indent, a trailing newline, panel ids numbered in layout
order. Every panel reads from the templated ``${datasource}`` (type prometheus) and filters on the
``$job`` and ``$instance`` variables; the panels that read a recording rule of
``rules/recording.rules.yml`` filter on ``$job`` only (the rules sum over instances). Each panel
that shows what an alert watches links to that alert's section of ``docs/runbook.md``; every
remediation is an annotation. Beside each JSON file, a Kubernetes ConfigMap carries it with the
``grafana_dashboard`` label (what the Grafana sidecar of kube-prometheus-stack loads).

:func:`panel_queries` returns each panel's PromQL with the template variables replaced by
concrete values, so the expressions can be checked by promtool or run against a plain Prometheus.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash_b
from grafana_foundation_sdk.builders import prometheus as prom_b
from grafana_foundation_sdk.builders import stat as stat_b
from grafana_foundation_sdk.builders import statetimeline as timeline_b
from grafana_foundation_sdk.builders import timeseries as ts_b
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common, units
from grafana_foundation_sdk.models import dashboard as dash_m
from grafana_foundation_sdk.models import prometheus as prom_m

from remediator.alertrules.files import RuleDumper
from remediator.alertrules.mixin import RUNBOOK_URL_PATTERN

GRAFANA_DIR = Path(__file__).resolve().parent
DASHBOARDS_DIR = GRAFANA_DIR / "dashboards"

DATASOURCE = dash_m.DataSourceRef(type_val="prometheus", uid="${datasource}")

# Every series of every query is restricted to the selected job and instances.
SELECTOR = 'job="$job", instance=~"$instance"'

# What each template variable stands for when a query is run against a plain Prometheus.
PROMETHEUS_VALUES: Mapping[str, str] = {
    "__interval": "1m",
    "__range": "1h",
    "__rate_interval": "1m",
    "instance": ".*",
    "job": "remediator",
    "window": "1h",
}

_VARIABLE = re.compile(r"\$\{(?P<braced>\w+)(?::\w+)?\}|\$(?P<bare>\w+)")

# Panel sizes on Grafana's 24-column grid.
_STAT_WIDTH = 4
_STAT_HEIGHT = 5
_GRAPH_HEIGHT = 8


# The series of the recording rules (rules/recording.rules.yml) carry the job, not the instance.
JOB_ONLY = '{job="$job"}'


def sel(*matchers: str) -> str:
    """A label selector: the job/instance filter plus ``matchers`` (``'outcome="success"'``)."""
    return "{" + ", ".join((SELECTOR, *matchers)) + "}"


@dataclass(frozen=True)
class Query:
    """One PromQL target of a panel."""

    expr: str
    legend: str = ""


PanelBuilder = cogbuilder.Builder[dash_m.Panel]


def _targets(
    queries: Sequence[Query], *, instant: bool
) -> list[cogbuilder.Builder[cogvariants.Dataquery]]:
    targets: list[cogbuilder.Builder[cogvariants.Dataquery]] = []
    for index, query in enumerate(queries):
        target = (
            prom_b.Dataquery()
            .datasource(DATASOURCE)
            .ref_id(chr(ord("A") + index))
            .expr(query.expr)
            .editor_mode(prom_m.QueryEditorMode.CODE)
            .legend_format(query.legend or "__auto")
        )
        targets.append(target.instant() if instant else target.range())
    return targets


def _thresholds(*steps: tuple[float | None, str]) -> dash_b.ThresholdsConfig:
    return (
        dash_b.ThresholdsConfig()
        .mode(dash_m.ThresholdsMode.ABSOLUTE)
        .steps([dash_m.Threshold(value=value, color=color) for value, color in steps])
    )


def _value_map(*entries: tuple[int, str, str]) -> list[dash_m.ValueMapping]:
    """Value mappings: (value, text, color)."""
    return [
        dash_m.ValueMap(
            options={
                str(value): dash_m.ValueMappingResult(text=text, color=color, index=index)
                for index, (value, text, color) in enumerate(entries)
            }
        )
    ]


def timeseries(
    title: str,
    description: str,
    unit: str,
    queries: Sequence[Query],
    *,
    width: int = 12,
    bars: bool = False,
    ratio: bool = False,
) -> ts_b.Panel:
    """A time series panel; ``bars`` for counts of rare events, ``ratio`` pins the axis to 0-1."""
    panel = (
        ts_b.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(DATASOURCE)
        .targets(_targets(queries, instant=False))
        .span(width)
        .height(_GRAPH_HEIGHT)
        .legend(
            common_b.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs(["mean", "max", "lastNotNull"])
        )
        .tooltip(
            common_b.VizTooltipOptions()
            .mode(common.TooltipDisplayMode.MULTI)
            .sort(common.SortOrder.DESCENDING)
        )
        .fill_opacity(10)
        .line_width(1)
        .show_points(common.VisibilityMode.NEVER)
        .span_nulls(False)
    )
    if bars:
        panel = panel.draw_style(common.GraphDrawStyle.BARS).fill_opacity(80)
    return panel.min(0).max(1) if ratio else panel.min(0)


def stat(
    title: str,
    description: str,
    unit: str,
    query: Query,
    *,
    thresholds: dash_b.ThresholdsConfig | None = None,
    mappings: list[dash_m.ValueMapping] | None = None,
    ratio: bool = False,
    decimals: int | None = None,
    instant: bool = False,
) -> stat_b.Panel:
    """A single-value panel coloured by thresholds or value mappings.

    Range queries get a sparkline; ``instant`` queries (aggregates over ``$__range``) do not.
    """
    panel = (
        stat_b.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(DATASOURCE)
        .targets(_targets([query], instant=instant))
        .span(_STAT_WIDTH)
        .height(_STAT_HEIGHT)
        .graph_mode(common.BigValueGraphMode.NONE if instant else common.BigValueGraphMode.AREA)
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .text_mode(common.BigValueTextMode.VALUE)
        .reduce_options(common_b.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .thresholds(thresholds or _thresholds((None, "green")))
    )
    if mappings is not None:
        panel = panel.mappings(mappings)
    if ratio:
        panel = panel.min(0).max(1)
    if decimals is not None:
        panel = panel.decimals(decimals)
    return panel


def state_timeline(
    title: str,
    description: str,
    query: Query,
    *,
    mappings: list[dash_m.ValueMapping],
    thresholds: dash_b.ThresholdsConfig,
) -> timeline_b.Panel:
    """A state timeline: one lane per series, each state coloured by its value mapping."""
    return (
        timeline_b.Panel()
        .title(title)
        .description(description)
        .unit(units.NoUnit)
        .datasource(DATASOURCE)
        .targets(_targets([query], instant=False))
        .span(12)
        .height(_GRAPH_HEIGHT)
        .mappings(mappings)
        .thresholds(thresholds)
        .color_scheme(dash_b.FieldColor().mode(dash_m.FieldColorModeId.THRESHOLDS))
        .show_value(common.VisibilityMode.AUTO)
        .merge_values(True)
        .row_height(0.9)
        .fill_opacity(80)
        .legend(
            common_b.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
    )


def _quantiles(metric: str, by: str, quantiles: Sequence[float], window: str) -> list[Query]:
    """``histogram_quantile`` of a histogram's buckets, one query per quantile."""
    group = f"{by}, le" if by else "le"
    label = "{{" + by + "}} " if by else ""
    return [
        Query(
            f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket{sel()}[{window}])))",
            f"{label}p{round(q * 100)}",
        )
        for q in quantiles
    ]


def _variables() -> list[cogbuilder.Builder[dash_m.VariableModel]]:
    return [
        dash_b.DatasourceVariable("datasource")
        .label("Data source")
        .type("prometheus")
        .current(dash_m.VariableOption(text="Prometheus", value="prometheus", selected=True)),
        dash_b.QueryVariable("job")
        .label("Job")
        .description("Prometheus job label of the remediator scrape.")
        .datasource(DATASOURCE)
        .query("label_values(remediator_paused, job)")
        .refresh(dash_m.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dash_m.VariableSort.ALPHABETICAL_ASC)
        .current(dash_m.VariableOption(text="remediator", value="remediator", selected=True)),
        dash_b.QueryVariable("instance")
        .label("Instance")
        .description("remediator instances to include (all by default).")
        .datasource(DATASOURCE)
        .query('label_values(remediator_paused{job="$job"}, instance)')
        .refresh(dash_m.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dash_m.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(dash_m.VariableOption(text="All", value="$__all", selected=True)),
        dash_b.IntervalVariable("window")
        .label("Window")
        .description(
            "Sliding window for the action-duration quantiles, which are built from rare "
            "events and need more than a scrape interval or two."
        )
        .values("15m,1h,6h,1d")
        .current(dash_m.VariableOption(text="1h", value="1h", selected=True))
        .options(
            [
                dash_m.VariableOption(text=value, value=value, selected=value == "1h")
                for value in ("15m", "1h", "6h", "1d")
            ]
        ),
    ]


BREAKER_MAPPINGS = _value_map(
    (0, "closed", "green"), (1, "half-open", "yellow"), (2, "open", "red")
)
BREAKER_THRESHOLDS = (None, "green"), (1, "yellow"), (2, "red")
SUCCEEDED = 'outcome="success"'
ATTEMPTED = 'outcome=~"success|failure"'


def _overview_rows() -> list[tuple[str, list[PanelBuilder]]]:
    """The overview dashboard: (row title, panels) in display order."""
    status: list[PanelBuilder] = [
        stat(
            "Paused (kill switch)",
            "remediator_paused: 1 while the global kill switch stops every recovery action. "
            "Alerts are still received and stored, but nothing is remediated.",
            units.NoUnit,
            Query(f"max(remediator_paused{sel()})"),
            mappings=_value_map((0, "running", "green"), (1, "PAUSED", "red")),
            thresholds=_thresholds((None, "green"), (1, "red")),
        ),
        stat(
            "Remediation success rate",
            "Share of remediations that succeeded over the dashboard's time range: "
            "success / (success + failure) of remediator_remediations_total, which counts each "
            "remediation once, however many attempts and steps it took; the same number as "
            "success_rate.overall of /api/v1/recovery/statistics over that window. Dry runs and "
            "runs interrupted by a restart are left out of both sides.",
            units.PercentUnit,
            Query(
                f"sum(increase(remediator_remediations_total{sel(SUCCEEDED)}"
                f"[$__range])) / sum(increase(remediator_remediations_total{sel(ATTEMPTED)}"
                "[$__range]))"
            ),
            thresholds=_thresholds((None, "red"), (0.8, "yellow"), (0.95, "green")),
            ratio=True,
            decimals=1,
            instant=True,
        ),
        stat(
            "Mean time to recovery",
            "Mean time from an alert's startsAt to its recovery over the dashboard's time "
            "range (sum / count of remediator_time_to_recovery_seconds).",
            units.Seconds,
            Query(
                "sum(increase(remediator_time_to_recovery_seconds_sum"
                f"{sel()}[$__range])) / sum(increase("
                f"remediator_time_to_recovery_seconds_count{sel()}[$__range]))"
            ),
            thresholds=_thresholds((None, "green"), (300, "yellow"), (1800, "red")),
            instant=True,
        ),
        stat(
            "Open circuit breakers",
            "Targets whose circuit breaker is open now (remediator_circuit_breaker_state == 2): "
            "remediator will not act on them until the breaker half-opens.",
            units.Short,
            Query(
                "count(max by (target) "
                f"(remediator_circuit_breaker_state{sel()}) == 2) or vector(0)"
            ),
            thresholds=_thresholds((None, "green"), (1, "red")),
            decimals=0,
        ),
        stat(
            "Inbox pending",
            "remediator_inbox_pending: alerts stored by the webhook and not yet processed by "
            "the worker. A value that keeps growing means the worker is stuck or too slow.",
            units.Short,
            Query(f"sum(remediator_inbox_pending{sel()})"),
            thresholds=_thresholds((None, "green"), (10, "yellow"), (100, "red")),
            decimals=0,
        ),
        stat(
            "Outbox pending",
            "remediator_outbox_pending: notifications stored and not yet delivered. A value "
            "that keeps growing means a notification channel is failing.",
            units.Short,
            Query(f"sum(remediator_outbox_pending{sel()})"),
            thresholds=_thresholds((None, "green"), (10, "yellow"), (100, "red")),
            decimals=0,
        ),
    ]
    recovery: list[PanelBuilder] = [
        timeseries(
            "Time to recovery p50/p90 by playbook",
            "Median and 90th percentile of the time from an alert's startsAt to its recovery, "
            "per playbook, over the last hour, across the job's instances: the recording rules "
            "playbook:remediator_time_to_recovery_seconds:p50_rate1h and :p90_rate1h.",
            units.Seconds,
            [
                Query(
                    f"playbook:remediator_time_to_recovery_seconds:p50_rate1h{JOB_ONLY}",
                    "{{playbook}} p50",
                ),
                Query(
                    f"playbook:remediator_time_to_recovery_seconds:p90_rate1h{JOB_ONLY}",
                    "{{playbook}} p90",
                ),
            ],
        ),
        timeseries(
            "Mean time to recovery by playbook",
            "Mean time from an alert's startsAt to its recovery, per playbook, over the last "
            "hour, across the job's instances: the recording rule "
            "playbook:remediator_time_to_recovery_seconds:mean1h.",
            units.Seconds,
            [
                Query(
                    f"playbook:remediator_time_to_recovery_seconds:mean1h{JOB_ONLY}",
                    "{{playbook}}",
                )
            ],
        ),
        timeseries(
            "Remediation success rate by playbook",
            "Per playbook, remediations that succeeded / (succeeded + failed), each counted "
            "once (remediator_remediations_total), over the last hour, across the job's "
            "instances: the recording rules playbook: and "
            "job:remediator_remediations_success_per_remediations:ratio_rate1h. Dry runs are "
            "left out.",
            units.PercentUnit,
            [
                Query(
                    "playbook:remediator_remediations_success_per_remediations:ratio_rate1h"
                    + JOB_ONLY,
                    "{{playbook}}",
                ),
                Query(
                    "job:remediator_remediations_success_per_remediations:ratio_rate1h" + JOB_ONLY,
                    "all playbooks",
                ),
            ],
            ratio=True,
        ),
        timeseries(
            "Step attempts by action and outcome",
            "Rate of playbook steps run (remediator_action_attempts_total), per action and "
            "outcome (success, failure, dry_run). Every attempt counts: a remediation that "
            "succeeded on its third attempt adds the failed steps of the first two.",
            units.OpsPerSecond,
            [
                Query(
                    "sum by (action, outcome) "
                    f"(rate(remediator_action_attempts_total{sel()}[$__rate_interval]))",
                    "{{action}} {{outcome}}",
                )
            ],
        ),
        timeseries(
            "Action duration p50/p90 by action",
            "Median and 90th percentile duration of recovery actions, per action, from the "
            "remediator_action_duration_seconds histogram over the sliding $window.",
            units.Seconds,
            _quantiles("remediator_action_duration_seconds", "action", (0.5, 0.9), "$window"),
            width=24,
        ),
    ]
    safety: list[PanelBuilder] = [
        state_timeline(
            "Circuit breaker state per target",
            "remediator_circuit_breaker_state per target: closed (0) acts normally, half-open "
            "(1) lets one trial action through, open (2) blocks actions on the target.",
            Query(f"max by (target) (remediator_circuit_breaker_state{sel()})", "{{target}}"),
            mappings=BREAKER_MAPPINGS,
            thresholds=_thresholds(*BREAKER_THRESHOLDS),
        ),
        timeseries(
            "Circuit breaker trips by target",
            "Times a target's circuit breaker opened (remediator_circuit_breaker_trips_total), "
            "counted per query interval.",
            units.Short,
            [
                Query(
                    "sum by (target) (increase("
                    f"remediator_circuit_breaker_trips_total{sel()}[$__rate_interval]))",
                    "{{target}}",
                )
            ],
            bars=True,
        ),
        timeseries(
            "Guard blocks by reason",
            "Remediations stopped by a safety guard (remediator_guard_blocks_total), per "
            "reason, counted per query interval.",
            units.Short,
            [
                Query(
                    "sum by (reason) "
                    f"(increase(remediator_guard_blocks_total{sel()}[$__rate_interval]))",
                    "{{reason}}",
                )
            ],
            bars=True,
        ),
        timeseries(
            "Escalations by reason",
            "Escalations sent to humans (remediator_escalations_total), per reason, counted "
            "per query interval.",
            units.Short,
            [
                Query(
                    "sum by (reason) "
                    f"(increase(remediator_escalations_total{sel()}[$__rate_interval]))",
                    "{{reason}}",
                )
            ],
            bars=True,
        ),
        timeseries(
            "Approvals by outcome",
            "Approval requests decided (remediator_approvals_total), per outcome (approved, "
            "denied, expired, cancelled, skipped), counted per query interval.",
            units.Short,
            [
                Query(
                    "sum by (outcome) "
                    f"(increase(remediator_approvals_total{sel()}[$__rate_interval]))",
                    "{{outcome}}",
                )
            ],
            bars=True,
        ),
        timeseries(
            "Approval wait (p90)",
            "Time from an approval request to its decision "
            "(remediator_approval_wait_seconds), 90th percentile.",
            units.Seconds,
            [
                Query(
                    "histogram_quantile(0.9, sum by (le) "
                    f"(rate(remediator_approval_wait_seconds_bucket{sel()}[$__rate_interval])))",
                    "p90",
                )
            ],
        ),
    ]
    intake: list[PanelBuilder] = [
        timeseries(
            "Alerts received by status",
            "Rate of alerts received from Alertmanager (remediator_alerts_received_total), "
            "per the alert's own status (firing, resolved).",
            units.EventsPerSecond,
            [
                Query(
                    "sum by (status) "
                    f"(rate(remediator_alerts_received_total{sel()}[$__rate_interval]))",
                    "{{status}}",
                )
            ],
        ),
        timeseries(
            "Duplicate alerts",
            "Rate of alerts received again in a state already stored "
            "(remediator_alerts_duplicate_total): Alertmanager re-sends, deduplicated.",
            units.EventsPerSecond,
            [
                Query(
                    f"sum(rate(remediator_alerts_duplicate_total{sel()}[$__rate_interval]))",
                    "duplicates",
                )
            ],
        ),
        timeseries(
            "Webhook latency p99",
            "99th percentile time to accept an Alertmanager webhook request, durable commit "
            "included, over 5m across the job's instances: the recording rule "
            "job:remediator_webhook_request_duration_seconds:p99_rate5m.",
            units.Seconds,
            [Query(f"job:remediator_webhook_request_duration_seconds:p99_rate5m{JOB_ONLY}", "p99")],
        ),
        timeseries(
            "Webhook requests by code",
            "Rate of Alertmanager webhook requests (remediator_webhook_requests_total), per "
            "HTTP status code. 503 means the store could not commit the alerts.",
            units.RequestsPerSecond,
            [
                Query(
                    "sum by (code) "
                    f"(rate(remediator_webhook_requests_total{sel()}[$__rate_interval]))",
                    "{{code}}",
                )
            ],
        ),
        timeseries(
            "Inbox and outbox pending",
            "Work stored and not yet done: alerts not yet processed by the worker "
            "(remediator_inbox_pending) and notifications not yet delivered "
            "(remediator_outbox_pending).",
            units.Short,
            [
                Query(f"sum(remediator_inbox_pending{sel()})", "inbox"),
                Query(f"sum(remediator_outbox_pending{sel()})", "outbox"),
            ],
        ),
        timeseries(
            "Store and audit write failures",
            "Rate of store transactions that failed to commit "
            "(remediator_store_write_failures_total; the webhook answered 503) and of audit "
            "events that could not be written (remediator_audit_write_failures_total).",
            units.OpsPerSecond,
            [
                Query(
                    f"sum(rate(remediator_store_write_failures_total{sel()}[$__rate_interval]))",
                    "store",
                ),
                Query(
                    f"sum(rate(remediator_audit_write_failures_total{sel()}[$__rate_interval]))",
                    "audit",
                ),
            ],
        ),
        timeseries(
            "Audit chain check",
            "remediator_audit_chain_ok: 1 while the audit chain verified at the last check "
            "(every audit.verify_interval), 0 once it is broken (run remediator audit verify); "
            "and the seconds since each instance last checked it "
            "(remediator_audit_chain_last_check_timestamp_seconds).",
            units.Short,
            [
                Query(f"min by (instance) (remediator_audit_chain_ok{sel()})", "{{instance}} ok"),
                Query(
                    f"time() - max by (instance) "
                    f"(remediator_audit_chain_last_check_timestamp_seconds{sel()})",
                    "{{instance}} seconds since the check",
                ),
            ],
        ),
    ]
    notifications: list[PanelBuilder] = [
        timeseries(
            "Notification delivery by channel and outcome",
            "Rate of notification deliveries (remediator_notifications_total), per channel "
            "and outcome: sent, retry (will be tried again) or dead (given up).",
            units.EventsPerSecond,
            [
                Query(
                    "sum by (channel, outcome) "
                    f"(rate(remediator_notifications_total{sel()}[$__rate_interval]))",
                    "{{channel}} {{outcome}}",
                )
            ],
            width=24,
        ),
    ]
    targets: list[PanelBuilder] = [
        state_timeline(
            "Target up per target",
            "remediator_target_up per target: up (1) when the target's last health check "
            "passed, down (0) when it failed.",
            Query(f"min by (target) (remediator_target_up{sel()})", "{{target}}"),
            mappings=_value_map((0, "down", "red"), (1, "up", "green")),
            thresholds=_thresholds((None, "red"), (1, "green")),
        ),
        timeseries(
            "Target check duration p50/p90 by target",
            "Median and 90th percentile duration of target health checks, per target "
            "(remediator_target_check_duration_seconds).",
            units.Seconds,
            _quantiles(
                "remediator_target_check_duration_seconds", "target", (0.5, 0.9), "$__rate_interval"
            ),
        ),
    ]
    monitoring: list[PanelBuilder] = [
        timeseries(
            "Webhooks refused (4xx) by reason",
            "Alertmanager webhook requests refused with a 4xx (remediator_webhook_rejected_total), "
            "per error code, counted per query interval. Alertmanager does not retry them: "
            "the alerts they carried are lost.",
            units.Short,
            [
                Query(
                    "sum by (reason) "
                    f"(increase(remediator_webhook_rejected_total{sel()}[$__rate_interval]))",
                    "{{reason}}",
                )
            ],
            bars=True,
        ),
        timeseries(
            "Reconcile rounds by outcome",
            "Rounds of reconciliation with Alertmanager (remediator_reconcile_rounds_total), "
            "per outcome: success, failure, or standby (another replica holds the lease).",
            units.OpsPerSecond,
            [
                Query(
                    "sum by (outcome) "
                    f"(rate(remediator_reconcile_rounds_total{sel()}[$__rate_interval]))",
                    "{{outcome}}",
                )
            ],
        ),
        timeseries(
            "Alertmanager silences active",
            "Silences remediator made in Alertmanager and has not expired yet "
            "(remediator_silences_active): alerts it handles now (playbooks with silence:).",
            units.Short,
            [Query(f"max(remediator_silences_active{sel()})", "silences")],
        ),
        timeseries(
            "Silence requests by outcome",
            "Requests to Alertmanager's silences API (remediator_silence_requests_total), per "
            "operation (create, expire, list) and outcome (success, failure).",
            units.OpsPerSecond,
            [
                Query(
                    "sum by (operation, outcome) "
                    f"(rate(remediator_silence_requests_total{sel()}[$__rate_interval]))",
                    "{{operation}} {{outcome}}",
                )
            ],
        ),
        timeseries(
            "Store size per instance",
            "Bytes the store takes on disk per instance (remediator_store_size_bytes: the SQLite "
            "files, or the PostgreSQL database), exported each minute; retention keeps it flat.",
            units.BytesIEC,
            [Query(f"max by (instance) (remediator_store_size_bytes{sel()})", "{{instance}}")],
        ),
        state_timeline(
            "Configuration reload per instance",
            "remediator_config_last_reload_successful per instance: ok (1) when the last reload "
            "of the configuration file (SIGHUP, POST /-/reload) succeeded or none was tried, "
            "failed (0) while the file on disk does not load.",
            Query(
                f"min by (instance) (remediator_config_last_reload_successful{sel()})",
                "{{instance}}",
            ),
            mappings=_value_map((0, "failed", "red"), (1, "ok", "green")),
            thresholds=_thresholds((None, "red"), (1, "green")),
        ),
    ]
    return [
        ("Status", status),
        ("Recovery", recovery),
        ("Safety", safety),
        ("Intake", intake),
        ("Notifications", notifications),
        ("Targets", targets),
        ("Self-monitoring", monitoring),
        ("Queues", _queue_panels()),
    ]


# Panel title -> the alerts whose runbook sections it links to (the panel shows what they watch).
# RemediatorDown and RemediatorAbsent have none: while they fire there is no series to show.
RUNBOOK_LINKS: Mapping[str, tuple[str, ...]] = {
    "Paused (kill switch)": ("RemediatorPaused",),
    "Open circuit breakers": ("RemediatorCircuitBreakerOpen",),
    "Inbox pending": ("RemediatorInboxBacklog",),
    "Outbox pending": ("RemediatorOutboxBacklog",),
    "Remediation success rate by playbook": ("RemediatorRemediationsFailing",),
    "Circuit breaker state per target": ("RemediatorCircuitBreakerOpen",),
    "Escalations by reason": ("RemediatorEscalating",),
    "Webhook requests by code": ("RemediatorWebhookErrors",),
    "Store and audit write failures": (
        "RemediatorStoreWriteFailures",
        "RemediatorAuditWriteFailures",
    ),
    "Notification delivery by channel and outcome": ("RemediatorNotificationsDead",),
    "Webhooks refused (4xx) by reason": ("RemediatorWebhookRejected",),
    "Reconcile rounds by outcome": ("RemediatorReconcileFailing",),
    "Configuration reload per instance": ("RemediatorConfigReloadFailed",),
    "Store size per instance": ("RemediatorStoreGrowing",),
}


def runbook_links(title: str) -> list[dash_m.DashboardLink]:
    """The links of a panel to the runbook sections of the alerts it shows."""
    return [
        dash_m.DashboardLink(
            title=f"Runbook: {alert}",
            type_val=dash_m.DashboardLinkType.LINK,
            url=RUNBOOK_URL_PATTERN % alert.lower(),
            target_blank=True,
        )
        for alert in RUNBOOK_LINKS.get(title, ())
    ]


# Every remediation as an annotation: a point wherever a playbook finished one in the minute
# before, titled with its playbook and outcome.
REMEDIATIONS_ANNOTATION = (
    f"sum by (playbook, outcome) (increase(remediator_remediations_total{sel()}[1m])) > 0"
)


class PrometheusAnnotation(dash_m.AnnotationQuery):
    """An annotation query on the Prometheus data source, with the fields of that data source
    the SDK's model does not carry (title and text templates, tags from labels, step)."""

    def __init__(self, *, name: str, expr: str, title: str, text: str, tag_keys: str) -> None:
        super().__init__(
            name=name, datasource=DATASOURCE, enable=True, hide=False,
            icon_color="rgba(255, 152, 48, 1)", expr=expr,
        )  # fmt: skip
        self.prometheus = {
            "step": "1m",
            "titleFormat": title,
            "textFormat": text,
            "tagKeys": tag_keys,
            "useValueForTime": False,
        }

    def to_json(self) -> dict[str, object]:
        return {**super().to_json(), **self.prometheus}


def annotation_queries() -> list[tuple[str, str]]:
    """(annotation name, PromQL) of every dashboard's Prometheus annotations, substituted."""
    return [
        (query.name, substitute(query.expr or ""))
        for _, build in sorted(DASHBOARDS.items())
        for query in (build().annotations.list_val or [])
        if isinstance(query, PrometheusAnnotation)
    ]


def _queue_panels() -> list[PanelBuilder]:
    from grafana.queues import queue_panels  # the row's own module (it imports this one)

    return queue_panels()


def overview() -> dash_m.Dashboard:
    """The ``remediator-overview`` dashboard."""
    builder = (
        dash_b.Dashboard("remediator overview")
        .uid("remediator-overview")
        .description(
            "remediator: alerts received, recoveries run, their outcome and time to recovery, "
            "safety guards, notifications and target health."
        )
        .tags(["remediator"])
        .editable()
        .tooltip(dash_m.DashboardCursorSync.CROSSHAIR)
        .time("now-6h", "now")
        .refresh("30s")
        .timezone("browser")
        .annotation(
            dash_b.AnnotationQuery()
            .name("Annotations & Alerts")
            .datasource(dash_m.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
            .enable(True)
            .hide(True)
            .icon_color("rgba(0, 211, 255, 1)")
            .type("dashboard")
            .built_in(1)
        )
        .variables(_variables())
    )
    for title, panels in _overview_rows():
        builder = builder.with_row(dash_b.Row(title))
        for panel in panels:
            builder = builder.with_panel(panel)
    model = builder.build()
    for number, panel_model in enumerate(model.panels or [], start=1):
        panel_model.id_val = number
    for panel_model in _panels(model):
        links = runbook_links(panel_model.title or "")
        if links:
            panel_model.links = links
    annotations = model.annotations.list_val or []
    annotations.append(
        PrometheusAnnotation(
            name="Remediations",
            expr=REMEDIATIONS_ANNOTATION,
            title="{{playbook}}: {{outcome}}",
            text="remediation by playbook {{playbook}} ended with {{outcome}}",
            tag_keys="playbook,outcome",
        )
    )
    model.annotations.list_val = annotations
    return model


# Output file name (under grafana/dashboards/) -> dashboard.
DASHBOARDS = {"remediator-overview.json": overview}


def render(model: dash_m.Dashboard) -> str:
    """A dashboard as deterministic JSON: sorted keys, 2-space indent, trailing newline."""
    return json.dumps(model, cls=JSONEncoder, sort_keys=True, indent=2) + "\n"


CONFIGMAP_HEADER = """\
# Generated by grafana/generate.py from the dashboard JSON beside it. Do not edit by hand.
# For Kubernetes: the Grafana sidecar (kube-prometheus-stack: grafana.sidecar.dashboards)
# loads every ConfigMap labelled grafana_dashboard. Apply it in the namespace it watches.
"""


def configmap(name: str, text: str) -> str:
    """A Kubernetes ConfigMap that carries dashboard file ``name`` (content ``text``)."""
    doc = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"grafana-dashboard-{name.removesuffix('.json')}",
            "labels": {
                "grafana_dashboard": "1",
                "app.kubernetes.io/name": "remediator",
                "app.kubernetes.io/part-of": "remediator",
            },
        },
        "data": {name: text},
    }
    body = yaml.dump(doc, Dumper=RuleDumper, sort_keys=False, width=10_000, allow_unicode=True)
    return CONFIGMAP_HEADER + body


def rendered() -> dict[str, str]:
    """Every dashboard file's name and its expected content."""
    return {name: render(build()) for name, build in sorted(DASHBOARDS.items())}


def outputs() -> dict[str, str]:
    """Every file the generator writes: each dashboard's JSON followed by its ConfigMap
    (``NAME.configmap.yml``)."""
    out: dict[str, str] = {}
    for name, text in rendered().items():
        out[name] = text
        out[name.removesuffix(".json") + ".configmap.yml"] = configmap(name, text)
    return out


def substitute(expr: str, values: Mapping[str, str] = PROMETHEUS_VALUES) -> str:
    """Replace Grafana template variables (``$x``, ``${x}``, ``${x:fmt}``) by ``values``."""

    def replace(match: re.Match[str]) -> str:
        name = match.group("braced") or match.group("bare")
        if name not in values:
            raise KeyError(f"no value for template variable ${name} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(replace, expr)


def _panels(model: dash_m.Dashboard) -> Iterator[dash_m.Panel]:
    for panel in model.panels or []:
        if isinstance(panel, dash_m.RowPanel):
            yield from panel.panels
        else:
            yield panel


def panel_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every query of every dashboard, variables substituted."""
    queries: list[tuple[str, str]] = []
    for _, build in sorted(DASHBOARDS.items()):
        for panel in _panels(build()):
            for target in panel.targets or []:
                if not isinstance(target, prom_m.Dataquery):
                    raise TypeError(f"panel {panel.title!r} has a non-Prometheus target")
                queries.append((panel.title or "", substitute(target.expr)))
    return queries


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 and name the files that differ from the generator's output",
    )
    args = parser.parse_args(argv)
    expected = outputs()
    if args.check:
        stale = [
            name
            for name, text in expected.items()
            if not (DASHBOARDS_DIR / name).is_file()
            or (DASHBOARDS_DIR / name).read_text(encoding="utf-8") != text
        ]
        extra = sorted(
            path.name
            for pattern in ("*.json", "*.configmap.yml")
            for path in DASHBOARDS_DIR.glob(pattern)
            if path.name not in expected
        )
        for name in stale:
            print(f"differs: grafana/dashboards/{name}", file=sys.stderr)
        for name in extra:
            print(f"not generated: grafana/dashboards/{name}", file=sys.stderr)
        if stale or extra:
            print("run: python grafana/generate.py", file=sys.stderr)
            return 1
        return 0
    DASHBOARDS_DIR.mkdir(parents=True, exist_ok=True)
    for name, text in expected.items():
        path = DASHBOARDS_DIR / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            print(f"wrote grafana/dashboards/{name}")
    return 0


if __name__ == "__main__":
    # Run as a script: the repository root on the path, so the rows kept in modules beside this
    # one (``grafana.queues``) import as they do in the tests.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main())
