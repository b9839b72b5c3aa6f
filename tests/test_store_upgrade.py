"""A database written before the one-schema store (m001..m004 recorded, its DDL kept statement
by statement in tests/data/schema_v4_*.sql) opens with today's store on SQLite and PostgreSQL:
nothing old is migrated again (only the later migrations are added), every row reads back,
writes keep the old rules, and its schema is then the one a new database gets."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from autoreply.errors import ConflictError
from autoreply.models import Priority, Reason, Role, TicketStatus
from autoreply.store import Store, hash_token
from autoreply.store.schema import MIGRATIONS
from autoreply.store.sqlite import SQLiteStore

DATA = Path(__file__).parent / "data"
APPLIED = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
T = datetime(2026, 2, 1, 9, 30, tzinfo=UTC)
NAMES = ["m001_initial", "m002_agents", "m003_gap_topics", "m004_knowledge_version"]
LATER = [name for name, _ in MIGRATIONS[len(NAMES) :]]
"""Migrations added since (m005_trust...): applied once on open, after the old ones."""


def statements(name: str) -> list[str]:
    """The DDL of a data file, one statement each (comments dropped)."""
    text = "\n".join(
        line for line in (DATA / name).read_text().splitlines() if not line.startswith("--")
    )
    return [s.strip() for s in text.split(";\n") if s.strip().strip(";")]


def old_rows(run: Callable[[str, tuple[Any, ...]], None], time: Callable[[datetime], Any]) -> None:
    """What a store of the old code held: migrations, a claimed VIP ticket with its customer
    message, an agent, a clustered gap, three reloads. ``time`` stores a time as it did."""
    for name in NAMES:
        run("INSERT INTO _migrations (name, applied_at) VALUES (?, ?)", (name, time(APPLIED)))
    run(
        "INSERT INTO tickets (conversation_id, user_id, channel, status, priority, reason, vip, "
        "owner, context, created_at, claimed_at) VALUES "
        "('c1', 'u1', 'web', 'claimed', 'high', 'complaint', ?, 'alice', ?, ?, ?)",
        (True, '{"question": "退款？"}', time(T), time(T)),
    )
    run(
        "INSERT INTO messages (conversation_id, user_id, channel, role, text, created_at, "
        "external_id, ticket_id) VALUES ('c1', 'u1', 'web', 'customer', '退款？', ?, 'm-1', 1)",
        (time(T),),
    )
    run(
        "INSERT INTO agents (name, role, token_hash, created_at, disabled) "
        "VALUES ('alice', 'agent', ?, ?, ?)",
        (hash_token("ar_old"), time(T), False),
    )
    run(
        "INSERT INTO gaps (question, normalized, reason, channel, conversation_id, user_id, "
        "created_at) VALUES ('q', 'q', 'low_confidence', 'web', 'c1', 'u1', ?)",
        (time(T),),
    )
    run(
        "INSERT INTO gap_topics (id, kind, status, encoder, centroid, size, representative, "
        "keywords, first_seen, last_seen, updated_at) VALUES "
        "(1, 'new', 'accepted', 'e5', ?, 1, 'q', '[\"q\"]', ?, ?, ?)",
        (b"\x00\x00\x80?", time(T), time(T), time(T)),
    )
    run(
        "INSERT INTO gap_assignments (gap_id, topic_id, similarity, encoder, vector) "
        "VALUES (1, 1, 1.0, 'e5', ?)",
        (b"\x00\x00\x80?",),
    )
    run("UPDATE knowledge_version SET version = 3 WHERE id = 1", ())


def check_store(store: Store) -> None:
    """The old rows read back through today's store, and writes follow the old rules."""
    ticket = store.get_ticket(1)
    assert (ticket.status, ticket.owner, ticket.vip) == (TicketStatus.CLAIMED, "alice", True)
    assert ticket.context == {"question": "退款？"} and ticket.created_at == T
    found = store.find_message(channel="web", external_id="m-1")
    assert found is not None and found.text == "退款？" and found.created_at == T
    agent = store.agent_for_token("ar_old")
    assert agent is not None and agent.name == "alice" and not agent.disabled
    (topic,) = store.gap_topics()
    assert (topic.keywords, topic.centroid, topic.first_seen) == (["q"], b"\x00\x00\x80?", T)
    assert [a.topic_id for a in store.gap_assignments()] == [1]
    assert store.knowledge_version() == 3
    with pytest.raises(ConflictError, match="find_message"):
        store.add_message(
            conversation_id="c1", user_id="u1", channel="web", role=Role.CUSTOMER, text="again",
            external_id="m-1",
        )  # fmt: skip
    joined, created = store.open_ticket(
        conversation_id="c1", user_id="u1", channel="web", priority=Priority.URGENT,
        reason=Reason.ASKED_FOR_HUMAN,
    )  # fmt: skip
    assert (joined.id, created, joined.priority) == (1, False, Priority.URGENT)
    reply = store.agent_reply(1, agent="alice", text="On it.")
    assert store.get_ticket(1).first_reply_at == reply.created_at
    assert store.bump_knowledge_version() == 4


