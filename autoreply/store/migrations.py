"""The SQLite schema as named, ordered, transactional migrations.

Each migration runs in its own ``BEGIN IMMEDIATE`` transaction together with the row that
records it in ``_migrations`` (name, applied_at), so a failed migration leaves no trace and
two processes opening the same file cannot apply one twice. ``PRAGMA user_version`` mirrors
the number applied, for tools that only read the header. Append new migrations at the end;
never edit or reorder one that has shipped.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime

from autoreply.errors import StoreError

Migration = Callable[[sqlite3.Connection], None]


def m001_initial(conn: sqlite3.Connection) -> None:
    """Tickets, messages, gaps, feedback and FAQ candidates."""
    conn.execute(
        """
        CREATE TABLE tickets (
            id INTEGER PRIMARY KEY,
            conversation_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            channel TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('open', 'claimed', 'resolved')),
            priority TEXT NOT NULL CHECK (priority IN ('low', 'normal', 'high', 'urgent')),
            reason TEXT NOT NULL,
            category TEXT,
            vip INTEGER NOT NULL DEFAULT 0,
            owner TEXT,
            suggested_owner TEXT,
            context TEXT NOT NULL DEFAULT '{}',
            created_at TEXT NOT NULL,
            claimed_at TEXT,
            first_reply_at TEXT,
            resolved_at TEXT,
            resolution TEXT
        )
        """
    )
    # One unresolved ticket per conversation, enforced by the database as well as the code.
    conn.execute(
        "CREATE UNIQUE INDEX tickets_one_active ON tickets (conversation_id) "
        "WHERE status <> 'resolved'"
    )
    conn.execute("CREATE INDEX tickets_conversation ON tickets (conversation_id)")
    conn.execute("CREATE INDEX tickets_status_priority ON tickets (status, priority, created_at)")
    conn.execute("CREATE INDEX tickets_owner ON tickets (owner)")
    conn.execute("CREATE INDEX tickets_user_claimed ON tickets (user_id, claimed_at)")
    conn.execute(
        """
        CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            conversation_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            channel TEXT NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('customer', 'bot', 'agent')),
            text TEXT NOT NULL,
            created_at TEXT NOT NULL,
            external_id TEXT,
            action TEXT,
            reason TEXT,
            entry_id TEXT,
            confidence REAL,
            agent TEXT,
            ticket_id INTEGER REFERENCES tickets (id) ON DELETE SET NULL,
            reply_to INTEGER REFERENCES messages (id) ON DELETE SET NULL,
            UNIQUE (channel, external_id)
        )
        """
    )
    conn.execute("CREATE INDEX messages_conversation ON messages (conversation_id, id)")
    conn.execute("CREATE INDEX messages_created_at ON messages (created_at)")
    conn.execute("CREATE INDEX messages_ticket ON messages (ticket_id)")
    conn.execute("CREATE INDEX messages_reply_to ON messages (reply_to)")
    conn.execute("CREATE INDEX messages_entry ON messages (entry_id)")
    conn.execute(
        """
        CREATE TABLE gaps (
            id INTEGER PRIMARY KEY,
            question TEXT NOT NULL,
            normalized TEXT NOT NULL,
            reason TEXT NOT NULL,
            best_entry_id TEXT,
            best_score REAL,
            category TEXT,
            channel TEXT NOT NULL,
            conversation_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            created_at TEXT NOT NULL
        )
        """
    )
    conn.execute("CREATE INDEX gaps_created_at ON gaps (created_at)")
    conn.execute(
        """
        CREATE TABLE feedback (
            id INTEGER PRIMARY KEY,
            message_id INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
            helpful INTEGER NOT NULL,
            comment TEXT,
            created_at TEXT NOT NULL
        )
        """
    )
    conn.execute("CREATE INDEX feedback_message ON feedback (message_id)")
    conn.execute("CREATE INDEX feedback_created_at ON feedback (created_at)")
    conn.execute(
        """
        CREATE TABLE faq_candidates (
            id INTEGER PRIMARY KEY,
            ticket_id INTEGER REFERENCES tickets (id) ON DELETE SET NULL,
            question TEXT NOT NULL,
            answer TEXT NOT NULL,
            category TEXT NOT NULL,
            agent TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'accepted', 'dismissed')),
            created_at TEXT NOT NULL
        )
        """
    )
    conn.execute("CREATE INDEX faq_candidates_status ON faq_candidates (status, created_at)")


def m002_agents(conn: sqlite3.Connection) -> None:
    """Agents with hashed API tokens, prohibited-phrase interceptions, reply deliveries."""
    conn.execute(
        """
        CREATE TABLE agents (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            role TEXT NOT NULL CHECK (role IN ('agent', 'admin')),
            token_hash TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            expires_at TEXT,
            disabled INTEGER NOT NULL DEFAULT 0
        )
        """
    )
    conn.execute(
        """
        CREATE TABLE interceptions (
            id INTEGER PRIMARY KEY,
            agent TEXT NOT NULL,
            ticket_id INTEGER REFERENCES tickets (id) ON DELETE SET NULL,
            phrase TEXT NOT NULL,
            created_at TEXT NOT NULL
        )
        """
    )
    conn.execute("CREATE INDEX interceptions_created_at ON interceptions (created_at)")
    conn.execute("CREATE INDEX interceptions_agent ON interceptions (agent, created_at)")
    conn.execute(
        """
        CREATE TABLE deliveries (
            id INTEGER PRIMARY KEY,
            message_id INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
            channel TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('sent', 'failed', 'poll')),
            error TEXT,
            created_at TEXT NOT NULL
        )
        """
    )
    conn.execute("CREATE INDEX deliveries_message ON deliveries (message_id)")
    conn.execute("CREATE INDEX deliveries_status ON deliveries (status, created_at)")
    # Decision counts for the admin stats read bot messages by action.
    conn.execute("CREATE INDEX messages_role_action ON messages (role, action)")


def m003_gap_topics(conn: sqlite3.Connection) -> None:
    """Gap topics (clusters of FAQ gaps) and each clustered gap's vector and topic."""
    conn.execute(
        """
        CREATE TABLE gap_topics (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL CHECK (kind IN ('new', 'near_miss')),
            status TEXT NOT NULL DEFAULT 'open'
                CHECK (status IN ('open', 'accepted', 'dismissed')),
            encoder TEXT NOT NULL,
            centroid BLOB NOT NULL,
            size INTEGER NOT NULL,
            representative TEXT NOT NULL,
            keywords TEXT NOT NULL,
            category TEXT,
            entry_id TEXT,
            first_seen TEXT NOT NULL,
            last_seen TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )
        """
    )
    conn.execute("CREATE INDEX gap_topics_status ON gap_topics (status, size)")
    conn.execute(
        """
        CREATE TABLE gap_assignments (
            gap_id INTEGER PRIMARY KEY REFERENCES gaps (id) ON DELETE CASCADE,
            topic_id INTEGER REFERENCES gap_topics (id) ON DELETE SET NULL,
            similarity REAL,
            encoder TEXT NOT NULL,
            vector BLOB NOT NULL
        )
        """
    )
    conn.execute("CREATE INDEX gap_assignments_topic ON gap_assignments (topic_id, gap_id)")
    # Weekly reports read tickets resolved in a week, not only those opened in it.
    conn.execute("CREATE INDEX tickets_resolved_at ON tickets (resolved_at)")


