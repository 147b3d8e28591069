"""Slack: one message per incident, updated as the incident moves, details threaded under it.

Bot-token mode (``token_env``/``token_file``) uses slack-sdk's ``AsyncWebClient``: the first
message of an incident is a ``chat.postMessage`` whose channel and ``ts`` become its
:class:`~remediator.notifiers.base.Thread`; later phases ``chat.update`` that message and post
``detail`` as a thread reply. Webhook mode (``webhook_url``, no token) posts every phase anew.

Messages read like Alertmanager's: a headline with the phase's emoji, a fields section, links to
the source and runbook, a plain-text fallback. Alert text is escaped (``&``, ``<``, ``>``).
Writes are paced to about one per second per channel on the injected clock; a 429 with a short
``Retry-After`` is waited out once inside slack-sdk, otherwise it becomes ``retry_after``.
One aiohttp session, opened by the first send (and bound to its event loop), closed by aclose.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Coroutine, Mapping
from pathlib import Path
from typing import Any, ClassVar, Final, Protocol

import aiohttp
from pydantic import Field
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import builtin_async_handlers as retry
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse
from slack_sdk.webhook.async_client import AsyncWebhookClient

from remediator.audit.events import Event
from remediator.clock import Clock
from remediator.config.durations import Duration
from remediator.config.secretfile import permission_problem
from remediator.errors import ConfigError
from remediator.notifiers.base import (
    Channel,
    ChannelConfig,
    Delivery,
    Notification,
    Phase,
    Thread,
)
from remediator.notifiers.slack_approvals import PHASES as APPROVAL_PHASES
from remediator.notifiers.slack_approvals import approval_blocks


class SlackConfig(ChannelConfig):
    DESTINATION: ClassVar[tuple[str, ...]] = ("api_url", "webhook_url")
    token_env: str | None = None
    token_file: str | None = None
    webhook_url: str | None = None
    api_url: str = "https://slack.com/api/"
    channel: str = "#alerts"
    channels_by_severity: dict[str, str] = Field(default_factory=dict)
    channels_by_category: dict[str, str] = Field(default_factory=dict)
    pace: Duration = 1.0  # minimum time between messages to one channel (Slack allows ~1/s)


__all__ = ["SlackNotifier", "blocks", "escape", "route"]

PACE: Final = 1.0  # seconds between writes to one channel
TIMEOUT: Final = 10  # seconds for one HTTP request
MAX_INLINE_WAIT: Final = 5.0  # longest Retry-After waited out inside the client
FIELD_LIMIT: Final = 2000
MAX_FIELDS: Final = 10
SECTION_LIMIT: Final = 3000
EMOJI: Final = {
    "firing": "🔥",
    "remediating": "🔧",
    "recovered": "✅",
    "failed": "❌",
    "escalated": "🚨",
    "info": "ℹ️",  # noqa: RUF001 -- the information source emoji
    "awaiting": "⏳",
    "decided": "🗳️",
}
FIELD_ORDER: Final = ("alert", "target", "action", "outcome", "duration", "severity")
LINKS: Final = (("generator", "Source"), ("runbook", "Runbook"))
# Errors that no retry can fix: dead-letter and escalate through another channel.
PERMANENT: Final = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "msg_too_long",
        "no_text",
    }
)
_CODE = re.compile(r"^[a-z0-9_]{1,64}$")


def route(config: SlackConfig, *, severity: str, category: str) -> str:
    """The channel for an alert: by severity, else by pattern category, else the default."""
    by_severity = config.channels_by_severity.get(severity)
    if by_severity is not None:
        return by_severity
    by_category = config.channels_by_category.get(category)
    return by_category if by_category is not None else config.channel


def escape(text: str) -> str:
    """Slack's three control characters escaped, so alert text cannot mention or link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters (with an ellipsis), never inside an ``&…;`` entity."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    amp = cut.rfind("&", max(0, len(cut) - 5))
    if amp >= 0 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"


def _headline(note: Notification) -> str:
    emoji = EMOJI.get(note.phase, EMOJI["info"])
    return f"{emoji} [{note.phase.upper()}] {note.title}"


def _fields(note: Notification) -> list[tuple[str, str]]:
    values = {k.lower(): v for k, v in note.fields.items() if v}
    values.setdefault("severity", note.severity)
    keys = [k for k in FIELD_ORDER if values.get(k)]
    keys += [k for k in values if k not in FIELD_ORDER and values[k]]
    return [(k.replace("_", " ").capitalize(), str(values[k])) for k in keys[:MAX_FIELDS]]


