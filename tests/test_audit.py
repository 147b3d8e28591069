"""The tamper-evident audit log: `remediator audit verify` on a real store, and tampering."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from remediator.audit.recording import Recording
from remediator.engine import verifier as audit
from tests.engine_harness import EngineHarness, alert

WEB = {"name": "web", "type": "docker_container"}
KEY_ENV = "REMEDIATOR_TEST_AUDIT_KEY"


def populate(tmp_path: Path, extra: dict[str, object] | None = None) -> Path:
    """A real store with a few dozen events from real intake and engine work."""
    sections: dict[str, object] = {
        "targets": [WEB],
        "playbooks": [
            {"name": "restart", "match": ['alertname="ContainerMemoryHigh"'],
             "target": "{{ labels.container }}", "steps": [{"action": "docker.restart"}],
             "cooldown": "0s", "max_per_window": None}
        ],
        **(extra or {}),
    }  # fmt: skip

    async def main() -> None:
        h = await EngineHarness.create(tmp_path, sections)
        for i in range(6):
            await h.send(alert(f"a{i}", container="web"))
            await h.drain()
            h.clock.advance(60)
            await h.send(alert(f"a{i}", container="web", status="resolved", ends=h.clock.now()))
            await h.drain()
        await h.close()

    asyncio.run(main())
    return tmp_path / "engine.db"


def write_config(tmp_path: Path, db: Path, extra: str = "") -> Path:
    config = tmp_path / "remediator.yml"
    config.write_text(f"store: {{url: 'sqlite:///{db}'}}\n{extra}")
    return config


def verify(config: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "remediator", "audit", "verify", "--config", str(config)],
        capture_output=True, text=True, timeout=60, check=False, env={**os.environ, **(env or {})},
    )  # fmt: skip


def tamper(db: Path, *statements: str) -> None:
    conn = sqlite3.connect(db)
    conn.execute("DROP TRIGGER IF EXISTS events_no_update")
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    conn.close()


def test_verify_passes_on_a_real_run(tmp_path: Path) -> None:
    db = populate(tmp_path)
    done = verify(write_config(tmp_path, db))
    assert done.returncode == 0, done.stderr
    assert "audit chain intact" in done.stdout
    count = sqlite3.connect(db).execute("SELECT count(*) FROM events").fetchone()[0]
    assert f"{count} records verified" in done.stdout


TAMPERS: dict[str, tuple[Callable[[int], list[str]], str]] = {
    "modified": (
        lambda n: [f"UPDATE events SET message = 'nothing happened' WHERE id = {n // 2}"],
        "modified",
    ),
    "deleted": (lambda n: [f"DELETE FROM events WHERE id = {n // 2}"], "missing"),
    "reordered": (
        lambda n: [
            f"UPDATE events SET id = -1 WHERE id = {n // 2}",
            f"UPDATE events SET id = {n // 2} WHERE id = {n // 2 + 1}",
            f"UPDATE events SET id = {n // 2 + 1} WHERE id = -1",
        ],
        "deleted or reordered",
    ),
    "truncated tail": (lambda n: [f"DELETE FROM events WHERE id >= {n - 2}"], "truncated tail"),
}


@pytest.mark.parametrize("kind", sorted(TAMPERS))
def test_verify_catches_each_kind_of_tampering(tmp_path: Path, kind: str) -> None:
    db = populate(tmp_path)
    n = sqlite3.connect(db).execute("SELECT max(id) FROM events").fetchone()[0]
    statements, expected = TAMPERS[kind]
    tamper(db, *statements(n))
    done = verify(write_config(tmp_path, db))
    assert done.returncode == 1
    assert "BROKEN" in done.stderr and expected in done.stderr


def test_retention_prunes_behind_a_checkpoint_and_verify_still_passes(tmp_path: Path) -> None:
    db = populate(tmp_path)
    config = write_config(tmp_path, db)
    before, first, last = (
        sqlite3.connect(db).execute("SELECT count(*), min(time), max(time) FROM events").fetchone()
    )
    pruned = audit.prune(db, Recording(), before=(first + last) / 2, now=last + 1)
    assert pruned > 0
    after = sqlite3.connect(db).execute("SELECT count(*) FROM events").fetchone()[0]
    assert after == before - pruned + 1  # plus the checkpoint record
    kinds = [r[0] for r in sqlite3.connect(db).execute("SELECT type FROM events ORDER BY id")]
    assert kinds[-1] == "audit:checkpoint"
    done = verify(config)
    assert done.returncode == 0, done.stderr
    # Tampering with what is left is still caught.
    first = sqlite3.connect(db).execute("SELECT min(id) FROM events").fetchone()[0]
    tamper(db, f"DELETE FROM events WHERE id = {first}")
    assert verify(config).returncode == 1


def test_free_text_is_encrypted_at_rest_with_a_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = Fernet.generate_key().decode()
    monkeypatch.setenv(KEY_ENV, key)
    db = populate(tmp_path, {"audit": {"encryption_key_env": KEY_ENV}})
    rows = sqlite3.connect(db).execute("SELECT message, details FROM events").fetchall()
    assert rows and all(m.startswith("enc:") and d.startswith("enc:") for m, d in rows)
    assert not any("ContainerMemoryHigh" in m + d for m, d in rows)
    config = write_config(tmp_path, db, f"audit: {{encryption_key_env: {KEY_ENV}}}\n")
    assert verify(config).returncode == 0
    monkeypatch.delenv(KEY_ENV)
    without = verify(write_config(tmp_path, db))
    assert without.returncode == 1 and "key is not available" in without.stderr
