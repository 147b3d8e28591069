"""The inbox, the outbox and the audit chain are written once for both store backends, and the
audit verifier reads the chain only through the store."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path

from remediator.audit.recording import Recording
from remediator.store import create_store
from tests.store_helpers import event

PACKAGE = Path(__file__).resolve().parent.parent / "remediator"


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_the_audit_verifier_imports_no_backend_and_no_database_driver() -> None:
    imported = _imports(PACKAGE / "engine" / "verifier.py")
    assert "sqlite3" not in imported
    assert not {name for name in imported if name.startswith("remediator.store.sqlite")}
    assert not {name for name in imported if name.startswith("remediator.store.postgres")}


def test_the_backends_spell_no_statement_of_the_inbox_the_outbox_or_the_chain() -> None:
    for backend in ("sqlite.py", "postgres.py"):
        text = (PACKAGE / "store" / backend).read_text()
        for table in ("inbox", "outbox", "slack_threads", "events", "audit_head", "episodes"):
            for verb in ("INSERT INTO", "UPDATE", "DELETE FROM", "FROM"):
                assert f"{verb} {table} " not in text, (backend, verb, table)


def test_a_sqlite_file_is_read_and_pruned_through_the_store_chain_file(tmp_path: Path) -> None:
    from remediator.store import ChainFile

    url = f"sqlite:///{tmp_path}/s.db"

    async def fill() -> list[int]:
        store = create_store(url)
        await store.open()
        try:
            appended = await store.append([event(n) for n in range(1, 6)])
        finally:
            await store.close()
        return [e.id or 0 for e in appended]

    ids = asyncio.run(fill())
    chain = ChainFile(tmp_path / "s.db")
    try:
        assert chain.anchor().head_id == ids[-1] == 5
        assert [e.id for e in chain.records(2, 2, Recording())] == [3, 4]
    finally:
        chain.close()
    writer = ChainFile(tmp_path / "s.db", write=True)
    try:
        assert writer.prune(before=1003.5, now=2000.0, recording=Recording()) == 3
        anchor = writer.anchor()
        assert (anchor.checkpoint_id, anchor.head_id) == (3, 6)
    finally:
        writer.close()
