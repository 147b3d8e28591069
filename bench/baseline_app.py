"""The baseline: a bare Starlette app that reads the webhook body and answers 200.

Served exactly like remediator (:func:`remediator.http.server.serve`: same uvicorn settings, one
worker, default loop and HTTP implementation, no access log), so the ratio of the two measures
what remediator does per request (auth, parsing, the durable commit, metrics, its log line), not
the server around it. ``python -m bench.baseline_app --port PORT``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from remediator.config import model as config_mod
from remediator.http.server import serve

ANSWER = {"received": 1, "new": 1, "duplicates": 0, "truncated": 0}


async def alerts(request: Request) -> Response:
    await request.body()
    return JSONResponse(ANSWER)


async def health(request: Request) -> Response:
    return JSONResponse({"status": "healthy"})


def app() -> Starlette:
    return Starlette(
        routes=[
            Route("/api/v1/recovery/alerts", alerts, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline_app", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    serve(app(), config_mod.parse({}), host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