def _link(url: str, label: str) -> str | None:
    if not url.startswith(("http://", "https://")):
        return None
    return f"<{escape(url).replace('|', '%7C')}|{label}>"


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _clip(text, SECTION_LIMIT)}}


def blocks(note: Notification, *, detail: bool = False) -> list[dict[str, Any]]:
    """The Block Kit layout of ``note``; ``detail`` adds ``note.detail`` (webhook mode)."""
    out = [_section(f"*{escape(_headline(note))}*")]
    fields = [
        {"type": "mrkdwn", "text": _clip(f"*{label}*\n{escape(value)}", FIELD_LIMIT)}
        for label, value in _fields(note)
    ]
    if fields:
        out.append({"type": "section", "fields": fields})
    if detail and note.detail:
        out.append(_section(escape(note.detail)))
    links = [_link(note.links[key], label) for key, label in LINKS if note.links.get(key)]
    shown = [link for link in links if link is not None]
    if shown:
        out.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": "  •  ".join(shown)}]}
        )
    return out + approval_blocks(note.data)


def fallback(note: Notification) -> str:
    """The plain ``text`` of a message: notifications and clients without Block Kit show it."""
    parts = [_headline(note)] + [f"{label}: {value}" for label, value in _fields(note)[:3]]
    return _clip(escape(" | ".join(parts)), SECTION_LIMIT)


def _retry_after(headers: Mapping[str, Any] | None) -> float | None:
    """Seconds from a ``Retry-After`` header (slack-sdk gives lists or strings), if valid."""
    for key, value in (headers or {}).items():
        if key.lower() == "retry-after":
            raw = value[0] if isinstance(value, list) and value else value
            try:
                seconds = float(str(raw).strip())
            except ValueError:
                return None
            return seconds if math.isfinite(seconds) and seconds >= 0 else None
    return None


class _ShortRateLimitRetry(retry.AsyncRateLimitErrorRetryHandler):
    """slack-sdk's 429 handler (it sleeps ``Retry-After``), only for short integer waits."""

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None or response.status_code != 429:
            return False
        seconds = _retry_after(response.headers)
        return seconds is not None and seconds.is_integer() and seconds <= MAX_INLINE_WAIT


def _handlers() -> list[AsyncRetryHandler]:
    """One retry after a dropped connection, one after a short 429 (both sleep in real time)."""
    return [retry.AsyncConnectionErrorRetryHandler(max_retry_count=1), _ShortRateLimitRetry(1)]


class _Failed(Exception):
    """A call that failed, already classified."""

    def __init__(self, delivery: Delivery, error: str = "") -> None:
        super().__init__(delivery.detail)
        self.delivery = delivery
        self.error = error


def _read_token(config: SlackConfig, env: Mapping[str, str]) -> str | None:
    if config.token_env is not None:
        token = env.get(config.token_env, "").strip()
        if not token:
            raise ConfigError([f"notifications.slack.token_env: {config.token_env} is not set"])
        return token
    if config.token_file is not None:
        unsafe = permission_problem(Path(config.token_file))
        if unsafe is not None:
            raise ConfigError([f"notifications.slack.token_file: {unsafe}"])
        try:
            token = Path(config.token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                [f"notifications.slack.token_file: cannot read: {exc.strerror}"]
            ) from None
        if not token:
            raise ConfigError(["notifications.slack.token_file: the file is empty"])
        return token
    if config.webhook_url is None:
        raise ConfigError(["notifications.slack: give token_env, token_file or webhook_url"])
    return None


class _Threads(Protocol):
    """The store's record of each incident's first Slack message (remediator/store/)."""

    async def slack_thread(self, incident: str, destination: str) -> tuple[str, str] | None: ...

    async def save_slack_thread(
        self, incident: str, destination: str, *, channel: str, ts: str
    ) -> None: ...


