"""Serving with uvicorn: JSON logs, graceful shutdown on SIGTERM/SIGINT."""

from __future__ import annotations

import gc
import importlib.util
import logging
import signal
from types import FrameType

import uvicorn
from starlette.applications import Starlette

from remediator.config.model import Config

log = logging.getLogger("remediator.server")


class _Server(uvicorn.Server):
    """uvicorn's server, which also marks the runtime as draining when told to exit, so that
    requests still arriving on open connections get 503 (Alertmanager retries) instead of a
    half-finished answer."""

    def __init__(self, config: uvicorn.Config, app: Starlette) -> None:
        super().__init__(config)
        self._app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        rt = getattr(self._app.state, "runtime", None)
        if rt is not None:
            rt.draining = True
        log.info("shutting down", extra={"signal": sig})
        super().handle_exit(sig, frame)


def serve(
    app: Starlette, config: Config, *, host: str | None = None, port: int | None = None
) -> None:
    uv_config = uvicorn.Config(
        app,
        host=host or config.server.host,
        port=config.server.port if port is None else port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=int(config.server.drain_timeout) or 1,
        server_header=False,
        # Longer than the idle-connection reuse of Alertmanager's Go HTTP client, so a reused
        # connection is never closed under it by the server at the same moment.
        timeout_keep_alive=120,
        loop=loop_name(),
        http=http_name(),
    )
    # uvicorn re-raises the signal that stopped it once shutdown is done, to the handler that was
    # installed before it ran. A graceful stop is a clean exit here: that handler does nothing.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stopped)
    tune_gc()
    log.info("serving", extra={"loop": uv_config.loop, "http": uv_config.http})
    _Server(uv_config, app).run()


# uvloop and httptools (dependencies: uvicorn's "standard" pieces) serve the webhook about 1.5
# times as fast as asyncio and h11 on this code (docs/performance.md, "Server"); the pure-Python
# pair stays the fallback where they are not installed (a platform without their wheels).
def loop_name() -> str:
    """The event loop ``serve`` runs on: uvloop when installed, else asyncio."""
    return "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"


def http_name() -> str:
    """The HTTP/1.1 parser ``serve`` uses: httptools when installed, else h11."""
    return "httptools" if importlib.util.find_spec("httptools") is not None else "h11"


# The cyclic collector's young generation is collected every GC_THRESHOLD[0] allocations. At
# Python's default (700) a storm of alerts spends ~13% of its CPU in collections that find
# almost nothing (reference counting frees nearly everything); see docs/performance.md.
GC_THRESHOLD = (50_000, 20, 100)


def tune_gc() -> None:
    """Freeze what exists at start-up (modules, configuration) out of every collection and
    collect the young generation less often. Process-wide: for ``serve`` only."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


def _stopped(sig: int, frame: FrameType | None) -> None:
    log.info("stopped by signal", extra={"signal": sig})
