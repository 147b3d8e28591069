"""``remediator store copy``: move a store to another backend (or file), then verify the copy."""

from __future__ import annotations

import argparse
import sys

from remediator.cli.loading import stored_config


def cmd_store_copy(args: argparse.Namespace) -> int:
    """Copy the store at ``--from`` into the empty store at ``--to`` (any backends), then verify
    the copy's audit chain with the recording policy ``serve`` would use."""
    import asyncio

    from remediator.engine import verifier as audit
    from remediator.errors import StoreUnavailable
    from remediator.store.copy import CopyRefused, copy_store

    stored = stored_config(args)
    if stored is None:
        return 2
    _, recording = stored
    try:
        copied = asyncio.run(copy_store(args.source, args.dest))
        verdict = asyncio.run(audit.verify_url(args.dest, recording))
    except (CopyRefused, ValueError) as exc:
        print(f"store copy: {exc}", file=sys.stderr)
        return 2
    except StoreUnavailable as exc:
        print(f"store copy: {exc.message}", file=sys.stderr)
        return 2
    tables = len([n for n in copied.rows.values() if n])
    print(f"copied {copied.total} rows of {tables} tables")
    print(verdict.line(), file=sys.stdout if verdict.ok else sys.stderr)
    return 0 if verdict.ok else 1
