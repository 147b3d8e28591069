"""Key rotation for encryption at rest, on both store backends: rows sealed with key A are read
after rotating to ``B,A`` (new rows sealed with B), and fail clearly once A is dropped."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from remediator.audit.events import Event
from remediator.audit.recording import SEALED, OutboxRow, Recording, cipher_from_env
from remediator.config import model as config_mod
from remediator.engine.verifier import verify_store
from remediator.errors import SealedUnreadable
from remediator.redaction import configured_secrets, redact_text
from remediator.store import EventQuery, Store
from tests.engine_harness import alert
from tests.store_helpers import chained, run, store_url

__all__ = ["store_url"]  # the fixture

ENV = "REMEDIATOR_TEST_AUDIT_KEYS"
A, B = Fernet.generate_key().decode(), Fernet.generate_key().decode()


def _route(event: Event) -> list[OutboxRow]:
    if not event.fingerprint:
        return []
    return [OutboxRow("webhook", "hook", event.fingerprint, event.status, {"m": event.message})]


def recording(keys: str) -> Recording:
    """The recording a configuration with ``audit.encryption_key_env`` set to ``keys`` builds."""
    return Recording(cipher=cipher_from_env(ENV, {ENV: keys}), route=_route)


async def write(store: Store, fingerprint: str, summary: str) -> None:
    await store.ingest(
        [alert(fingerprint, summary=summary, container=f"c-{fingerprint}")],
        received_at=1000.0,
        receiver="r",
        group_key="g",
    )
    await chained(store)  # its arrival, sealed with the key of the moment


async def messages(store: Store) -> dict[str, tuple[str, str, dict[str, object]]]:
    """Per fingerprint: (alertname, message, details) of its alert:received event."""
    found = await store.events(EventQuery(type="alert:received"))
    return {e.fingerprint: (e.alertname, e.message, e.details) for e in found}


def test_rotated_keys_read_old_and_new_rows_and_a_dropped_key_fails_clearly(
    store_url: str,
) -> None:
    async def with_a(store: Store) -> None:
        await write(store, "old", "written under A")

    async def with_b_then_a(store: Store) -> None:
        [item] = await store.claim(worker="w", now=1001.0, lease=30.0, limit=10)
        assert (item.fingerprint, item.annotations) == ("old", {"summary": "written under A"})
        assert item.labels["container"] == "c-old"
        [note] = await store.claim_outbox(worker="w", now=2000.0, lease=30.0, limit=10)
        assert note.payload == {"m": "ContainerMemoryHigh firing"}
        await store.outbox_retry(note.id, next_at=2001.0, error="HTTP 500: ContainerMemoryHigh")
        [[error]] = await store.raw("SELECT last_error FROM outbox")
        assert error.startswith(SEALED) and "ContainerMemoryHigh" not in error
        await store.complete(item.id, events=[], outcome="done")
        await write(store, "new", "written under B")
        seen = await messages(store)
        assert seen["old"][:2] == seen["new"][:2] == ("ContainerMemoryHigh", "ContainerMemoryHigh firing")  # fmt: skip
        assert (await verify_store(store)).ok

    async def with_b_only(store: Store) -> None:
        seen = await messages(store)
        assert seen["new"][1] == "ContainerMemoryHigh firing"
        assert seen["old"][1].startswith(SEALED) and seen["old"][2] == {"sealed": True}
        verdict = await verify_store(store)
        assert not verdict.ok and "key is not available" in verdict.line()
        [new] = await store.claim(worker="w", now=3000.0, lease=30.0, limit=10)
        assert new.annotations == {"summary": "written under B"}
        await store.complete(new.id, events=[], outcome="done")
        await write(store, "late", "written under B, old row pending")

    async def with_a_only(store: Store) -> None:
        """Key A alone cannot read what B sealed: the inbox claim fails with a stable code."""
        with pytest.raises(SealedUnreadable) as caught:
            await store.claim(worker="w", now=4000.0, lease=30.0, limit=10)
        assert caught.value.code == "KEY_UNAVAILABLE"
        assert "audit.encryption_key_env" in caught.value.message
        assert await store.pending_count() == 1  # nothing was claimed

    run(store_url, with_a, recording(A))
    run(store_url, with_b_then_a, recording(f"{B}, {A}"))
    run(store_url, with_b_only, recording(B))
    run(store_url, with_a_only, recording(A))


def test_the_key_variable_takes_a_comma_separated_list_and_names_a_bad_key() -> None:
    cipher = cipher_from_env(ENV, {ENV: f"{B},{A}"})
    assert cipher is not None
    token = Fernet(A.encode()).encrypt(b"old")
    assert cipher.decrypt(token) == b"old"
    assert Fernet(B.encode()).decrypt(cipher.encrypt(b"new")) == b"new"  # the first seals
    with pytest.raises(ValueError, match=f"key 2 of {ENV} is not a Fernet key"):
        cipher_from_env(ENV, {ENV: f"{B},not-a-key"})
    with pytest.raises(ValueError, match=f"{ENV} is not set"):
        cipher_from_env(ENV, {ENV: " , "})


def test_every_key_of_the_list_is_a_secret_kept_out_of_records() -> None:
    cfg = config_mod.parse({"audit": {"encryption_key_env": ENV}}, env={})
    secrets = configured_secrets(cfg, (), {ENV: f"{B}, {A}"})
    assert A in secrets and B in secrets
    assert redact_text(f"old key {A} new key {B}", secrets) == "old key *** new key ***"


def test_switching_encryption_on_keeps_plain_rows_readable_and_seals_new_ones(
    store_url: str,
) -> None:
    async def plain(store: Store) -> None:
        await write(store, "before", "stored in the clear")

    async def sealed(store: Store) -> None:
        await write(store, "after", "stored sealed")
        items = await store.claim(worker="w", now=1001.0, lease=30.0, limit=10)
        assert {i.fingerprint: i.annotations["summary"] for i in items} == {
            "before": "stored in the clear",
            "after": "stored sealed",
        }
        rows = await store.raw("SELECT fingerprint, annotations FROM inbox ORDER BY id")
        assert rows[0] == ("before", '{"summary": "stored in the clear"}')
        assert rows[1][0] == "after" and rows[1][1].startswith(SEALED)
        seen = await messages(store)
        assert seen["before"][1] == seen["after"][1] == "ContainerMemoryHigh firing"

    run(store_url, plain, Recording(route=_route))
    run(store_url, sealed, recording(A))
