"""Schema migrations, applied in order on open. Never edit a released migration: add one."""

from __future__ import annotations

SQLITE_MIGRATIONS: tuple[str, ...] = (
    # 1: intake — episodes, inbox, the event chain.
    """
    CREATE TABLE episodes (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        fingerprint TEXT NOT NULL,
        alertname TEXT NOT NULL DEFAULT '',
        starts_at REAL NOT NULL,
        opened_at REAL NOT NULL,
        resolved_at REAL
    );
    CREATE INDEX episodes_fingerprint ON episodes (fingerprint, id);
    CREATE TABLE inbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        fingerprint TEXT NOT NULL,
        episode_id INTEGER NOT NULL REFERENCES episodes (id),
        status TEXT NOT NULL,
        alertname TEXT NOT NULL,
        labels TEXT NOT NULL,
        annotations TEXT NOT NULL,
        starts_at REAL NOT NULL,
        ends_at REAL,
        generator_url TEXT NOT NULL,
        receiver TEXT NOT NULL,
        group_key TEXT NOT NULL,
        received_at REAL NOT NULL,
        priority INTEGER NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending',
        claimed_by TEXT,
        lease_until REAL,
        attempts INTEGER NOT NULL DEFAULT 0,
        outcome TEXT,
        done_at REAL,
        UNIQUE (fingerprint, episode_id, status)
    );
    CREATE INDEX inbox_pending ON inbox (state, priority, id);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        time REAL NOT NULL,
        type TEXT NOT NULL,
        severity TEXT NOT NULL,
        category TEXT NOT NULL,
        target TEXT NOT NULL,
        playbook TEXT NOT NULL,
        action TEXT NOT NULL,
        outcome TEXT NOT NULL,
        duration REAL,
        fingerprint TEXT NOT NULL,
        alertname TEXT NOT NULL,
        status TEXT NOT NULL,
        message TEXT NOT NULL,
        actor TEXT NOT NULL,
        config_version INTEGER NOT NULL,
        details TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    CREATE INDEX events_type_time ON events (type, time);
    CREATE INDEX events_time ON events (time);
    CREATE TRIGGER events_no_update BEFORE UPDATE ON events
        BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
    """,
    # 2: the engine — remediations (exactly once per playbook, fingerprint, episode), circuit
    # breakers, flags (the kill switch), per-target state (registration, quarantine, failover).
    """
    ALTER TABLE episodes ADD COLUMN target TEXT;
    CREATE INDEX episodes_open ON episodes (resolved_at, target);
    CREATE TABLE remediations (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        playbook TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        episode_id INTEGER NOT NULL,
        target TEXT NOT NULL,
        state TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        started_at REAL NOT NULL,
        finished_at REAL,
        attempts INTEGER NOT NULL DEFAULT 0,
        config_version INTEGER NOT NULL DEFAULT 0,
        UNIQUE (playbook, fingerprint, episode_id)
    );
    CREATE INDEX remediations_target ON remediations (target, started_at);
    CREATE INDEX remediations_state ON remediations (state);
    CREATE TABLE breakers (
        target TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        failures INTEGER NOT NULL,
        opened_at REAL,
        trials INTEGER NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE flags (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        actor TEXT NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE target_state (
        target TEXT PRIMARY KEY,
        registered_at REAL,
        quarantined_at REAL,
        quarantine_reason TEXT,
        data TEXT NOT NULL DEFAULT '{}'
    );
    """,
    # 3: notifications and the audit chain's anchors — the outbox (written in the transaction
    # of the event that causes it), Slack threads per incident, the chain head (detects a
    # truncated tail) and the retention checkpoint.
    """
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id INTEGER NOT NULL,
        channel TEXT NOT NULL,
        destination TEXT NOT NULL,
        incident TEXT NOT NULL,
        phase TEXT NOT NULL,
        payload TEXT NOT NULL,
        dedupe_key TEXT UNIQUE,
        state TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        claimed_by TEXT,
        lease_until REAL,
        last_error TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        sent_at REAL
    );
    CREATE INDEX outbox_due ON outbox (state, next_attempt_at, id);
    CREATE TABLE slack_threads (
        incident TEXT NOT NULL,
        destination TEXT NOT NULL,
        channel TEXT NOT NULL,
        ts TEXT NOT NULL,
        PRIMARY KEY (incident, destination)
    );
    CREATE TABLE audit_head (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        last_id INTEGER NOT NULL,
        last_hash TEXT NOT NULL
    );
    CREATE TABLE audit_checkpoint (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        through_id INTEGER NOT NULL,
        hash TEXT NOT NULL,
        pruned_at REAL NOT NULL
    );
    INSERT INTO audit_head (id, last_id, last_hash)
        SELECT 1, id, hash FROM events ORDER BY id DESC LIMIT 1;
    """,
    # 4: leases for several replicas — a remediation is owned under a lease (taken over when
    # its replica dies), and singletons (reconciliation, retention) run where a lease is held.
    """
    ALTER TABLE remediations ADD COLUMN owner TEXT NOT NULL DEFAULT '';
    ALTER TABLE remediations ADD COLUMN lease_until REAL;
    CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        until REAL NOT NULL
    );
    """,
    # 5: the blast-radius guard asks, per target of a type, whether it has an open episode.
    """
    CREATE INDEX episodes_open_target ON episodes (target) WHERE resolved_at IS NULL;
    """,
    # 6: repeats of an alert state (Alertmanager re-sends, HA peers) are counted on its inbox
    # row; one alert:duplicate record per audit.duplicate_interval (remediator/store/inbox.py).
    """
    ALTER TABLE inbox ADD COLUMN repeats INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE inbox ADD COLUMN repeat_recorded_at REAL;
    ALTER TABLE inbox ADD COLUMN repeats_recorded INTEGER NOT NULL DEFAULT 0;
    """,
    # 7: failure patterns added through the API (POST /patterns), kept across reloads and
    # restarts, in the order they were added (remediator/store/api_patterns.py).
    """
    CREATE TABLE patterns (
        id TEXT PRIMARY KEY,
        position INTEGER NOT NULL,
        spec TEXT NOT NULL,
        actor TEXT NOT NULL,
        added_at REAL NOT NULL
    );
    """,
    # 8: step intents — before a state-changing step calls its action, the run records which step
    # of which remediation it is about to take, when, and what it saw of the target (the
    # pre-call probe); a replica taking the remediation over checks whether that step already
    # took effect instead of repeating it (remediator/engine/intents.py). Independent of any other
    # migration: one new table.
    """
    CREATE TABLE IF NOT EXISTS step_intents (
        remediation_id INTEGER NOT NULL,
        step INTEGER NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        owner TEXT NOT NULL,
        began_at REAL NOT NULL,
        probe TEXT NOT NULL DEFAULT '{}',
        PRIMARY KEY (remediation_id, step)
    );
    """,
    # Retention of finished rows (remediator/store/growth.py): each prune batch reads its oldest
    # finished rows by index, and an episode's remediations are found by it. Indexes only:
    # independent of any other migration.
    """
    CREATE INDEX IF NOT EXISTS inbox_done ON inbox (received_at) WHERE state = 'done';
    CREATE INDEX IF NOT EXISTS outbox_settled ON outbox (created_at) WHERE state <> 'pending';
    CREATE INDEX IF NOT EXISTS remediations_finished ON remediations (finished_at)
        WHERE finished_at IS NOT NULL;
    CREATE INDEX IF NOT EXISTS remediations_episode ON remediations (episode_id);
    """,
    # 10: alert storms (issue 18) — the outbox claim looks up an incident's earlier pending row by
    # index (it scanned every pending row per row: 200 s at 30,000 rows); escalations that a
    # storm makes are delivered in batches (``batch_key``: remediator/engine/outbox.py); poisoned
    # inbox items (quarantined after worker.max_attempts claims) are listed by index.
    """
    ALTER TABLE outbox ADD COLUMN batch_key TEXT;
    CREATE INDEX outbox_incident ON outbox (channel, destination, incident, id)
        WHERE state = 'pending';
    CREATE INDEX outbox_batch ON outbox (channel, destination, batch_key, id)
        WHERE state = 'pending' AND batch_key IS NOT NULL;
    CREATE INDEX inbox_poisoned ON inbox (id) WHERE state = 'poisoned';
    """,
    # approvals — a remediation waiting for a person (state awaiting_approval) has one row here
    # until it is decided: approved, denied, expired, cancelled (its alert resolved) or skipped (a
    # guard blocked it at decision time); exactly one decision wins (remediator/store/approvals.py).
    # Signed requests already used (Slack interactions, email links) are kept to refuse replays.
    # Independent of any other migration: two new tables.
    """
    CREATE TABLE IF NOT EXISTS approvals (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        remediation_id INTEGER NOT NULL UNIQUE,
        playbook TEXT NOT NULL,
        target TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        episode_id INTEGER NOT NULL,
        state TEXT NOT NULL,
        requested_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        decided_by TEXT NOT NULL DEFAULT '',
        channel TEXT NOT NULL DEFAULT '',
        reason TEXT NOT NULL DEFAULT '',
        decided_at REAL,
        details TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX IF NOT EXISTS approvals_state ON approvals (state, expires_at);
    CREATE TABLE IF NOT EXISTS used_signatures (
        signature TEXT PRIMARY KEY,
        used_at REAL NOT NULL
    );
    """,
    # silences — the Alertmanager silences remediator made and has not expired yet, one per
    # reason (remediator/store/silences.py). Independent of any other migration: a new table.
    """
    CREATE TABLE IF NOT EXISTS silences (
        key TEXT PRIMARY KEY,
        silence_id TEXT NOT NULL,
        created_at REAL NOT NULL,
        ends_at REAL NOT NULL
    );
    """,
    # the console's incident timeline reads an incident's events by fingerprint, newest id first
    # (remediator/http/console/views.py). Independent of any other migration: one new index.
    """
    CREATE INDEX IF NOT EXISTS events_fingerprint ON events (fingerprint, id);
    """,
    # the W3C trace context (``traceparent``, a space, ``tracestate``) each inbox row continues:
    # the intake span's, or NULL with tracing off (remediator/tracing.py). Independent of any
    # other migration: one new nullable column.
    """
    ALTER TABLE inbox ADD COLUMN trace_context TEXT;
    """,
    # approvals of single steps — a remediation may wait for one approval per step that asks for
    # it (remediator/engine/step_approvals.py): `step` is the step's index (NULL: the playbook's
    # own approval), unique per remediation. SQLite cannot drop a column's UNIQUE, so the table
    # is rebuilt (its ids and their sequence kept). Independent of any other migration.
    """
    CREATE TABLE approvals_steps (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        remediation_id INTEGER NOT NULL,
        playbook TEXT NOT NULL,
        target TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        episode_id INTEGER NOT NULL,
        state TEXT NOT NULL,
        requested_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        decided_by TEXT NOT NULL DEFAULT '',
        channel TEXT NOT NULL DEFAULT '',
        reason TEXT NOT NULL DEFAULT '',
        decided_at REAL,
        details TEXT NOT NULL DEFAULT '{}',
        step INTEGER
    );
    INSERT INTO sqlite_sequence (name, seq)
        SELECT 'approvals_steps', seq FROM sqlite_sequence WHERE name = 'approvals';
    INSERT INTO approvals_steps (id, remediation_id, playbook, target, fingerprint, episode_id,
        state, requested_at, expires_at, decided_by, channel, reason, decided_at, details)
        SELECT id, remediation_id, playbook, target, fingerprint, episode_id, state,
        requested_at, expires_at, decided_by, channel, reason, decided_at, details FROM approvals;
    DROP TABLE approvals;
    ALTER TABLE approvals_steps RENAME TO approvals;
    CREATE INDEX IF NOT EXISTS approvals_state ON approvals (state, expires_at);
    CREATE UNIQUE INDEX IF NOT EXISTS approvals_step
        ON approvals (remediation_id, coalesce(step, -1));
    """,
    # arrivals — an inbox row's alert:received/resolved record is chained after the intake's
    # commit, by the worker's claim (remediator/store/arrivals.py): 1 while it is not chained
    # yet (rows stored before this migration were chained at intake: 0). Independent of any
    # other migration: one new column and one partial index.
    """
    ALTER TABLE inbox ADD COLUMN chain_pending INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX IF NOT EXISTS inbox_chain_pending ON inbox (priority, id) WHERE chain_pending = 1;
    """,
    # guards' history — the cooldown guard's "last counted start of (target, playbook)" reads
    # this index instead of every remediation of the target (dry runs and refusals included,
    # which never count), so the guards' read does not grow with the target's history. The
    # playbook first: reads by target alone keep remediations_target. Independent of any other
    # migration: one index.
    """
    CREATE INDEX IF NOT EXISTS remediations_counted
        ON remediations (playbook, target, state, started_at);
    """,
)
