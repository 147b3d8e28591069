"""An Event-Driven Ansible source plugin of the peer benchmark: Alertmanager's webhook, one
event per alert.

EDA's own Alertmanager source (``ansible.eda.alertmanager``) belongs to the ``ansible.eda``
collection, which is not on the package index and cannot be fetched here; the webhook source that
ships with ansible-rulebook (``eda.builtin.webhook``) makes one event of a whole notification. To
measure EDA doing the same work as remediator (one decision per alert), ``bench/eda.py`` loads this
plugin with ``ansible-rulebook --source-dir``. It does what that collection's documentation says
its source does: it listens for Alertmanager's POST and puts one event per alert on EDA's queue,
``{"alert": <the alert>, "meta": {"endpoint": <path>}}`` (so a rule reads ``event.alert.labels``,
``event.alert.status``), and answers 200 once the events are queued (in memory: nothing is
durable). It checks a bearer token like the built-in webhook. Written for this benchmark; it runs
in ansible-rulebook's venv, whose aiohttp it uses.

Arguments: ``host`` (default 127.0.0.1), ``port`` (required), ``token`` (optional).
"""

from __future__ import annotations

import asyncio
import hmac
import json
from typing import Any

from aiohttp import web


async def main(queue: asyncio.Queue[Any], args: dict[str, Any]) -> None:
    """Serve the webhook until cancelled; one event per alert of each notification."""
    if "port" not in args:
        raise ValueError("Missing required argument: port")
    token = str(args.get("token") or "")

    async def receive(request: web.Request) -> web.Response:
        if token:
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                raise web.HTTPUnauthorized(text="Invalid authorization token")
        try:
            payload = json.loads(await request.read())
        except ValueError:
            raise web.HTTPBadRequest(text="Invalid JSON payload") from None
        alerts = payload.get("alerts") if isinstance(payload, dict) else None
        endpoint = request.match_info.get("endpoint", "")
        for alert in alerts if isinstance(alerts, list) else []:
            await queue.put({"alert": alert, "meta": {"endpoint": endpoint}})
        return web.Response(text=endpoint)

    app = web.Application()
    app.router.add_post("/{endpoint:.*}", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, str(args.get("host") or "127.0.0.1"), int(args["port"]))
    await site.start()
    try:
        await asyncio.Future()
    finally:
        await runner.cleanup()
