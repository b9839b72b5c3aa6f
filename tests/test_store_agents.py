"""The store's service tables: agents with hashed tokens, interceptions, deliveries, decision
counts, the knowledge version, on SQLite and PostgreSQL; and SQLite's m002 migration."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from autoreply.errors import ConflictError, NotFoundError, StoreError
from autoreply.models import Action, Priority, Reason, Role
from autoreply.store import AgentRole, DeliveryStatus, Store, hash_token, new_token
from autoreply.store.schema import MIGRATIONS
from autoreply.store.sqlite import SQLiteDialect, SQLiteStore

START = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


class Clock:
    """A fake clock that moves one second on every reading."""

    def __init__(self) -> None:
        self.current = START

    def __call__(self) -> datetime:
        value = self.current
        self.current += timedelta(seconds=1)
        return value


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "agents.db"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, db_path: Path) -> Iterator[Store]:
    """The same tests on each backend: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        with SQLiteStore(db_path, now=Clock()) as s:
            yield s
        return
    from autoreply.store.postgres import PostgresStore

    with PostgresStore(request.getfixturevalue("pg_url"), now=Clock()) as pg:
        yield pg


def raw_rows(store: Store, sql: str) -> list[Any]:
    """Rows read straight from the backend's database, past the Store API."""
    if isinstance(store, SQLiteStore):
        conn = sqlite3.connect(store.path)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()
    import psycopg

    with psycopg.connect(store.url) as pg:  # type: ignore[attr-defined]
        return pg.execute(sql).fetchall()  # type: ignore[call-overload, no-any-return]


def open_ticket(store: Store, conv: str = "c1") -> int:
    msg = store.add_message(
        conversation_id=conv, user_id="u1", channel="api", role=Role.CUSTOMER, text="help"
    )
    ticket, _ = store.open_ticket(
        conversation_id=conv,
        user_id="u1",
        channel="api",
        priority=Priority.NORMAL,
        reason=Reason.ASKED_FOR_HUMAN,
        context={"question": msg.text},
    )
    return ticket.id


def test_tokens_are_random_and_stored_only_hashed(store: Store) -> None:
    """A token finds its agent; the database holds its sha256, never the token."""
    token = new_token()
    assert token.startswith("ar_") and len(token) > 40
    assert new_token() != token
    alice = store.add_agent("alice", role=AgentRole.AGENT, token=token)
    assert alice.role is AgentRole.AGENT and not alice.disabled and alice.expires_at is None
    assert store.agent_for_token(token) == alice
    assert store.agent_for_token(token + "x") is None
    rows = raw_rows(store, "SELECT * FROM agents")
    assert len(rows) == 1
    assert token not in repr(rows)
    assert hash_token(token) in repr(rows)


def test_agent_names_are_unique_and_checked(store: Store) -> None:
    """A second agent with a taken name is a conflict; odd names say which are allowed."""
    store.add_agent("alice", role=AgentRole.AGENT, token=new_token())
    with pytest.raises(ConflictError, match="already exists.*agents token"):
        store.add_agent("alice", role=AgentRole.ADMIN, token=new_token())
    with pytest.raises(StoreError, match="letters, digits"):
        store.add_agent("al ice", role=AgentRole.AGENT, token=new_token())
    with pytest.raises(StoreError, match="letters, digits"):
        store.add_agent("", role=AgentRole.AGENT, token=new_token())


def test_disable_expire_and_rotate(store: Store) -> None:
    """Disabled and expired agents are still found (so the API can say why); a new token
    replaces the old one and enables the agent again."""
    old = new_token()
    bob = store.add_agent(
        "bob", role=AgentRole.ADMIN, token=old, expires_at=START + timedelta(days=1)
    )
    assert bob.expires_at == START + timedelta(days=1)
    assert not bob.expired(START) and bob.expired(START + timedelta(days=2))
    disabled = store.disable_agent("bob")
    assert disabled.disabled
    assert store.agent_for_token(old) == disabled
    new = new_token()
    rotated = store.set_agent_token("bob", token=new)
    assert not rotated.disabled and rotated.expires_at is None
    assert store.agent_for_token(old) is None
    assert store.agent_for_token(new) == rotated


def test_unknown_agents_list_the_known_ones(store: Store) -> None:
    """NotFoundError names the agents that exist."""
    with pytest.raises(NotFoundError, match="none yet"):
        store.get_agent("zed")
    store.add_agent("bob", role=AgentRole.AGENT, token=new_token())
    store.add_agent("alice", role=AgentRole.ADMIN, token=new_token())
    assert [a.name for a in store.list_agents()] == ["alice", "bob"]
    with pytest.raises(NotFoundError, match="no agent 'zed'; known: alice, bob"):
        store.disable_agent("zed")
    with pytest.raises(NotFoundError):
        store.set_agent_token("zed", token=new_token())


