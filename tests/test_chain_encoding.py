"""Chaining an event: the hash is SHA-256 over the canonical record, however it is assembled."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from remediator.audit.events import Event, canonical, chain, record_hash

_TEXT = st.text(max_size=24)
_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), _TEXT)
_DETAILS = st.dictionaries(_TEXT, _SCALAR | st.lists(_SCALAR, max_size=3), max_size=6)


@settings(max_examples=500, deadline=None)
@given(
    kind=_TEXT,
    when=st.floats(allow_nan=False, allow_infinity=False),
    message=_TEXT,
    target=_TEXT,
    details=_DETAILS,
    duration=st.none() | st.floats(allow_nan=False, allow_infinity=False),
    event_id=st.integers(1, 2**53),
    prev=_TEXT,
)
def test_chain_hashes_the_canonical_record_and_encodes_the_details_once(
    kind: str,
    when: float,
    message: str,
    target: str,
    details: dict[str, Any],
    duration: float | None,
    event_id: int,
    prev: str,
) -> None:
    event = Event(
        type=kind, time=when, message=message, target=target, details=details, duration=duration
    )
    linked, encoded = chain(event, event_id=event_id, prev_hash=prev)
    expected = replace(event, id=event_id, prev_hash=prev, hash="")
    assert linked == replace(expected, hash=record_hash(expected))
    assert json.loads(encoded) == details
    assert f'"details":{encoded},'.encode() in canonical(linked)
    assert event.chained(event_id=event_id, prev_hash=prev) == linked
