"""Issue 18, item 9: an audit chain its own database cannot forge.

An attacker with write access to the database (raw SQL here, on real SQLite and PostgreSQL)
rewrites the chain the way the unkeyed SHA-256 chain allows: change the records, renumber them,
recompute every hash and move the head. Today's ``audit verify`` calls that intact. With the
Ed25519 public key of the signed checkpoints and the last checkpoint exported outside the store,
every such rewrite is reported; an attacker who also holds the signing key still cannot rewrite
what lies at or below an exported checkpoint. A plaintext record slipped into a store that
encrypts is refused.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from remediator import logs
from remediator.audit.events import AUDIT_SIGNED_CHECKPOINT, GENESIS_HASH, Event, chain, evolve
from remediator.audit.recording import Recording, cipher_from_env
from remediator.audit.signing import Checkpoint, keygen, load_private, sign
from remediator.clock import FakeClock
from remediator.config import model as config_mod
from remediator.config.auth import Authenticator
from remediator.engine.checkpoints import Checkpointer, checkpointer
from remediator.engine.verifier import Trust, Verdict, verify_store
from remediator.errors import ConfigError
from remediator.http.app import build_runtime, start, stop
from remediator.metrics import Metrics
from remediator.plugins import Plugins
from remediator.store import Store
from remediator.store.chain import INSERT_EVENTS
from remediator.store.records import EVENT_COLUMNS, event_from_row, event_row
from remediator.store.sqlite import sqlite_path
from tests.reliability.conftest import Figures
from tests.reliability.support import webhook_sink
from tests.store_helpers import event, opened, store_url

__all__ = ["store_url"]  # the fixture

Rewrite = Callable[[list[Event]], list[Event]]


def signer(tmp_path: Path) -> Ed25519PrivateKey:
    private, _ = keygen(tmp_path / "audit.key")
    return load_private(private)


async def build(store: Store, key: Ed25519PrivateKey) -> Checkpoint:
    """Records 1-20, a signed checkpoint of 20 (record 21), records 22-40, a signed checkpoint
    of 40 (record 41, the last one exported), records 42-50; that exported checkpoint."""
    signer_ = Checkpointer(
        store=store, key=key, every=1000, interval=300.0, clock=FakeClock(5000.0), metrics=Metrics()
    )
    await store.append([event(n) for n in range(1, 21)])
    await signer_.checkpoint("test")
    await store.append([event(n) for n in range(22, 41)])
    exported = await signer_.checkpoint("test")
    await store.append([event(n) for n in range(42, 51)])
    assert exported is not None and exported.seq == 40
    return exported


# -- what write access to the database allows -------------------------------------------------


def _sql(url: str, statements: list[tuple[str, tuple[object, ...]]]) -> list[tuple[object, ...]]:
    """Run statements (``?`` placeholders) straight on the database; the last one's rows."""
    rows: list[tuple[object, ...]] = []
    if url.startswith("sqlite:"):
        conn = sqlite3.connect(sqlite_path(url))
        for sql, params in statements:
            rows = conn.execute(sql, params).fetchall()
        conn.commit()
        conn.close()
        return rows
    with psycopg.connect(url, autocommit=False) as pg:
        for sql, params in statements:
            cur = pg.execute(sql.replace("?", "%s"), params)
            rows = cur.fetchall() if cur.description else []
        pg.commit()
    return rows


def forge(
    url: str, rewrite: Rewrite, *, key: Ed25519PrivateKey | None = None, keep_signed: bool = False
) -> None:
    """Read every record, ``rewrite`` the list, renumber it and recompute every hash (the
    public, unkeyed algorithm) from the retention checkpoint, replace the table and move the
    head. The signed checkpoint records are dropped (their signatures cannot be remade), kept
    as they were (``keep_signed``), or re-signed with ``key``."""
    rows = _sql(url, [(f"SELECT {EVENT_COLUMNS} FROM events ORDER BY id", ())])
    records = rewrite([event_from_row(tuple(row)) for row in rows])
    out: list[tuple[object, ...]] = []
    pruned = _sql(url, [("SELECT through_id, hash FROM audit_checkpoint", ())])
    last_id, prev = (int(str(pruned[0][0])), str(pruned[0][1])) if pruned else (0, GENESIS_HASH)
    for record in records:
        if record.type == AUDIT_SIGNED_CHECKPOINT and not keep_signed:
            if key is None:
                continue
            resigned = sign(key, seq=last_id, hash_=prev, now=record.time)
            record = evolve(record, details={**record.details, **resigned.details()})
        last_id += 1
        linked, details = chain(record, event_id=last_id, prev_hash=prev)
        out.append(event_row(linked, Recording(), details))
        prev = linked.hash
    _sql(
        url,
        [
            ("DELETE FROM events", ()),
            *((INSERT_EVENTS, row) for row in out),
            ("UPDATE audit_head SET last_id = ?, last_hash = ? WHERE id = 1", (last_id, prev)),
        ],
    )


