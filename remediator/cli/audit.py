"""``remediator audit``: keygen, verify (against a public key and exported checkpoints), prune."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Literal, overload

from remediator.audit.recording import Recording
from remediator.cli.loading import config_path, load_config, stored_config

if TYPE_CHECKING:
    from remediator.engine.verifier import Trust


@overload
def _audit_target(
    args: argparse.Namespace, *, any_backend: Literal[False] = False
) -> tuple[Path, Recording] | int: ...


@overload
def _audit_target(
    args: argparse.Namespace, *, any_backend: Literal[True]
) -> tuple[Path | str, Recording] | int: ...


def _audit_target(
    args: argparse.Namespace, *, any_backend: bool = False
) -> tuple[Path | str, Recording] | int:
    """The store and recording policy exactly as ``serve`` would use them: the SQLite file's
    path, or (with ``any_backend``) the URL of another backend's store."""
    from remediator.store.sqlite import sqlite_path

    stored = stored_config(args)
    if stored is None:
        return 2
    cfg, recording = stored
    if not cfg.store.url.startswith("sqlite:"):
        if any_backend:
            return cfg.store.url, recording
        print("audit: only the sqlite store is supported by this command", file=sys.stderr)
        return 2
    return sqlite_path(cfg.store.url), recording


def _trust(args: argparse.Namespace, key_file: str | None) -> Trust | str:
    """What ``audit verify`` checks the chain against (``verifier.Trust``), or an error line:
    ``--public-key`` (default: the public half of ``audit.signing_key_file``) and the exported
    checkpoints of ``--checkpoint`` and ``--checkpoints``."""
    from remediator.audit import signing
    from remediator.engine.verifier import Trust

    exported: list[tuple[int, str]] = []
    try:
        for spec in args.checkpoint or []:
            exported.append(signing.parse_spec(spec))
        if args.checkpoints:
            exported += signing.parse_exported(Path(args.checkpoints).read_text())
        source = args.public_key or key_file
        public = signing.load_public(source) if source else None
    except OSError as exc:
        return f"{args.checkpoints}: cannot read: {exc.strerror}"
    except ValueError as exc:  # KeyFileError too
        return str(exc)
    if args.checkpoints and not exported:
        return f"{args.checkpoints}: no exported checkpoint in it"
    return Trust(public=public, exported=tuple(exported))


def cmd_audit_keygen(args: argparse.Namespace) -> int:
    """Write an Ed25519 signing key (0600) and its public key (``FILE.pub``)."""
    from remediator.audit.signing import keygen

    try:
        private, public = keygen(args.file)
    except FileExistsError:
        print(f"audit keygen: {args.file} exists; not overwritten", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"audit keygen: {args.file}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"signing key: {private} (keep it beside the configuration, mode 0600; set "
          f"audit.signing_key_file)\npublic key:  {public} (give it to whoever verifies: "
          "`remediator audit verify --public-key`)")  # fmt: skip
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    import asyncio

    from remediator.engine import verifier as audit
    from remediator.errors import StoreUnavailable

    found = _audit_target(args, any_backend=True)
    if isinstance(found, int):
        return found
    where, recording = found
    key_file = load_config(config_path(args.config)).audit.signing_key_file  # valid: read above
    trust = _trust(args, key_file)
    if isinstance(trust, str):
        print(f"audit: {trust}", file=sys.stderr)
        return 2
    if isinstance(where, Path):
        verdict = audit.verify(where, recording, trust)
    else:
        try:
            verdict = asyncio.run(audit.verify_url(where, recording, trust))
        except StoreUnavailable as exc:
            print(f"audit: {exc.message}", file=sys.stderr)
            return 2
    print(verdict.line(), file=sys.stdout if verdict.ok else sys.stderr)
    return 0 if verdict.ok else 1


def cmd_audit_prune(args: argparse.Namespace) -> int:
    """Prune the store ``serve`` would use: a SQLite file directly, any other backend (e.g. a
    PostgreSQL database several replicas share) through its store, in one transaction."""
    import asyncio

    from remediator.config.durations import parse_duration
    from remediator.engine import verifier as audit
    from remediator.errors import StoreUnavailable

    found = _audit_target(args, any_backend=True)
    if isinstance(found, int):
        return found
    where, recording = found
    try:
        age = parse_duration(args.older_than)
    except ValueError as exc:
        print(f"--older-than: {exc}", file=sys.stderr)
        return 2
    now = time.time()
    if isinstance(where, Path):
        if not where.exists():
            print(f"audit: no store at {where}", file=sys.stderr)
            return 2
        pruned = audit.prune(where, recording, before=now - age, now=now)
    else:
        try:
            pruned = asyncio.run(audit.prune_url(where, recording, before=now - age, now=now))
        except StoreUnavailable as exc:
            print(f"audit: {exc.message}", file=sys.stderr)
            return 2
    print(f"pruned {pruned} events older than {args.older_than}")
    return 0