class SlackNotifier:
    """Delivers notifications to Slack; never raises for delivery problems."""

    channel: ClassVar[Channel] = "slack"
    config_key: ClassVar[str] = "slack"  # notifications.slack
    summary: ClassVar[str] = (
        "Slack: one message per incident, updated as it moves, details in its thread (bot token); or one message per phase (incoming webhook)."
    )
    config_model: ClassVar[type[ChannelConfig]] = SlackConfig
    # One message per incident, updated as it moves; each step is a thread reply.
    phases: ClassVar[Mapping[str, Phase]] = {
        "recovery:started": "remediating",
        "recovery:action": "info",  # a thread reply; the headline keeps the incident's state
        "recovery:succeeded": "recovered",
        "recovery:failed": "failed",
        "service:recovered": "recovered",
        **APPROVAL_PHASES,  # the request's buttons, then who decided (slack_approvals.py)
    }

    @staticmethod
    def configured(section: SlackConfig | None) -> bool:
        return section is not None

    @staticmethod
    def destinations(section: SlackConfig, event: Event) -> list[str]:
        return [route(section, severity=event.severity, category=event.category)]

    @staticmethod
    def names(section: SlackConfig) -> list[str]:
        return ["slack"]

    @classmethod
    def build(
        cls, section: SlackConfig, *, clock: Clock, env: Mapping[str, str] | None
    ) -> SlackNotifier:
        return cls(section, clock=clock, env=env)

    async def find_thread(
        self, store: _Threads, *, incident: str, destination: str
    ) -> Thread | None:
        found = await store.slack_thread(incident, destination)
        return Thread(*found) if found else None

    async def keep_thread(
        self, store: _Threads, *, incident: str, destination: str, thread: Thread
    ) -> None:
        await store.save_slack_thread(incident, destination, channel=thread.channel, ts=thread.ts)

    def __init__(
        self, config: SlackConfig, *, clock: Clock, env: Mapping[str, str] | None = None
    ) -> None:
        self._clock = clock
        self._pace_seconds = config.pace
        self._token = _read_token(config, os.environ if env is None else env)
        self._secrets = [s for s in (self._token, config.webhook_url) if s]
        self._web: AsyncWebClient | None = None
        self._hook: AsyncWebhookClient | None = None
        if self._token is not None:
            self._web = AsyncWebClient(
                token=self._token,
                base_url=config.api_url,
                timeout=TIMEOUT,
                retry_handlers=_handlers(),
            )
        else:
            assert config.webhook_url is not None
            self._hook = AsyncWebhookClient(
                config.webhook_url, timeout=TIMEOUT, retry_handlers=_handlers()
            )
        self._http: aiohttp.ClientSession | None = None
        self._next: dict[str, float] = {}  # channel -> earliest monotonic time of the next write
        self._ids: dict[str, str] = {}  # "#name" -> channel id, learned from responses

    async def send(self, note: Notification, *, thread: Thread | None = None) -> Delivery:
        try:
            if self._web is None:
                return await self._send_webhook(note)
            if thread is None:
                return await self._post(self._web, note)
            return await self._update(self._web, note, thread)
        except _Failed as failed:
            return failed.delivery
        except Exception as exc:  # a notifier never raises for delivery problems
            return Delivery(ok=False, detail=f"slack: unexpected {type(exc).__name__}")

    async def aclose(self) -> None:
        if self._http is not None and not self._http.closed:
            await self._http.close()
        self._http = None

    # ---- bot-token mode

    async def _post(self, web: AsyncWebClient, note: Notification) -> Delivery:
        resp = await self._call(
            "chat.postMessage",
            note.destination,
            web.chat_postMessage(
                channel=note.destination, text=fallback(note), blocks=blocks(note)
            ),
        )
        channel, ts = resp.get("channel"), resp.get("ts")
        if not isinstance(channel, str) or not isinstance(ts, str):
            return Delivery(ok=False, detail="slack chat.postMessage: no channel/ts in the answer")
        self._learn(note.destination, channel)
        thread = Thread(channel=channel, ts=ts)
        if note.detail:
            try:
                await self._reply(web, note, thread)
            except _Failed as failed:  # the message landed: posting it again would duplicate it
                detail = f"posted; thread reply failed: {failed.delivery.detail}"
                return Delivery(ok=True, thread=thread, detail=detail)
        return Delivery(ok=True, thread=thread)

    async def _update(self, web: AsyncWebClient, note: Notification, thread: Thread) -> Delivery:
        if note.phase == "info" and note.detail:
            # A step's details: a thread reply only, the headline keeps the incident's state.
            await self._reply(web, note, thread)
            return Delivery(ok=True, thread=thread)
        try:
            await self._call(
                "chat.update",
                thread.channel,
                web.chat_update(
                    channel=thread.channel, ts=thread.ts, text=fallback(note), blocks=blocks(note)
                ),
            )
        except _Failed as failed:
            if failed.error != "message_not_found":
                raise
            return await self._post(web, note)  # the message is gone: start a new one
        if note.detail:
            await self._reply(web, note, thread)  # on failure, a retry re-updates (idempotent)
        return Delivery(ok=True, thread=thread)

    async def _reply(self, web: AsyncWebClient, note: Notification, thread: Thread) -> None:
        text = _clip(escape(note.detail), SECTION_LIMIT)
        await self._call(
            "chat.postMessage",
            thread.channel,
            web.chat_postMessage(
                channel=thread.channel, thread_ts=thread.ts, text=text, blocks=[_section(text)]
            ),
        )

    async def _call(
        self, method: str, channel: str, request: Coroutine[Any, Any, AsyncSlackResponse]
    ) -> AsyncSlackResponse:
        """Await one slack-sdk call (made lazily by ``request``) after pacing its channel."""
        try:
            await self._pace(channel)
            self._session()
            return await request
        except Exception as exc:
            raise self._failure(method, exc) from None
        finally:
            request.close()  # a coroutine that never ran must not warn

    def _failure(self, method: str, exc: Exception) -> _Failed:
        if isinstance(exc, SlackApiError):
            status = int(getattr(exc.response, "status_code", 0) or 0)
            data = getattr(exc.response, "data", None)
            raw = data.get("error") if isinstance(data, dict) else None
            error = raw if isinstance(raw, str) and _CODE.match(raw) else ""
            what = f"slack {method}: {error or f'HTTP {status}'}"
            if status == 429 or error == "ratelimited":
                wait = _retry_after(getattr(exc.response, "headers", None))
                return _Failed(Delivery(ok=False, detail=what, retry_after=wait or PACE), error)
            return _Failed(Delivery(ok=False, detail=what, permanent=error in PERMANENT), error)
        if isinstance(exc, TimeoutError):
            return _Failed(Delivery(ok=False, detail=f"slack {method}: timed out"))
        return _Failed(Delivery(ok=False, detail=self._scrub(f"slack {method}: {_describe(exc)}")))

    # ---- incoming-webhook mode

    async def _send_webhook(self, note: Notification) -> Delivery:
        assert self._hook is not None
        try:
            await self._pace("webhook")
            self._session()
            resp = await self._hook.send(text=fallback(note), blocks=blocks(note, detail=True))
        except TimeoutError:
            return Delivery(ok=False, detail="slack webhook: timed out")
        except Exception as exc:
            return Delivery(ok=False, detail=self._scrub(f"slack webhook: {_describe(exc)}"))
        if resp.status_code == 200:
            return Delivery(ok=True)
        body = (resp.body or "").strip()
        code = body if _CODE.match(body) else ""
        what = f"slack webhook: HTTP {resp.status_code}" + (f" {code}" if code else "")
        if resp.status_code == 429:
            return Delivery(ok=False, detail=what, retry_after=_retry_after(resp.headers) or PACE)
        permanent = 400 <= resp.status_code < 500 and resp.status_code != 408
        return Delivery(ok=False, detail=what, permanent=permanent)

    # ---- plumbing

    def _session(self) -> None:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT))
        if self._web is not None:
            self._web.session = self._http
        if self._hook is not None:
            self._hook.session = self._http

    async def _pace(self, channel: str) -> None:
        """Reserve this channel's next write slot (race-free: no await before reserving)."""
        key = self._ids.get(channel, channel)
        now = self._clock.monotonic()
        slot = max(now, self._next.get(key, now))
        self._next[key] = slot + self._pace_seconds
        if slot > now:
            await self._clock.sleep(slot - now)

    def _learn(self, name: str, channel_id: str) -> None:
        """Remember ``name``'s channel id; its pacing slot moves to the id."""
        if name != channel_id and self._ids.get(name) != channel_id:
            self._ids[name] = channel_id
            pending = self._next.pop(name, None)
            if pending is not None:
                self._next[channel_id] = max(pending, self._next.get(channel_id, pending))

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def _describe(exc: Exception) -> str:
    """An exception as ``Type`` plus its OS error text, never a URL (webhook URLs are secrets)."""
    reason = getattr(exc, "strerror", None) or getattr(
        getattr(exc, "os_error", None), "strerror", None
    )
    return f"connection failed ({type(exc).__name__}{f': {reason}' if reason else ''})"
