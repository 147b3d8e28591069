"""Where an arriving alert belongs, from the latest episode alone."""

from __future__ import annotations

from remediator.episodes import Episode, Placement, place

OPEN = Episode(id=1, fingerprint="f", starts_at=100.0, resolved_at=None)
CLOSED = Episode(id=1, fingerprint="f", starts_at=100.0, resolved_at=200.0)


def test_first_sighting() -> None:
    assert place(None, status="firing", starts_at=100, ends_at=None) is Placement.NEW_OPEN
    assert place(None, status="resolved", starts_at=100, ends_at=150) is Placement.NEW_CLOSED


def test_open_episode() -> None:
    assert place(OPEN, status="firing", starts_at=100, ends_at=None) is Placement.SAME
    # startsAt moved earlier (an HA peer saw it first): still the same episode.
    assert place(OPEN, status="firing", starts_at=90, ends_at=None) is Placement.SAME
    assert place(OPEN, status="resolved", starts_at=100, ends_at=200) is Placement.CLOSE


def test_closed_episode_late_repeats_and_new_episodes() -> None:
    assert place(CLOSED, status="firing", starts_at=100, ends_at=None) is Placement.SAME
    assert place(CLOSED, status="resolved", starts_at=100, ends_at=200) is Placement.SAME
    assert place(CLOSED, status="firing", starts_at=200, ends_at=None) is Placement.NEW_OPEN
    assert place(CLOSED, status="resolved", starts_at=300, ends_at=400) is Placement.NEW_CLOSED