def _changed(record: Event, text: str) -> Event:
    return evolve(record, message=text)


# The four tamper kinds, and rewriting the tail and the head. Each one changes something at or
# below record 40, whose checkpoint was exported.
ATTACKS: dict[str, Rewrite] = {
    "deleted in the middle": lambda rs: [r for r in rs if not 10 <= (r.id or 0) <= 12],
    "forged record inserted": lambda rs: [
        *rs[:15],
        Event(type="recovery:succeeded", time=1015.5, message="all fine"),
        *rs[15:],
    ],
    "record modified": lambda rs: [_changed(r, "nothing happened") if r.id == 5 else r for r in rs],
    "tail deleted": lambda rs: [r for r in rs if (r.id or 0) <= 30],
    "tail and head rewritten": lambda rs: [
        _changed(r, f"rewritten {r.id}") if (r.id or 0) >= 36 else r for r in rs
    ],
}


def verified(url: str, recording: Recording | None = None, trust: Trust | None = None) -> Verdict:
    async def main() -> Verdict:
        async with opened(url) as store:
            return await verify_store(store, recording, trust)

    return asyncio.run(main())


def prepared(url: str, key: Ed25519PrivateKey) -> Checkpoint:
    async def main() -> Checkpoint:
        async with opened(url, Recording()) as store:
            return await build(store, key)

    return asyncio.run(main())


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_a_rewrite_by_the_database_alone_is_caught_with_the_key_and_the_exported_checkpoint(
    store_url: str, tmp_path: Path, attack: str, figures: Figures
) -> None:
    key = signer(tmp_path)
    exported = prepared(store_url, key)
    trust = Trust(public=key.public_key(), exported=((exported.seq, exported.digest),))
    assert verified(store_url, trust=trust).ok
    forge(store_url, ATTACKS[attack])
    unkeyed = verified(store_url)
    assert unkeyed.ok and "the chain is unkeyed" in unkeyed.line()  # what the hashes alone say
    caught = verified(store_url, trust=trust)
    assert not caught.ok, caught.line()
    assert "exported checkpoint" in caught.problem or "signed checkpoint" in caught.problem
    figures(problem=caught.problem.partition(":")[0])  # without the digest (random)


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_an_attacker_with_the_signing_key_cannot_rewrite_below_an_exported_checkpoint(
    store_url: str, tmp_path: Path, attack: str
) -> None:
    key = signer(tmp_path)
    exported = prepared(store_url, key)
    forge(store_url, ATTACKS[attack], key=key)
    public_only = verified(store_url, trust=Trust(public=key.public_key()))
    assert public_only.ok, public_only.line()  # re-signed: the stored checkpoints agree
    caught = verified(store_url, trust=Trust(key.public_key(), ((exported.seq, exported.digest),)))
    assert not caught.ok and "exported checkpoint 40:" in caught.problem, caught.line()


def test_what_an_exported_checkpoint_cannot_cover(store_url: str, tmp_path: Path) -> None:
    """Records after the last checkpoint (signed and exported) are vouched for by nothing yet:
    a rewrite of them, here by the key's holder, verifies (the documented exposure)."""
    key = signer(tmp_path)
    exported = prepared(store_url, key)
    trust = Trust(public=key.public_key(), exported=((exported.seq, exported.digest),))
    after: Rewrite = lambda rs: [_changed(r, "later") if r.id == 45 else r for r in rs]  # noqa: E731
    forge(store_url, after, key=key)
    assert verified(store_url, trust=trust).ok  # the documented limit: sign and export often


