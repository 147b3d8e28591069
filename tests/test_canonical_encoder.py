"""The canonical encoder built once (issue 19) writes what ``json.dumps`` wrote, byte for byte.

Each event hashes three small dicts; ``JSONEncoder.encode`` builds a C encoder for every call,
so the chain builds it once. The chain written before must still verify: the hash of a record
is checked here against the reference encoding of the whole record, computed with
``json.dumps`` and ``hashlib`` alone.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from remediator.audit.events import Event, _canonical_text, chain, record_hash


def _reference(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


_SCALAR = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12),
    st.sampled_from([math.inf, -math.inf, 2**70, -(2**63), 1e-320, "\u2028", "\ud800", "\x00"]),
)  # fmt: skip
_VALUE = st.recursive(
    _SCALAR,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(value=_VALUE)
def test_the_built_once_encoder_writes_what_json_dumps_writes(value: Any) -> None:
    assert _canonical_text(value) == _reference(value)


@settings(max_examples=200, deadline=None)
@given(details=st.dictionaries(st.text(max_size=8), _VALUE, max_size=5), message=st.text())
def test_a_chained_records_hash_is_the_reference_encoding_of_the_whole_record(
    details: dict[str, Any], message: str
) -> None:
    event = Event(type="recovery:action", time=1.5, message=message, details=details)
    try:
        linked, encoded = chain(event, event_id=7, prev_hash="a" * 64)
    except UnicodeEncodeError:  # a lone surrogate: the reference refuses it the same way
        record = {f: getattr(event, f) for f in Event.__slots__ if f != "hash"}
        record.update(id=7, prev_hash="a" * 64)
        try:
            _reference(record).encode()
        except UnicodeEncodeError:
            return
        raise
    record = {f: getattr(linked, f) for f in Event.__slots__ if f != "hash"}
    text = _reference(record).encode()
    assert linked.hash == hashlib.sha256(text).hexdigest() == record_hash(linked)
    assert encoded == _reference(details)