def test_interceptions_are_listed_and_counted(store: Store) -> None:
    """Who, when, which phrase: listed newest first and counted per agent and per phrase."""
    t = open_ticket(store)
    store.add_interception(agent="alice", ticket_id=t, phrase="stupid")
    store.add_interception(agent="alice", ticket_id=t, phrase="保证退全款")
    last = store.add_interception(agent="bob", ticket_id=None, phrase="stupid")
    listed = store.list_interceptions()
    assert [i.phrase for i in listed] == ["stupid", "保证退全款", "stupid"]
    assert listed[0] == last and last.created_at > listed[1].created_at
    assert [i.agent for i in store.list_interceptions(agent="alice")] == ["alice", "alice"]
    assert store.list_interceptions(since=last.created_at) == [last]
    assert store.count_interceptions(by="agent") == {"alice": 2, "bob": 1}
    assert store.count_interceptions(by="phrase") == {"stupid": 2, "保证退全款": 1}
    with pytest.raises(NotFoundError, match="no ticket 99"):
        store.add_interception(agent="alice", ticket_id=99, phrase="x")
    with pytest.raises(StoreError, match="use 'agent' or 'phrase'"):
        store.count_interceptions(by="ticket")  # type: ignore[arg-type]


def test_deliveries_per_ticket_and_status(store: Store) -> None:
    """Each agent reply's delivery is recorded and found by ticket or status."""
    t1, t2 = open_ticket(store, "c1"), open_ticket(store, "c2")
    m1 = store.agent_reply(t1, agent="alice", text="hello")
    m2 = store.agent_reply(t2, agent="bob", text="hi")
    sent = store.add_delivery(message_id=m1.id, channel="slack", status=DeliveryStatus.SENT)
    failed = store.add_delivery(
        message_id=m2.id, channel="generic", status=DeliveryStatus.FAILED, error="timeout"
    )
    assert store.list_deliveries(ticket_id=t1) == [sent]
    assert store.list_deliveries(status=DeliveryStatus.FAILED) == [failed]
    assert store.list_deliveries() == [failed, sent]
    with pytest.raises(NotFoundError):
        store.add_delivery(message_id=999, channel="api", status=DeliveryStatus.POLL)


def test_decision_counts_cover_every_action(store: Store) -> None:
    """Bot replies are counted by action; actions never seen count 0."""
    assert store.decision_counts() == {"answer": 0, "clarify": 0, "escalate": 0}
    for action in (Action.ANSWER, Action.ANSWER, Action.ESCALATE):
        store.add_message(
            conversation_id="c1",
            user_id="u1",
            channel="api",
            role=Role.BOT,
            text="…",
            action=action,
            reason=Reason.CONFIDENT,
        )
    assert store.decision_counts() == {"answer": 2, "clarify": 0, "escalate": 1}
    assert store.decision_counts(since=START + timedelta(days=1)) == {
        "answer": 0,
        "clarify": 0,
        "escalate": 0,
    }


def test_knowledge_version_counts_reloads(store: Store) -> None:
    """A new store is at version 0; each bump adds one and is read back, also concurrently."""
    assert store.knowledge_version() == 0
    assert store.bump_knowledge_version() == 1
    assert store.knowledge_version() == 1
    with ThreadPoolExecutor(4) as pool:
        bumped = sorted(pool.map(lambda _: store.bump_knowledge_version(), range(8)))
    assert bumped == list(range(2, 10))
    assert store.knowledge_version() == 9


def test_ping_and_closed_store(store: Store) -> None:
    """ping() answers on an open store and raises StoreError on a closed one."""
    store.ping()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.ping()


def test_m002_upgrades_a_version_1_database(db_path: Path) -> None:
    """A database made before the agents tables gets them on open, keeping its rows."""
    SQLiteDialect(db_path, migrations=MIGRATIONS[:1]).close()
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        conn.execute(
            "INSERT INTO messages (conversation_id, user_id, channel, role, text, created_at) "
            "VALUES ('c1', 'u1', 'api', 'customer', 'hi', ?)",
            (START.isoformat(),),
        )
    finally:
        conn.close()
    with SQLiteStore(db_path) as store:
        assert [m.text for m in store.history("c1")] == ["hi"]
        assert store.list_agents() == []
    conn = sqlite3.connect(db_path)
    try:
        names = [r[0] for r in conn.execute("SELECT name FROM _migrations ORDER BY id")]
    finally:
        conn.close()
    assert names[:2] == ["m001_initial", "m002_agents"]
    assert names == [name for name, _ in MIGRATIONS]
