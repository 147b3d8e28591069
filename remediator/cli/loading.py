"""How a command finds its configuration (``--config`` or ``REMEDIATOR_CONFIG``) and the
recording policy ``serve`` would use with it."""

from __future__ import annotations

import argparse
import os
import sys

from remediator.audit.recording import Recording
from remediator.config import model as config_mod
from remediator.errors import ConfigError


def config_path(arg: str | None) -> str | None:
    return arg or os.environ.get("REMEDIATOR_CONFIG") or None


def load_config(path: str | None) -> config_mod.Config:
    return config_mod.load(path) if path else config_mod.parse({})


def load_or_report(arg: str | None, *, prefix: str = "") -> config_mod.Config | None:
    """The configuration ``--config`` (or ``REMEDIATOR_CONFIG``) names; None, with one line per
    problem on stderr, when it is not valid."""
    try:
        return load_config(config_path(arg))
    except ConfigError as exc:
        for line in exc.problems:
            print(f"{prefix}{line}", file=sys.stderr)
        return None


def stored_config(
    args: argparse.Namespace,
) -> tuple[config_mod.Config, Recording] | None:
    """The configuration and the recording policy ``serve`` would use; None when not valid."""
    from remediator.config.auth import Authenticator
    from remediator.policy import recording_for

    cfg = load_or_report(args.config, prefix="config: ")
    if cfg is None:
        return None
    try:
        return cfg, recording_for(cfg, Authenticator([]))
    except ConfigError as exc:
        for line in exc.problems:
            print(f"config: {line}", file=sys.stderr)
        return None
