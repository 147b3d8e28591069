"""remediator: turns Prometheus alerts into safe, audited, automatic recovery."""

__version__ = "0.1.0"
