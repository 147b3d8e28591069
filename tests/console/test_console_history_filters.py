"""History's playbook and outcome filters are the store query's (both backends), so a match
older than the newest page of other events is still found."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from remediator.audit.events import Event
from remediator.store import Store
from remediator.store.records import EventQuery
from tests.console.consoleapp import served, sign_in
from tests.store_helpers import event, run, store_url

__all__ = ["store_url"]  # the fixture


def noise(n: int) -> list[Event]:
    """``n`` events of another playbook and outcome, newer than what the tests look for."""
    return [event(100 + i, playbook="other", outcome="success", target="web") for i in range(n)]


def test_events_filter_by_playbook_and_outcome_in_the_query(store_url: str) -> None:
    async def body(store: Store) -> None:
        await store.append([
            event(1, playbook="restart-web", outcome="failure", target="web"),
            event(2, playbook="restart-web", outcome="success", target="web"),
            event(3, playbook="restart-db", outcome="failure", target="db"),
            *noise(60),
        ])  # fmt: skip

        async def found(**fields: object) -> list[str]:
            got = await store.events(EventQuery(limit=10, **fields))  # type: ignore[arg-type]
            return [e.message for e in got]

        assert await found(playbook="restart-web") == ["event 2", "event 1"]
        assert await found(outcome="failure") == ["event 3", "event 1"]
        assert await found(playbook="restart-web", outcome="failure") == ["event 1"]
        assert await found(playbook="restart-web", target="db") == []
        assert await found(playbook="no-such") == []

    run(store_url, body)


def test_history_finds_a_playbook_older_than_the_newest_page(tmp_path: Path) -> None:
    with served(tmp_path) as (client, rt):
        now = rt.clock.now()  # recent: retention prunes events older than audit.retention
        old = Event(type="recovery:failed", time=now - 100, playbook="restart-web", outcome="failure",
                    target="web", fingerprint="old1")  # fmt: skip
        assert client.portal is not None  # the app's own event loop: no second one on the store
        newer = [replace(e, time=now - 50 + i / 10) for i, e in enumerate(noise(60))]
        client.portal.call(rt.store.append, [old, *newer])
        sign_in(client, "viewer")
        page = client.get("/console/history", params={"playbook": "restart-web"}).text
        assert '<a href="/console/incidents/old1">' in page
        page = client.get("/console/history", params={"outcome": "failure"}).text
        assert '<a href="/console/incidents/old1">' in page
        page = client.get("/console/history", params={"outcome": "success"}).text
        assert "old1" not in page and "other" in page