def test_the_public_key_alone_catches_a_rewrite_below_a_stored_signed_checkpoint(
    store_url: str, tmp_path: Path
) -> None:
    key = signer(tmp_path)
    prepared(store_url, key)
    public = Trust(public=key.public_key())

    forge(store_url, lambda rs: [_changed(r, "nothing happened") if r.id == 5 else r for r in rs],
          keep_signed=True)  # fmt: skip
    kept = verified(store_url, trust=public)
    assert not kept.ok and kept.first_bad_id == 21, kept.line()
    assert "signed checkpoint of record 20 does not match the chain" in kept.problem
    forge(store_url, lambda rs: rs)  # now drop every signed checkpoint record
    dropped = verified(store_url, trust=public)
    assert not dropped.ok and "no signed checkpoint" in dropped.problem, dropped.line()


def test_a_plaintext_record_in_an_encrypted_store_is_refused(store_url: str) -> None:
    env = "REMEDIATOR_TEST_FORGERY_KEY"
    sealing = Recording(cipher=cipher_from_env(env, {env: Fernet.generate_key().decode()}))

    async def main() -> None:
        async with opened(store_url, sealing) as store:
            await store.append([event(n) for n in range(1, 6)])

    asyncio.run(main())
    assert verified(store_url, sealing).ok
    # Without the Fernet key the attacker appends a record in the clear, chained and headed.
    [(head_id, head_hash)] = _sql(store_url, [("SELECT last_id, last_hash FROM audit_head", ())])
    forged = Event(type="recovery:succeeded", time=1006.0, message="restarted db: all fine")
    linked, details = chain(forged, event_id=int(str(head_id)) + 1, prev_hash=str(head_hash))
    _sql(
        store_url,
        [
            (INSERT_EVENTS, event_row(linked, Recording(), details)),
            ("UPDATE audit_head SET last_id = ?, last_hash = ? WHERE id = 1", (linked.id, linked.hash)),
        ],
    )  # fmt: skip
    refused = verified(store_url, sealing)
    assert not refused.ok and refused.first_bad_id == 6, refused.line()
    assert "stored in the clear in a store that encrypts" in refused.problem


def test_an_intact_chain_passes_and_says_what_the_signatures_cover(
    store_url: str, tmp_path: Path
) -> None:
    key = signer(tmp_path)
    exported = prepared(store_url, key)
    verdict = verified(
        store_url, trust=Trust(key.public_key(), ((exported.seq, exported.hash[:8]),))
    )
    assert verdict.ok and verdict.checked == 50, verdict.line()
    assert "signed checkpoints: 2 valid, the last covers record 40" in verdict.line()
    assert "10 records after it are covered by no signature yet" in verdict.line()
    other = Ed25519PrivateKey.generate().public_key()
    wrong = verified(store_url, trust=Trust(public=other))
    assert not wrong.ok and "does not verify with the public key" in wrong.problem


# -- the running service signs, records and exports its checkpoints -----------------------------


