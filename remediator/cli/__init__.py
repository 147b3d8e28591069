"""The ``remediator`` command: serve, check-config, rules, tokens, simulate, audit, quarantine,
approvals, store, version."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path

from remediator import __version__
from remediator.cli import approvals as approvals_cli
from remediator.cli.audit import cmd_audit_keygen, cmd_audit_prune, cmd_audit_verify
from remediator.cli.loading import config_path, load_config, load_or_report
from remediator.cli.quarantine import cmd_quarantine
from remediator.cli.store import cmd_store_copy
from remediator.config import model as config_mod
from remediator.errors import ConfigError, RemediatorError

ROLES = ("alertmanager", "viewer", "admin")


def _secret_file_problems(cfg: config_mod.Config) -> list[str]:
    """The permission problem of every secret file the configuration names that exists here (a
    file missing where ``check-config`` runs is left to ``serve``)."""
    from remediator.config.secretfile import permission_problem

    prometheus = cfg.prometheus
    basic = prometheus.basic_auth
    slack = cfg.notifications.slack
    named = [
        *((f"auth.tokens[{i}].token_file", s.token_file) for i, s in enumerate(cfg.auth.tokens)),
        ("notifications.slack.token_file", slack.token_file if slack else None),
        ("prometheus.bearer_token_file", prometheus.bearer_token_file),
        ("prometheus.basic_auth.password_file", basic.password_file if basic else None),
    ]
    found = [(field, permission_problem(Path(path))) for field, path in named if path]
    return [f"{field}: {problem}" for field, problem in found if problem]


def cmd_check_config(args: argparse.Namespace) -> int:
    path = config_path(args.path)
    if path is None:
        print("check-config: give a PATH or set REMEDIATOR_CONFIG", file=sys.stderr)
        return 2
    try:
        cfg = config_mod.load(path)
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return 1
    unsafe = _secret_file_problems(cfg)
    for line in unsafe:
        print(line, file=sys.stderr)
    if unsafe:
        return 1
    for line in config_mod.warnings(cfg):
        print(f"warning: {line}", file=sys.stderr)
    print(
        f"{path}: valid ({len(cfg.targets)} targets, {len(cfg.patterns)} patterns, "
        f"{len(cfg.playbooks)} playbooks)"
    )
    return 0


def cmd_rules(args: argparse.Namespace) -> int:
    """Write (or ``--check``) the Prometheus rule files for the configured ``self_healing`` and
    the mixin settings given (remediator/alertrules/mixin.py)."""
    from remediator import alertrules
    from remediator.alertrules import mixin

    cfg = load_or_report(args.config)
    if cfg is None:
        return 1
    out = Path(args.out)
    try:
        thresholds = {
            name: float(value)
            for name, value in mixin.parse_pairs(args.threshold, "--threshold").items()
        }
        settings = alertrules.Mixin(
            job_selector=args.job_selector or mixin.JOB_SELECTOR,
            runbook_url_pattern=args.runbook_url_pattern or mixin.RUNBOOK_URL_PATTERN,
            extra_labels=mixin.parse_pairs(args.label, "--label"),
            thresholds=thresholds,
        )
        rendered = alertrules.render(cfg.self_healing, settings)
    except ValueError as exc:
        print(f"remediator rules: {exc}", file=sys.stderr)
        return 2
    return alertrules.sync(out, rendered, check=args.check, out=sys.stdout, label=f"{out}/")


def cmd_tokens(args: argparse.Namespace) -> int:
    """Create one token file per role in ``--dir`` (kept if present) and print them."""
    directory = Path(args.dir)
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    for role in ROLES:
        path = directory / f"{role}.token"
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(32) + "\n")
        print(f"{role:>12} token ({path}): {path.read_text().strip()}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from remediator import logs
    from remediator.config.auth import Authenticator, load_credentials
    from remediator.http.app import create_app
    from remediator.http.server import serve

    logs.setup(args.log_level)
    path = config_path(args.config)
    try:
        cfg = load_config(path)
        unsafe = _secret_file_problems(cfg)
        if unsafe:
            raise ConfigError(unsafe)
        credentials = load_credentials(cfg.auth)
        if cfg.audit.signing_key_file:  # refused before listening, like a bad token file
            from remediator.audit.signing import KeyFileError, load_private

            try:
                load_private(cfg.audit.signing_key_file)
            except KeyFileError as exc:
                raise ConfigError([str(exc)]) from None
    except ConfigError as exc:
        for line in exc.problems:
            print(f"config: {line}", file=sys.stderr)
        return 1
    if not credentials and not args.insecure_no_auth:
        print(
            "refusing to start: no API token is configured (auth.tokens, or "
            "REMEDIATOR_ALERTMANAGER_TOKEN / REMEDIATOR_VIEWER_TOKEN / REMEDIATOR_ADMIN_TOKEN). "
            "Pass --insecure-no-auth to run without authentication.",
            file=sys.stderr,
        )
        return 2
    if args.insecure_no_auth and not credentials:
        print(
            "WARNING: AUTHENTICATION IS DISABLED (--insecure-no-auth): anyone who can reach "
            "this port can trigger and reconfigure remediation.",
            file=sys.stderr,
        )
    host = args.host or cfg.server.host
    port = cfg.server.port if args.port is None else args.port
    url = f"http://{host}:{port}/api/v1/recovery/alerts"
    print(f"remediator {__version__} listening on http://{host}:{port}", flush=True)
    print(
        "Point Alertmanager at it with a receiver like:\n"
        "  receivers:\n"
        "    - name: remediator\n"
        "      webhook_configs:\n"
        f"        - url: {url}\n"
        "          send_resolved: true\n"
        "          http_config:\n"
        "            authorization:\n"
        "              credentials_file: /path/to/alertmanager.token",
        flush=True,
    )
    on_runtime = None
    if path is not None:  # SIGHUP re-reads the file (remediator/reload.py)
        from remediator.reload import sighup_installer

        on_runtime = sighup_installer(path)
    app = create_app(cfg, authenticator=Authenticator(credentials), on_runtime=on_runtime)
    serve(app, cfg, host=host, port=port)
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    """Print, per alert of a payload, what the worker would decide: JSON lines, touching nothing."""
    import json

    from remediator.engine.decisions import Catalog, decide
    from remediator.http.intake import parse_payload
    from remediator.plugins import load as load_plugins

    cfg = load_or_report(args.config)
    if cfg is None:
        return 1
    try:
        body = sys.stdin.buffer.read() if args.payload == "-" else Path(args.payload).read_bytes()
    except OSError as exc:
        print(f"{args.payload}: cannot read: {exc.strerror}", file=sys.stderr)
        return 1
    try:
        payload = parse_payload(body)
    except RemediatorError as exc:
        print(f"{args.payload}: {exc.message}", file=sys.stderr)
        return 1
    catalog = Catalog.from_config(cfg, load_plugins().strategies)
    for alert in payload.alerts:
        decision = decide(
            catalog,
            fingerprint=alert.fingerprint,
            status=alert.status,
            labels=alert.labels,
            annotations=alert.annotations,
        )
        print(json.dumps(decision.as_json(), sort_keys=True))
    return 0


def cmd_version(args: argparse.Namespace) -> int:
    print(f"remediator {__version__}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="remediator", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the webhook receiver, worker and API")
    s.add_argument("--config", help="YAML configuration (default: $REMEDIATOR_CONFIG)")
    s.add_argument("--host", help="listen address (default: server.host)")
    s.add_argument("--port", type=int, help="listen port (default: server.port)")
    s.add_argument("--insecure-no-auth", action="store_true", help="run without any token")
    s.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    s.set_defaults(func=cmd_serve)

    c = sub.add_parser("check-config", help="validate a configuration file")
    c.add_argument("path", nargs="?", help="YAML configuration (default: $REMEDIATOR_CONFIG)")
    c.set_defaults(func=cmd_check_config)

    r = sub.add_parser("rules", help="write the Prometheus rules for self_healing's thresholds")
    r.add_argument("--config", help="YAML configuration (default: $REMEDIATOR_CONFIG)")
    r.add_argument("--out", required=True, help="directory of the rule files")
    r.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file differs")
    r.add_argument(
        "--job-selector",
        help='label matchers selecting remediator\'s own series (default: job="remediator")',
    )
    r.add_argument(
        "--runbook-url-pattern",
        help="each alert's runbook_url, %%s standing for the alert name in lower case (default:"
        " docs/runbook.md on GitHub)",
    )
    r.add_argument(
        "--label", action="append", default=[], metavar="NAME=VALUE",
        help="a label added to every alert (repeatable)",
    )  # fmt: skip
    r.add_argument(
        "--threshold", action="append", default=[], metavar="ALERT=VALUE",
        help="an alert's threshold, as its PromQL compares it (repeatable)",
    )  # fmt: skip
    r.set_defaults(func=cmd_rules)

    t = sub.add_parser("tokens", help="create local API tokens, one file per role")
    t.add_argument("--dir", default="data/tokens")
    t.set_defaults(func=cmd_tokens)

    m = sub.add_parser("simulate", help="print the decision for each alert of a payload")
    m.add_argument("--config", help="YAML configuration (default: $REMEDIATOR_CONFIG)")
    m.add_argument("payload", help="an Alertmanager webhook payload (JSON file, or - for stdin)")
    m.set_defaults(func=cmd_simulate)

    a = sub.add_parser("audit", help="verify or prune the tamper-evident audit log")
    audit_sub = a.add_subparsers(dest="audit_command", required=True)
    av = audit_sub.add_parser("verify", help="walk the hash chain; report the first broken record")
    av.add_argument("--config", help="YAML configuration (default: $REMEDIATOR_CONFIG)")
    av.add_argument("--public-key", help="PEM public key of the signed checkpoints (default: "
                    "from audit.signing_key_file)")  # fmt: skip
    av.add_argument("--checkpoint", action="append", metavar="SEQ:DIGEST",
                    help="a checkpoint exported outside the store (repeatable)")  # fmt: skip
    av.add_argument("--checkpoints", metavar="FILE",
                    help="exported checkpoints: SEQ:DIGEST lines or remediator's JSON log lines")  # fmt: skip
    av.set_defaults(func=cmd_audit_verify)
    ak = audit_sub.add_parser("keygen", help="write an Ed25519 signing key (0600) and FILE.pub")
    ak.add_argument("file", help="where to write the private key")
    ak.set_defaults(func=cmd_audit_keygen)
    ap = audit_sub.add_parser("prune", help="delete old events behind a checkpoint")
    ap.add_argument("--config", help="YAML configuration (default: $REMEDIATOR_CONFIG)")
    ap.add_argument("--older-than", default="90d", help="age, e.g. 30d (default 90d)")
    ap.set_defaults(func=cmd_audit_prune)

    q = sub.add_parser("quarantine", help="list quarantined targets, or lift a quarantine")
    q_sub = q.add_subparsers(dest="quarantine_command", required=True)
    ql = q_sub.add_parser("list", help="the quarantined targets: name, since, reason")
    ql.add_argument("--config", help="YAML configuration (default: $REMEDIATOR_CONFIG)")
    ql.set_defaults(func=cmd_quarantine)
    qf = q_sub.add_parser("lift", help="release a target; unpause what the quarantine paused")
    qf.add_argument("target", help="the quarantined target")
    qf.add_argument("--reason", required=True, help="why (recorded in the audit log)")
    qf.add_argument("--config", help="YAML configuration (default: $REMEDIATOR_CONFIG)")
    qf.set_defaults(func=cmd_quarantine)

    approvals_cli.add_parser(sub)

    st = sub.add_parser("store", help="copy a store to another backend")
    st_sub = st.add_subparsers(dest="store_command", required=True)
    sc = st_sub.add_parser("copy", help="copy every row into an empty store; verify its chain")
    sc.add_argument("--from", dest="source", required=True, help="the store URL to copy from")
    sc.add_argument("--to", dest="dest", required=True, help="the store URL to copy into (empty)")
    sc.add_argument(
        "--config", help="YAML configuration, for the audit key (default: $REMEDIATOR_CONFIG)"
    )
    sc.set_defaults(func=cmd_store_copy)

    v = sub.add_parser("version", help="print the version")
    v.set_defaults(func=cmd_version)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
