"""Structured logs: one JSON object per line, per event."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from remediator.clock import iso
from remediator.redaction import redact_text
from remediator.tracing import Tracing

_STANDARD = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}
# Client libraries that log each request's full URL at INFO or DEBUG (a webhook URL's path is
# often its secret; Slack's and Docker's URLs carry tokens and hosts): warnings and errors only.
QUIET_LIBRARIES = (
    "httpx",
    "httpx2",
    "httpcore",
    "httpcore2",
    "urllib3",
    "docker",
    "aiohttp",
    "slack_sdk",
    "aiosmtplib",
)


class JsonFormatter(logging.Formatter):
    secrets: tuple[str, ...] = ()

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        ids = Tracing.current_ids()  # inside a traced span: its trace and span ids
        if ids is not None:
            entry.setdefault("trace_id", ids.trace_id)
            entry.setdefault("span_id", ids.span_id)
            if ids.episode is not None:  # inside a decision or one of its steps
                entry.setdefault("episode", ids.episode)
        if record.exc_info and record.exc_info[0] is not None:
            entry["exc_type"] = record.exc_info[0].__name__
            entry["exc"] = self.formatException(record.exc_info)
        # json.dumps escapes newlines and control characters: one event, one line.
        return redact_text(json.dumps(entry, default=str, ensure_ascii=False), self.secrets)


def quiet_libraries() -> None:
    """Keep the client libraries' request logs (which print URLs) out: WARNING and above."""
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)


def protect(secrets: tuple[str, ...]) -> None:
    """Mask these values (and URL credentials) in every JSON log line from now on, and keep
    the client libraries from logging URLs."""
    quiet_libraries()
    for handler in logging.getLogger().handlers:
        if isinstance(handler.formatter, JsonFormatter):
            handler.formatter.secrets = secrets


def setup(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    quiet_libraries()
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
