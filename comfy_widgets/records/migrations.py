"""Numbered schema migrations for the run store, applied in order and recorded in ``user_version``.

Each migration only adds tables, nullable (or defaulted) columns and indexes, so a store written
by a newer version of comfy_widgets (a higher ``user_version`` and columns this version does not
know) still opens and works here: every statement in ``sqlite.py`` names its columns explicitly.
To change the schema, append ``(next_number, sql)`` to ``MIGRATIONS``; never edit a released one.
"""

from __future__ import annotations

import logging
import sqlite3

log = logging.getLogger(__name__)

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE IF NOT EXISTS workflows (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            content_hash TEXT NOT NULL UNIQUE,
            format TEXT,
            workflow_json TEXT NOT NULL,
            default_parameters TEXT,
            created_at REAL NOT NULL,
            updated_at REAL
        );
        CREATE TABLE IF NOT EXISTS batches (
            id TEXT PRIMARY KEY,
            workflow_id INTEGER REFERENCES workflows(id),
            total_count INTEGER NOT NULL DEFAULT 0,
            completed_count INTEGER NOT NULL DEFAULT 0,
            failed_count INTEGER NOT NULL DEFAULT 0,
            status TEXT NOT NULL DEFAULT 'pending',
            spec_json TEXT,
            plan_seed INTEGER,
            plan_json TEXT,
            prompts_json TEXT,
            columns_json TEXT,
            servers_json TEXT,
            created_at REAL NOT NULL,
            updated_at REAL
        );
        CREATE TABLE IF NOT EXISTS generations (
            id INTEGER PRIMARY KEY,
            workflow_id INTEGER REFERENCES workflows(id),
            prompt_id TEXT NOT NULL UNIQUE,
            server TEXT,
            status TEXT NOT NULL,
            parameters_json TEXT,
            prompt_json TEXT,
            outputs_json TEXT,
            error TEXT,
            error_node TEXT,
            queued_at REAL,
            started_at REAL,
            finished_at REAL,
            batch_id TEXT REFERENCES batches(id),
            batch_index INTEGER,
            created_at REAL NOT NULL
        );
        CREATE UNIQUE INDEX IF NOT EXISTS generations_batch_item
            ON generations(batch_id, batch_index) WHERE batch_id IS NOT NULL;
        CREATE INDEX IF NOT EXISTS generations_workflow ON generations(workflow_id);
        CREATE INDEX IF NOT EXISTS generations_status ON generations(status);
        CREATE INDEX IF NOT EXISTS generations_created ON generations(created_at);
        """,
    ),
    (
        # a batch's completed/failed counts (recounted after every item) read only its own rows
        2,
        "CREATE INDEX IF NOT EXISTS generations_batch_status ON generations(batch_id, status)",
    ),
    (
        # who is resuming a batch (one resume at a time; a crashed holder's lease runs out)
        3,
        """
        CREATE TABLE IF NOT EXISTS batch_leases (
            batch_id TEXT PRIMARY KEY,
            holder TEXT NOT NULL,
            expires_at REAL NOT NULL
        )
        """,
    ),
    (
        # a batch's plan in rows of its own: the `batches` row stays small (it is rewritten as
        # its counts move), and a plan is written once. Batches recorded before keep theirs in
        # `batches.plan_json` / `prompts_json`, which readers still use when present.
        4,
        """
        CREATE TABLE IF NOT EXISTS batch_items (
            batch_id TEXT NOT NULL REFERENCES batches(id),
            batch_index INTEGER NOT NULL,
            values_json TEXT,
            prompt_json TEXT,
            PRIMARY KEY (batch_id, batch_index)
        )
        """,
    ),
]

LATEST = MIGRATIONS[-1][0]


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the database up to ``LATEST`` in one write transaction; return the resulting version.

    The version is re-read after the write lock is taken, so two processes opening a new store at
    the same moment apply each migration exactly once. A newer store is left untouched.
    """
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    if current >= LATEST:
        return current
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for number, script in MIGRATIONS:
            if number > version:
                for statement in _statements(script):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {int(number)}")
                version = number
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return version


def _statements(script: str) -> list[str]:
    """Split a migration script into single statements (no semicolons inside our DDL)."""
    return [part.strip() for part in script.split(";") if part.strip()]
