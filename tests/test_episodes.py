"""Where an arriving alert belongs, from the latest episode alone."""

from __future__ import annotations

from remediator.alerts import Episode, Placement, place

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


def test_late_copies_of_an_earlier_episode_are_stale() -> None:
    previous = Episode(id=1, fingerprint="f", starts_at=100.0, resolved_at=200.0)
    current = Episode(id=2, fingerprint="f", starts_at=300.0, resolved_at=None)
    # An HA peer's resolve of the first episode arrives after the second began.
    assert place(current, status="resolved", starts_at=100, ends_at=200) is Placement.STALE
    # ... and its firing copy of the first episode.
    assert (
        place(current, status="firing", starts_at=100, ends_at=None, previous=previous)
        is Placement.STALE
    )
    # The current episode's own re-sends and resolve are not stale.
    assert (
        place(current, status="firing", starts_at=300, ends_at=None, previous=previous)
        is Placement.SAME
    )
    assert (
        place(current, status="firing", starts_at=250, ends_at=None, previous=previous)
        is Placement.SAME
    )
    assert place(current, status="resolved", starts_at=300, ends_at=400) is Placement.CLOSE
