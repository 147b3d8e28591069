"""Hostile alert text through the chain's built-once canonical encoder (issue 19).

The chain encodes each record with a C encoder built once instead of ``JSONEncoder.encode``
(remediator/audit/events.py). Alert text is attacker-controlled and reaches the records (every
record of an alert carries its ``alertname``): text posing as JSON and SQL, as the record's own
fields, control characters and a NUL, right-to-left and line-separator marks, a 4 kB name.
Alerts carrying it are stored, decided (skipped: no playbook matches them; one calm alert runs
its dry run beside them) and chained; every record's hash is the SHA-256 of the reference
encoding (``json.dumps`` of the whole record), the chain verifies, and each alert's name reads
back exactly as sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

from remediator.audit.events import Event
from tests.engine_harness import EngineHarness, alert, restart_playbook
from tests.store_helpers import chain_ok

HOSTILE = {
    "a": '{"type": "alert:resolved", "hash": "00"}',
    "b": "Down'); DELETE FROM events; --",
    "c": "\u202eHigh\u0007\u001b[31m\u00a0\u2028\u2029\x00",
    "d": "N" * 4096,
    "e": '\\"},"id":1,"prev_hash":"',
}


def _reference_hash(event: Event) -> str:
    record = {name: getattr(event, name) for name in Event.__slots__ if name != "hash"}
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def test_hostile_alert_text_is_chained_as_the_reference_encoding_hashes_it(
    tmp_path: Path,
) -> None:
    sections = {
        "targets": [{"name": "web-1", "type": "docker_container"}],
        "playbooks": [{**restart_playbook(), "dry_run": True}],
    }

    async def main() -> None:
        h = await EngineHarness.create(tmp_path, sections)
        try:
            sent = [alert("calm", container="web-1", summary=HOSTILE["a"])]
            sent += [alert(f"hostile-{key}", alertname=text) for key, text in HOSTILE.items()]
            await h.send(*sent)
            await h.drain()
            events = await chain_ok(h.rt.store)
            assert {e.type for e in events} >= {"alert:received", "recovery:dry_run"}
            for recorded in events:
                assert recorded.hash == _reference_hash(recorded), recorded.type
            received = {e.fingerprint: e for e in events if e.type == "alert:received"}
            for key, text in HOSTILE.items():
                assert received[f"hostile-{key}"].alertname == text
        finally:
            await h.close()

    asyncio.run(main())