def fresh(n: int) -> Event:
    """A record of now: nothing for retention to prune while the service runs."""
    return Event(type="test:event", time=time.time(), message=f"event {n}")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "remediator", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_the_service_exports_each_checkpoint_and_verify_checks_the_chain_against_them(
    store_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    keyed = _cli("audit", "keygen", str(tmp_path / "audit.key"))
    assert keyed.returncode == 0, keyed.stderr
    assert stat.S_IMODE((tmp_path / "audit.key").stat().st_mode) == 0o600
    config = tmp_path / "remediator.yml"
    audit = f"{{signing_key_file: '{tmp_path / 'audit.key'}', checkpoint_every: 5}}"
    with webhook_sink() as sink:
        config.write_text(
            f"store: {{url: '{store_url}'}}\nhealth: {{enabled: false}}\naudit: {audit}\n"
            f"notifications: {{webhooks: [{{name: audit, url: '{sink.url}'}}]}}\n"
        )
        cfg = config_mod.load(str(config))

        def reasons() -> list[str]:
            found = [r for r in caplog.records if r.getMessage() == "audit checkpoint signed"]
            return [str(r.__dict__["reason"]) for r in found]

        async def until(check: Callable[[], bool], what: str) -> None:
            for _ in range(150):
                if check():
                    return
                await asyncio.sleep(0.1)
            raise AssertionError(f"timed out waiting for {what}")

        async def main() -> tuple[float, dict[str, str]]:
            async with opened(store_url) as store:
                await store.append([fresh(n) for n in range(1, 4)])
            rt = await build_runtime(cfg, authenticator=Authenticator([]), plugins=Plugins())
            await start(rt)  # signs the head at start-up
            assert rt.checkpoints is not None
            await rt.store.append([fresh(n) for n in range(4, 10)])  # >= checkpoint_every
            await until(lambda: "events" in reasons(), "a checkpoint for the events")
            await until(lambda: len(sink.phases("info")) >= 2, "checkpoints at the webhook")
            sequence = rt.metrics.registry.get_sample_value("remediator_audit_checkpoint_sequence")
            info = {
                s.labels["seq"]: s.labels["digest"]
                for m in rt.metrics.registry.collect()
                if m.name == "remediator_audit_checkpoint"
                for s in m.samples
            }
            await rt.store.append([fresh(10)])
            await stop(rt)  # signs once more: the chain grew
            return sequence or 0.0, info

        with caplog.at_level(logging.INFO, logger="remediator.audit"):
            sequence, info = asyncio.run(main())
        signed = [r for r in caplog.records if r.getMessage() == "audit checkpoint signed"]
        assert reasons() == ["startup", "events", "shutdown"]
        lines = [logs.JsonFormatter().format(r) for r in signed]
        second = json.loads(lines[1])
        assert sequence == second["seq"] and info == {str(second["seq"]): second["digest"]}
        assert len(info) == 1  # one series, replaced on each checkpoint
        hooked = [b["data"]["details"] for b in sink.phases("info")]
        assert {d["seq"] for d in hooked} >= {json.loads(line)["seq"] for line in lines[:2]}
    exported = tmp_path / "checkpoints.log"
    exported.write_text("\n".join(["not a checkpoint", *lines]) + "\n")
    ok = _cli("audit", "verify", "--config", str(config), "--checkpoints", str(exported))
    assert ok.returncode == 0, ok.stderr
    assert "signed checkpoints: 3 valid" in ok.stdout and "unkeyed" not in ok.stdout
    # A database-only rewrite of the tail and the head: verify, holding the public key only
    # and the exported lines, says so.
    (tmp_path / "audit.key").unlink()  # the verifier needs only the public key
    config.write_text(f"store: {{url: '{store_url}'}}\n")
    forge(
        store_url,
        lambda rs: [_changed(r, "rewritten") if r.type == "test:event" else r for r in rs],
    )
    public = str(tmp_path / "audit.key.pub")
    broken = _cli("audit", "verify", "--config", str(config), "--public-key", public,
                  "--checkpoints", str(exported))  # fmt: skip
    assert broken.returncode == 1 and "exported checkpoint" in broken.stderr, broken.stderr
    unkeyed = _cli("audit", "verify", "--config", str(config))
    assert unkeyed.returncode == 0 and "the chain is unkeyed" in unkeyed.stdout


def test_a_signing_key_others_may_read_is_refused(tmp_path: Path) -> None:
    private, _ = keygen(tmp_path / "audit.key")
    private.chmod(0o640)
    cfg = config_mod.parse(
        {"store": {"url": f"sqlite:///{tmp_path}/s.db"}, "audit": {"signing_key_file": str(private)}},
        env={},
    )  # fmt: skip
    with pytest.raises(ConfigError, match=r"accessible by its group or others \(mode 0640\)"):
        checkpointer(cfg, store=None, clock=FakeClock(), metrics=Metrics())  # type: ignore[arg-type]
    config = tmp_path / "remediator.yml"
    config.write_text(
        f"store: {{url: 'sqlite:///{tmp_path}/s.db'}}\naudit: {{signing_key_file: '{private}'}}\n"
    )
    refused = _cli("serve", "--config", str(config), "--insecure-no-auth", "--host", "127.0.0.1")
    assert refused.returncode == 1 and "mode 0640" in refused.stderr, refused.stderr
    again = _cli("audit", "keygen", str(private))
    assert again.returncode == 1 and "exists; not overwritten" in again.stderr


def test_the_checkpointer_signs_after_enough_events_or_an_interval_of_news_only(
    store_url: str, tmp_path: Path
) -> None:
    clock = FakeClock(5000.0)

    async def main() -> None:
        async with opened(store_url, Recording()) as store:
            signer_ = Checkpointer(store=store, key=signer(tmp_path), every=5, interval=60.0,
                                   clock=clock, metrics=Metrics(), owner="a")  # fmt: skip
            await store.append([event(n) for n in range(1, 3)])
            assert (await signer_.checkpoint("startup") or Checkpoint(0, "", 0)).seq == 2
            assert await signer_.run_once() is None  # only its own record since
            await store.append([event(n) for n in range(4, 9)])
            by_count = await signer_.run_once()
            assert by_count is not None and by_count.seq == 8
            await store.append([Event(type="notification:sent", time=5000.0, action="webhook")])
            clock.advance(61)
            assert await signer_.run_once() is None  # a delivery alone is no news
            await store.append([event(11)])
            by_time = await signer_.run_once()
            assert by_time is not None and by_time.seq == 11
            other = Checkpointer(store=store, key=signer_.key, every=1, interval=1.0,
                                 clock=clock, metrics=Metrics(), owner="b")  # fmt: skip
            await store.append([event(13)])
            assert await other.run_once() is None  # "a" holds the checkpoint lease

    asyncio.run(main())


def test_exported_checkpoints_that_retention_deleted_are_skipped_but_not_all_of_them(
    store_url: str, tmp_path: Path
) -> None:
    key = signer(tmp_path)
    exported = prepared(store_url, key)

    async def prune() -> None:
        async with opened(store_url, Recording()) as store:
            assert await store.prune(before=1030.5, now=1100.0, recording=Recording()) == 30
            assert await unattested_verdict(store, key) is not None  # until the next checkpoint
            await Checkpointer(store=store, key=key, every=1000, interval=300.0,
                               clock=FakeClock(5100.0), metrics=Metrics()).checkpoint("test")  # fmt: skip

    asyncio.run(prune())
    older = (20, "0" * 16)  # deleted by retention: not checked
    newest = (exported.seq, exported.digest)
    both = verified(store_url, trust=Trust(key.public_key(), (older, newest)))
    assert both.ok and "below the retention checkpoint (record 30), not checked: 1" in both.line()
    alone = verified(store_url, trust=Trust(key.public_key(), (older,)))
    assert not alone.ok and "below the retention checkpoint (record 30)" in alone.problem


async def unattested_verdict(store: Store, key: Ed25519PrivateKey) -> str | None:
    """The problem with the retention checkpoint under the public key, if any."""
    verdict = await verify_store(store, None, Trust(public=key.public_key()))
    return None if verdict.ok else verdict.problem


def test_records_deleted_from_the_start_behind_retentions_back_are_caught(
    store_url: str, tmp_path: Path
) -> None:
    """The attacker deletes records 1-30, sets the unkeyed retention checkpoint row to record
    30, and appends retention's ``audit:checkpoint`` record at the tail, chained and headed."""
    key = signer(tmp_path)
    exported = prepared(store_url, key)
    [(through_hash,)] = _sql(store_url, [("SELECT hash FROM events WHERE id = 30", ())])
    [(head_id, head_hash)] = _sql(store_url, [("SELECT last_id, last_hash FROM audit_head", ())])
    fake = Event(type="audit:checkpoint", time=1100.0, actor="retention",
                 message="pruned 30 events through id 30",
                 details={"through_id": 30, "hash": through_hash})  # fmt: skip
    linked, details = chain(fake, event_id=int(str(head_id)) + 1, prev_hash=str(head_hash))
    _sql(
        store_url,
        [
            ("DELETE FROM events WHERE id <= 30", ()),
            ("INSERT INTO audit_checkpoint (id, through_id, hash, pruned_at) VALUES (1, 30, ?, 1100.0)",
             (through_hash,)),
            (INSERT_EVENTS, event_row(linked, Recording(), details)),
            ("UPDATE audit_head SET last_id = ?, last_hash = ? WHERE id = 1", (linked.id, linked.hash)),
        ],
    )  # fmt: skip
    assert verified(store_url).ok  # the hashes alone: a retention like any other
    trust = Trust(key.public_key(), ((exported.seq, exported.digest),))
    caught = verified(store_url, trust=trust)
    assert not caught.ok and caught.first_bad_id == 51, caught.line()
    assert "not covered by a signed checkpoint" in caught.problem
