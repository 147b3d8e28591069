"""``remediator approvals list|approve ID|deny ID``: the approvals of a running remediator.

It talks to the server's HTTP API (any replica: the store decides once), so that an approval
runs where remediations run, with the guards checked again: ``--url`` (or
``REMEDIATOR_URL``, default ``http://127.0.0.1:9095``) and a token from ``--token-file`` or
``REMEDIATOR_TOKEN`` — a token with role ``approver`` listed in the playbook's
``approval.approvers``, or ``admin``. Decisions are recorded with channel ``cli``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

DEFAULT_URL = "http://127.0.0.1:9095"  # server.port by default
PATH = "/api/v1/recovery/approvals"
TIMEOUT = 15.0


class _Failed(Exception):
    pass


def _token(args: argparse.Namespace) -> str:
    if args.token_file:
        try:
            return Path(args.token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise _Failed(f"--token-file: cannot read: {exc.strerror}") from None
    token = os.environ.get("REMEDIATOR_TOKEN", "").strip()
    if not token:
        raise _Failed("give --token-file or set REMEDIATOR_TOKEN")
    return token


def _call(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    base = (args.url or os.environ.get("REMEDIATOR_URL") or DEFAULT_URL).rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise _Failed(f"--url: not an http(s) address: {base}")
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(  # noqa: S310 -- the scheme is checked above
        base + path, data=data, method=method
    )
    request.add_header("Authorization", f"Bearer {_token(args)}")
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:  # noqa: S310
            return json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as exc:
        raise _Failed(f"HTTP {exc.code}: {_problem(exc.read())}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise _Failed(f"{base}: {getattr(exc, 'reason', exc)}") from None


def _problem(raw: bytes) -> str:
    try:
        error = json.loads(raw)["error"]
        return f"{error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return raw.decode("utf-8", "replace")[:200]


def _line(a: dict[str, Any]) -> str:
    decided = f"  {a['decided_by']} via {a['channel']}" if a.get("decided_by") else ""
    step = f" steps[{a['step']}]" if a.get("step") is not None else ""
    return (
        f"{a['id']:>6}  {a['state']:<9}  {a['playbook']}{step}  on {a['target']}  "
        f"requested {a['requested_at']}  expires {a['expires_at']}{decided}"
    )


def cmd_approvals(args: argparse.Namespace) -> int:
    try:
        if args.approvals_command == "list":
            query = f"?state={args.state}" if args.state else ""
            found = _call(args, "GET", PATH + query)["approvals"]
            for approval in found:
                print(_line(approval))
            if not found:
                print("no approvals", file=sys.stderr)
            return 0
        decision = args.approvals_command  # approve | deny
        body = {"reason": args.reason, "channel": "cli"}
        answer = _call(args, "POST", f"{PATH}/{args.id}/{decision}", body)
        print(_line(answer["approval"]))
        return 0
    except _Failed as exc:
        print(f"approvals {args.approvals_command}: {exc}", file=sys.stderr)
        return 1


def add_parser(sub: Any) -> None:
    """The ``approvals`` command and its three sub-commands."""
    server = argparse.ArgumentParser(add_help=False)
    server.add_argument("--url", help=f"the server (default: $REMEDIATOR_URL or {DEFAULT_URL})")
    server.add_argument(
        "--token-file", help="a file holding the API token (else $REMEDIATOR_TOKEN)"
    )
    ap = sub.add_parser("approvals", help="list, approve or deny remediations awaiting approval")
    ap_sub = ap.add_subparsers(dest="approvals_command", required=True)
    al = ap_sub.add_parser("list", parents=[server], help="the approvals, newest first")
    al.add_argument("--state", choices=("open", "approved", "denied", "expired", "cancelled",
                                        "skipped"), help="only those in this state")  # fmt: skip
    for name, text in (("approve", "approve: the guards are checked again, then it runs"),
                       ("deny", "deny: nothing runs")):  # fmt: skip
        d = ap_sub.add_parser(name, parents=[server], help=text)
        d.add_argument("id", type=int, help="the approval's id")
        d.add_argument("--reason", default="", help="recorded in the audit event")
    ap.set_defaults(func=cmd_approvals)
