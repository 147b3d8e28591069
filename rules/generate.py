#!/usr/bin/env python3
"""Write the Prometheus rule files in ``rules/`` for the default ``self_healing`` section.

A thin wrapper over :mod:`remediator.alertrules`, the code behind
``remediator rules --config FILE --out DIR``::

    .venv/bin/python rules/generate.py           # rewrite rules/*.rules.yml
    .venv/bin/python rules/generate.py --check   # exit 1 with a diff when the files are stale

The host, container and service thresholds and their groups' ``interval:`` are the defaults of
``self_healing`` (``remediator/config/model.py``); every ``for:``, severity and the other thresholds
are in ``remediator/alertrules/policies.py``. After changing either, run this script and adjust
the cases in ``rules/tests/*.test.yml`` that sit at the old boundary (they pin exact values and
rendered annotations on purpose). ``tests/test_rules.py`` fails when the committed rule files
differ from this script's output, so a hand edit of a ``*.rules.yml`` file is caught.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Final

from remediator import alertrules
from remediator.config.model import SelfHealingConfig

RULES_DIR: Final = Path(__file__).resolve().parent
POLICIES: Final = alertrules.POLICIES


def render() -> dict[str, str]:
    """File name -> content of every generated rule file."""
    return alertrules.render(SelfHealingConfig())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--check", action="store_true", help="do not write; exit 1 if a rule file is stale"
    )
    args = parser.parse_args(argv)
    status = alertrules.sync(RULES_DIR, render(), check=args.check, out=sys.stdout, label="rules/")
    if status:
        print("run .venv/bin/python rules/generate.py")
    return status


if __name__ == "__main__":
    sys.exit(main())