def m004_knowledge_version(conn: sqlite3.Connection) -> None:
    """One row counting knowledge reloads, so every process sharing the store reloads too."""
    conn.execute(
        """
        CREATE TABLE knowledge_version (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            version INTEGER NOT NULL,
            updated_at TEXT
        )
        """
    )
    conn.execute("INSERT INTO knowledge_version (id, version, updated_at) VALUES (1, 0, NULL)")


def m005_trust(conn: sqlite3.Connection) -> None:
    """What the trust model keeps: a bot reply's full details (so a retried message gets
    the first reply whole), each conversation's customer token (sha256 only) and the
    admin-managed VIP list."""
    conn.execute("ALTER TABLE messages ADD COLUMN details TEXT")
    conn.execute(
        """
        CREATE TABLE conversation_keys (
            conversation_id TEXT PRIMARY KEY,
            token_hash TEXT NOT NULL,
            created_at TEXT NOT NULL
        )
        """
    )
    conn.execute(
        """
        CREATE TABLE vips (
            channel TEXT NOT NULL,
            user_id TEXT NOT NULL,
            note TEXT,
            added_by TEXT NOT NULL,
            added_at TEXT NOT NULL,
            PRIMARY KEY (channel, user_id)
        )
        """
    )


MIGRATIONS: list[tuple[str, Migration]] = [
    ("m001_initial", m001_initial),
    ("m002_agents", m002_agents),
    ("m003_gap_topics", m003_gap_topics),
    ("m004_knowledge_version", m004_knowledge_version),
    ("m005_trust", m005_trust),
]
"""Every migration autoreply knows, in the order they are applied."""


def applied_migrations(conn: sqlite3.Connection) -> list[str]:
    """Names of the migrations recorded in the database, in the order they were applied."""
    rows = conn.execute("SELECT name FROM _migrations ORDER BY id").fetchall()
    return [row[0] for row in rows]


def migrate(
    conn: sqlite3.Connection,
    *,
    where: str,
    migrations: list[tuple[str, Migration]] | None = None,
) -> list[str]:
    """Apply the pending migrations and return their names (empty when up to date).

    ``conn`` must be in autocommit mode (``isolation_level=None``); ``where`` names the
    database in error messages. Raises StoreError when the database was written by a newer
    autoreply (it records migrations this version does not know)."""
    known = MIGRATIONS if migrations is None else migrations
    conn.execute(
        "CREATE TABLE IF NOT EXISTS _migrations ("
        "id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, applied_at TEXT NOT NULL)"
    )
    done: list[str] = []
    for position, (name, apply) in enumerate(known):
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Re-read inside the write lock: another process may have migrated meanwhile.
            applied = applied_migrations(conn)
            _refuse_newer(applied, known, where=where)
            if name not in applied:
                apply(conn)
                conn.execute(
                    "INSERT INTO _migrations (name, applied_at) VALUES (?, ?)",
                    (name, datetime.now(UTC).isoformat(timespec="microseconds")),
                )
                # PRAGMA takes no parameters; the value is an int we computed, never user input.
                conn.execute(f"PRAGMA user_version = {int(position + 1)}")
                done.append(name)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    if not known:
        _refuse_newer(applied_migrations(conn), known, where=where)
    return done


def _refuse_newer(applied: list[str], known: list[tuple[str, Migration]], *, where: str) -> None:
    refuse_newer(applied, [name for name, _ in known], where=where)


def refuse_newer(applied: list[str], names: list[str], *, where: str) -> None:
    """StoreError unless the ``applied`` migration names are a prefix of ``names`` (the ones
    this version knows): the database was written by a newer autoreply. Shared with the
    PostgreSQL migrations."""
    if len(applied) > len(names) or applied != names[: len(applied)]:
        unknown = [name for name in applied if name not in names]
        detail = f" (unknown: {', '.join(unknown)})" if unknown else ""
        raise StoreError(
            f"{where}: the database was created by a newer autoreply: it has "
            f"{len(applied)} migration(s){detail}, this version knows {len(names)}; "
            "upgrade autoreply (pip install -U autoreply) or use another database"
        )
