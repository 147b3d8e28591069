"""Slack user groups' members, for approvals (``approval.slack_usergroups``).

``usergroups.users.list`` through slack-sdk's ``AsyncWebClient`` with the Slack bot token of
``notifications.slack`` (scope ``usergroups:read``). Answers are cached for :data:`TTL` seconds
on the injected clock, so a burst of clicks asks Slack once; a failed answer is never cached
and raises, so the caller refuses the click (an error never allows).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Final

from slack_sdk.web.async_client import AsyncWebClient

from remediator.clock import Clock
from remediator.notifiers.slack import TIMEOUT, SlackConfig, _read_token

TTL: Final = 60.0  # seconds a group's members are trusted


class GroupUnknown(Exception):
    """Slack did not list the group's members."""


class SlackGroups:
    """Members of Slack user groups, cached briefly."""

    def __init__(self, web: AsyncWebClient, *, clock: Clock, ttl: float = TTL) -> None:
        self._web = web
        self._clock = clock
        self._ttl = ttl
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}

    @classmethod
    def build(
        cls, config: SlackConfig | None, *, clock: Clock, env: Mapping[str, str] | None = None
    ) -> SlackGroups | None:
        """The resolver of a bot-token Slack configuration (None: no bot token)."""
        if config is None or (config.token_env is None and config.token_file is None):
            return None
        token = _read_token(config, os.environ if env is None else env)
        web = AsyncWebClient(token=token, base_url=config.api_url, timeout=TIMEOUT)
        return cls(web, clock=clock)

    async def members(self, group: str) -> frozenset[str]:
        now = self._clock.monotonic()
        cached = self._cache.get(group)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            answer = await self._web.usergroups_users_list(usergroup=group)
        except Exception as exc:
            raise GroupUnknown(f"usergroups.users.list: {type(exc).__name__}") from None
        users = answer.get("users")
        if answer.get("ok") is not True or not isinstance(users, list):
            raise GroupUnknown("usergroups.users.list: no users in the answer")
        found = frozenset(u for u in users if isinstance(u, str))
        self._cache[group] = (now + self._ttl, found)
        return found
