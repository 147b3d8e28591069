"""``remediator quarantine``: list the quarantined targets, or lift one's quarantine."""

from __future__ import annotations

import argparse
import sys
import time

from remediator.audit.recording import Recording
from remediator.cli.loading import stored_config
from remediator.config import model as config_mod


def _quarantine_store(args: argparse.Namespace) -> tuple[config_mod.Config, Recording] | int:
    stored = stored_config(args)
    return 2 if stored is None else stored


def cmd_quarantine(args: argparse.Namespace) -> int:
    """List the quarantined targets, or lift one's quarantine, in the store ``serve`` would
    use (any backend: every replica sees it); lifting unpauses what the quarantine paused."""
    import asyncio
    import getpass

    from remediator.actions import builtin_actions
    from remediator.clients import Clients
    from remediator.engine import quarantine
    from remediator.errors import NotQuarantined, StoreUnavailable
    from remediator.store import create_store

    found = _quarantine_store(args)
    if isinstance(found, int):
        return found
    cfg, recording = found
    if args.quarantine_command == "lift" and not args.reason.strip():
        print("quarantine lift: --reason must not be empty", file=sys.stderr)
        return 2

    async def main() -> int:
        store = create_store(cfg.store.url)
        store.configure(recording)
        await store.open()
        clients = Clients()
        try:
            if args.quarantine_command == "list":
                states = await store.quarantined_targets()
                for state in states:
                    row = quarantine.state_json(state)
                    paused = " (paused)" if row["paused"] else ""
                    print(f"{row['target']}\t{row['quarantined_at']}\t{row['reason']}{paused}")
                if not states:
                    print("no target is quarantined", file=sys.stderr)
                return 0
            try:
                user = getpass.getuser()
            except (KeyError, OSError):
                user = "unknown"
            lifted = await quarantine.lift_in(
                store,
                args.target,
                actor=f"cli:{user}",
                reason=args.reason.strip(),
                now=time.time(),
                config=cfg,
                config_version=0,
                clients=clients,
                unpause=builtin_actions().get("docker.unpause"),
            )
        except NotQuarantined as exc:
            print(f"quarantine: {exc.message}", file=sys.stderr)
            return 1
        finally:
            await asyncio.to_thread(clients.close)
            await clients.aclose()
            await store.close()
        print(f"{args.target}: {lifted.detail}")
        return 0 if lifted.unpaused is not False else 1

    try:
        return asyncio.run(main())
    except StoreUnavailable as exc:
        print(f"quarantine: {exc.message}", file=sys.stderr)
        return 2
