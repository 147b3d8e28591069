"""The store's operations written once for both backends, together: each backend's store class
is these roles over its driver (remediator/store/sqlite.py, postgres_driver.py) plus
what it does its own way."""

from __future__ import annotations

from remediator.store.api_patterns import PatternOps
from remediator.store.approvals import ApprovalOps
from remediator.store.chain import ChainOps, OutboxOps
from remediator.store.episodes import EpisodeOps
from remediator.store.flags import FlagOps
from remediator.store.growth import GrowthOps
from remediator.store.guards import BreakerOps, GuardOps
from remediator.store.inbox import InboxOps
from remediator.store.intents import IntentOps
from remediator.store.quarantine import QuarantineOps
from remediator.store.reconciliation import ReconciliationOps
from remediator.store.remediations import RemediationOps
from remediator.store.silences import SilenceOps
from remediator.store.targets import TargetOps


class Roles(
    InboxOps,
    ChainOps,
    OutboxOps,
    EpisodeOps,
    GuardOps,
    RemediationOps,
    BreakerOps,
    FlagOps,
    TargetOps,
    QuarantineOps,
    IntentOps,
    PatternOps,
    ReconciliationOps,
    GrowthOps,
    ApprovalOps,
    SilenceOps,
):
    """Mixed into the store classes before their driver."""
