"""The Prometheus alerting and recording rules, rendered from the ``self_healing`` section.

remediator does not measure anything itself: Prometheus evaluates the thresholds. The alerts on
hosts, containers and services compare with ``self_healing``'s thresholds, and their rule groups
are evaluated every ``self_healing.check_interval`` (the group's ``interval:``).
``remediator rules --config FILE --out DIR`` writes them; ``rules/generate.py`` writes the
repository's ``rules/*.rules.yml`` from the defaults.

- :mod:`.policies`: when each alert fires (threshold, ``for:``, severity), from ``self_healing``.
- :mod:`.rulebook`: one alerting or recording rule from a policy.
- :mod:`.thresholds`: the host, container and service alerts (the ``self_healing`` thresholds).
- :mod:`.own`: the alerts on remediator itself and the recording rules.
- :mod:`.mixin`: the job selector, runbook URL pattern, extra labels and thresholds.
- :mod:`.queues`: the alerts on the queues of ``rq``, ``celery`` and ``rabbitmq`` targets.
- :mod:`.files`: the rule files, rendered, written or checked.
"""

from __future__ import annotations

from remediator.alertrules.files import render, sync
from remediator.alertrules.mixin import Mixin
from remediator.alertrules.policies import POLICIES, Policy, policies

__all__ = ["POLICIES", "Mixin", "Policy", "policies", "render", "sync"]
