"""Whole behavioural suites, every test of them, again on a PostgreSQL store: the engine
(test_engine.py, and its writes per alert: test_engine_writes.py), the outbox (test_outbox.py) and the webhook intake through the app
(test_intake.py).

The tests are collected here a second time (same functions, same parameters); autouse and
overriding fixtures point the engine harness and the app's configuration at a fresh database
on the real server instead of SQLite. A test that restarts the engine (``run`` twice) reopens
the same database. SQLite-specific tests are left out (their PostgreSQL counterparts are in
test_store_postgres.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from remediator.config import model as config_mod
from tests import test_engine, test_engine_writes, test_intake, test_outbox
from tests.conftest import ALERTS, HEALTH, AppHarness, fixture_payload
from tests.engine_harness import EngineHarness, Recorder
from tests.test_outbox import slack, smtp  # noqa: F401  (the outbox tests' fixtures)

pytestmark = pytest.mark.postgres
SUITES = (test_engine, test_engine_writes, test_outbox, test_intake)
SQLITE_ONLY = {"test_store_that_cannot_commit_answers_503_and_recovers"}
TESTS = {
    name: getattr(suite, name)
    for suite in SUITES
    for name in dir(suite)
    if name.startswith("test_") and name not in SQLITE_ONLY
}
assert len(TESTS) + len(SQLITE_ONLY) == sum(
    len([n for n in dir(suite) if n.startswith("test_")]) for suite in SUITES
), "two suites have a test of the same name"
globals().update(TESTS)


@pytest.fixture(autouse=True)
def _engine_on_postgres(pg_database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    create = EngineHarness.create.__func__  # type: ignore[attr-defined]

    async def on_postgres(
        cls: type[EngineHarness],
        tmp_path: Path,
        sections: dict[str, Any],
        *,
        recorder: Recorder | None = None,
    ) -> EngineHarness:
        sections = {"store": {"url": pg_database}, **sections}
        harness: EngineHarness = await create(cls, tmp_path, sections, recorder=recorder)
        assert harness.rt.store.shared
        return harness

    monkeypatch.setattr(EngineHarness, "create", classmethod(on_postgres))


@pytest.fixture
def make_config(pg_database: str) -> Callable[..., config_mod.Config]:
    """The app's configuration (see tests/conftest.py), with the store on PostgreSQL."""

    def make(**sections: Any) -> config_mod.Config:
        data: dict[str, Any] = {"store": {"url": pg_database}}
        data.update(sections)
        return config_mod.parse(data, env={})

    return make


def test_every_suite_test_runs_here_too() -> None:
    assert TESTS and all(globals()[name] is test for name, test in TESTS.items())


def test_the_app_runs_on_postgres(harness: AppHarness) -> None:
    assert harness.runtime.store.shared


def test_a_read_only_database_answers_503_and_recovers(
    harness: AppHarness, headers: Callable[[str], dict[str, str]], pg_database: str
) -> None:
    """The PostgreSQL counterpart of test_intake's SQLite test: the database turns read-only
    (a failover to a standby), then writable again."""
    name = pg_database.rsplit("/", 1)[1]
    payload = fixture_payload("grouped.json")

    def read_only(on: bool) -> None:
        with psycopg.connect(pg_database, autocommit=True) as conn:
            conn.execute("SET default_transaction_read_only = off")  # this session writes
            setting = sql.SQL("SET default_transaction_read_only = on" if on else "RESET default_transaction_read_only")  # fmt: skip
            conn.execute(sql.SQL("ALTER DATABASE {} ").format(sql.Identifier(name)) + setting)
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND application_name = 'remediator'",
                (name,),
            )

    read_only(True)
    answer = harness.client.post(ALERTS, json=payload, headers=headers("alertmanager"))
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "STORE_UNAVAILABLE"
    assert harness.client.get(HEALTH).status_code == 503
    read_only(False)
    # Alertmanager retries a 503: the retry is stored in full.
    answer = harness.client.post(ALERTS, json=payload, headers=headers("alertmanager"))
    assert answer.status_code == 200
    assert answer.json()["new"] == len(payload["alerts"])
    assert harness.client.get(HEALTH).status_code == 200