def sqlite_schema(path: Path) -> set[tuple[str, ...]]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall()
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    finally:
        conn.close()
    return {(t, n, tbl, " ".join((sql or "").split())) for t, n, tbl, sql in rows} | {
        ("user_version", str(version))
    }


def test_sqlite_database_of_the_old_code_opens_unchanged(tmp_path: Path) -> None:
    """An old SQLite file: no migration runs again, the rows read back, the schema is today's."""
    old = tmp_path / "old.db"
    conn = sqlite3.connect(old, isolation_level=None)
    try:
        for statement in statements("schema_v4_sqlite.sql"):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {len(NAMES)}")
        old_rows(conn.execute, lambda t: t.isoformat(timespec="microseconds"))
    finally:
        conn.close()
    with SQLiteStore(old) as store:
        check_store(store)
    conn = sqlite3.connect(old)
    try:
        ledger = conn.execute("SELECT name, applied_at FROM _migrations ORDER BY id").fetchall()
    finally:
        conn.close()
    old_names = len(NAMES)
    assert ledger[:old_names] == [
        (name, APPLIED.isoformat(timespec="microseconds")) for name in NAMES
    ]
    assert [name for name, _ in ledger[old_names:]] == LATER
    SQLiteStore(tmp_path / "new.db").close()
    assert sqlite_schema(old) == sqlite_schema(tmp_path / "new.db")


def pg_schema(url: str) -> set[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        columns = conn.execute(
            "SELECT table_name, column_name, data_type, is_nullable, column_default, "
            "is_identity FROM information_schema.columns WHERE table_schema = 'public'"
        ).fetchall()
        indexes = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
        ).fetchall()
        constraints = conn.execute(
            "SELECT conrelid::regclass::text, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE connamespace = 'public'::regnamespace"
        ).fetchall()
    return (
        {("column", *c) for c in columns}
        | {("index", *i) for i in indexes}
        | {("constraint", *c) for c in constraints}
    )


@pytest.fixture
def empty_pg(pg_cluster: Any) -> Iterator[Callable[[str], str]]:
    """Empty PostgreSQL databases (not from the migrated template), dropped afterwards."""
    made: list[str] = []

    def make(name: str) -> str:
        pg_cluster.admin(f"CREATE DATABASE {name}")
        made.append(name)
        return str(pg_cluster.url(name))

    yield make
    for name in made:
        pg_cluster.drop_database(name)


@pytest.mark.postgres
def test_postgres_database_of_the_old_code_opens_unchanged(
    empty_pg: Callable[[str], str],
) -> None:
    """An old PostgreSQL database: no migration runs again, the rows read back, and its
    columns, indexes and constraints are those of a new one."""
    import psycopg

    from autoreply.store.postgres import PostgresStore

    old, new = empty_pg("old_schema"), empty_pg("new_schema")
    with psycopg.connect(old, autocommit=True) as conn:
        for statement in statements("schema_v4_postgres.sql"):
            conn.execute(statement)  # type: ignore[arg-type]

        def run(sql: str, params: tuple[Any, ...]) -> None:
            conn.execute(sql.replace("?", "%s"), params)  # type: ignore[arg-type]

        old_rows(run, lambda t: t)
    with PostgresStore(old) as store:
        check_store(store)
    with psycopg.connect(old, autocommit=True) as conn:
        ledger = conn.execute("SELECT name, applied_at FROM _migrations ORDER BY id").fetchall()
    assert ledger[: len(NAMES)] == [(name, APPLIED) for name in NAMES]
    assert [name for name, _ in ledger[len(NAMES) :]] == LATER
    PostgresStore(new).close()
    assert pg_schema(old) == pg_schema(new)
