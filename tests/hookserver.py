"""A local HTTP hook on 127.0.0.1 that records every request and how many were in flight at once.

Each request is held for ``hold`` seconds before it is answered 200, so that requests sent at the
same time overlap; ``most`` is the largest number seen in flight together.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Hook(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, hold: float) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.hold = hold
        self.paths: list[str] = []
        self.headers: list[dict[str, str]] = []  # each request's headers, in order
        self.in_flight = 0
        self.most = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up is not the hook's concern


class _Handler(BaseHTTPRequestHandler):
    server: Hook

    def _handle(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        hook = self.server
        with hook.lock:
            hook.paths.append(self.path)
            hook.headers.append(dict(self.headers.items()))
            hook.in_flight += 1
            hook.most = max(hook.most, hook.in_flight)
        try:
            hook.stopping.wait(hook.hold)
        finally:
            with hook.lock:
                hook.in_flight -= 1
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    do_GET = do_POST = do_PUT = _handle

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serving(hold: float = 0.0) -> Iterator[Hook]:
    """A hook serving in a thread of this process, shut down afterwards."""
    hook = Hook(hold)
    thread = threading.Thread(target=hook.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield hook
    finally:
        hook.stopping.set()
        hook.shutdown()
        hook.server_close()
        thread.join(5)
