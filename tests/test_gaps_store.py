"""The store's gap-topic and weekly-report methods on real SQLite and PostgreSQL: topics and
assignments round-trip, statuses survive updates, time windows are half-open; SQLite's
migration is appended."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from autoreply.errors import NotFoundError
from autoreply.models import Action, Priority, Reason, Role
from autoreply.store import GapAssignment, GapTopic, Store, TopicKind, TopicStatus
from autoreply.store.schema import MIGRATIONS
from autoreply.store.sqlite import SQLiteDialect, SQLiteStore

T0 = datetime(2026, 11, 16, 9, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path, clock: Clock) -> Iterator[Store]:
    """The same tests on each backend: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        with SQLiteStore(tmp_path / "s.db", now=clock) as s:
            yield s
        return
    from autoreply.store.postgres import PostgresStore

    with PostgresStore(request.getfixturevalue("pg_url"), now=clock) as pg:
        yield pg


def gap(store: Store, text: str, conversation: str = "c1") -> int:
    return store.add_gap(
        question=text,
        normalized=text,
        reason=Reason.LOW_CONFIDENCE,
        channel="web",
        conversation_id=conversation,
        user_id="u1",
        category="billing",
    ).id


def topic(topic_id: int, size: int = 2, **changes: object) -> GapTopic:
    data: dict[str, object] = {
        "id": topic_id,
        "encoder": "enc",
        "centroid": np.ones(4, dtype="<f4").tobytes(),
        "size": size,
        "representative": "how do I pay",
        "keywords": ["pay", "付款"],
        "category": "billing",
        "first_seen": T0,
        "last_seen": T0,
        "updated_at": T0,
    }
    return GapTopic.model_validate(data | changes)


def row(gap_id: int, topic_id: int | None) -> GapAssignment:
    vector = np.arange(4, dtype="<f4").tobytes()
    return GapAssignment(gap_id=gap_id, topic_id=topic_id, encoder="enc", vector=vector)


def test_topics_and_assignments_round_trip(store: Store) -> None:
    a, b, c = gap(store, "a"), gap(store, "b"), gap(store, "c")
    assert [g.id for g in store.unclustered_gaps()] == [a, b, c]
    store.save_gap_topics([topic(a)], [row(a, a), row(b, a), row(c, None)])
    assert store.unclustered_gaps() == []
    (saved,) = store.gap_topics()
    assert saved == topic(a) and saved.status is TopicStatus.OPEN
    assert np.frombuffer(saved.centroid, dtype="<f4").tolist() == [1, 1, 1, 1]
    assert [r.gap_id for r in store.gap_assignments(topic_ids=[a])] == [b, a]
    assert [r.gap_id for r in store.gap_assignments(waiting=True)] == [c]
    assert len(store.gap_assignments(limit=2)) == 2 and store.gap_assignments(topic_ids=[]) == []
    assert {g.id: g.topic_id for g in store.topic_gaps()} == {a: a, b: a, c: None}
    assert [g.id for g in store.topic_gaps(topic_id=a)] == [b, a]


def test_status_survives_updates_and_deletes(store: Store) -> None:
    a, b = gap(store, "a"), gap(store, "b")
    store.save_gap_topics([topic(a), topic(b, kind=TopicKind.NEAR_MISS, entry_id="e")], [])
    store.set_gap_topic_status(a, TopicStatus.ACCEPTED)
    store.save_gap_topics([topic(a, size=9, status=TopicStatus.OPEN)], [])
    again = store.get_gap_topic(a)
    assert again.status is TopicStatus.ACCEPTED and again.size == 9
    assert [t.id for t in store.gap_topics(status=TopicStatus.OPEN)] == [b]
    assert store.get_gap_topic(b).kind is TopicKind.NEAR_MISS
    store.save_gap_topics([], [row(a, b)])
    store.delete_gap_topics([b])
    assert [r.topic_id for r in store.gap_assignments()] == [None]
    with pytest.raises(NotFoundError, match=f"known: {a}"):
        store.get_gap_topic(b)
    with pytest.raises(NotFoundError):
        store.set_gap_topic_status(12345, TopicStatus.DISMISSED)
    store.clear_gap_topics()
    assert store.gap_topics() == [] and store.gap_assignments() == []
    assert len(store.unclustered_gaps()) == 2


def test_windows_are_half_open(store: Store, clock: Clock) -> None:
    """[since, until) for gaps, replies, tickets and feedback."""
    week = (T0, T0 + timedelta(days=7))
    early = gap(store, "before")
    store.add_message(
        conversation_id="c1", user_id="u1", channel="web", role=Role.CUSTOMER, text="q"
    )
    bot = store.add_message(
        conversation_id="c1", user_id="u1", channel="web", role=Role.BOT, text="a",
        action=Action.ANSWER, reason=Reason.CONFIDENT, entry_id="pay",
    )  # fmt: skip
    store.add_feedback(bot.id, helpful=False)
    store.add_feedback(bot.id, helpful=True)
    ticket, _ = store.open_ticket(
        conversation_id="c1", user_id="u1", channel="web", priority=Priority.NORMAL,
        reason=Reason.LOW_CONFIDENCE,
    )  # fmt: skip
    clock.now = week[1]
    late = gap(store, "next week")
    store.add_message(
        conversation_id="c2", user_id="u2", channel="web", role=Role.BOT, text="b",
        action=Action.ESCALATE, reason=Reason.LOW_CONFIDENCE,
    )  # fmt: skip
    store.resolve_ticket(store.claim_ticket(ticket.id, "ann").id, agent="ann")
    assert [g.id for g in store.topic_gaps(since=week[0], until=week[1])] == [early]
    assert [g.id for g in store.topic_gaps(since=week[1])] == [late]
    (count,) = store.reply_counts(since=week[0], until=week[1])
    assert (count.action, count.reason, count.entry_id, count.count) == (
        Action.ANSWER, Reason.CONFIDENT, "pay", 1,
    )  # fmt: skip
    (fb,) = store.feedback_counts(since=week[0], until=week[1])
    assert (fb.entry_id, fb.helpful, fb.not_helpful) == ("pay", 1, 1)
    assert [t.id for t in store.tickets_between(since=week[0], until=week[1])] == [ticket.id]
    later = store.tickets_between(since=week[1], until=week[1] + timedelta(days=7))
    assert [t.id for t in later] == [ticket.id]  # resolved that week
    assert [t.id for t in store.tickets_for_conversations(["c1", "nope"])] == [ticket.id]
    assert store.tickets_for_conversations([]) == []


def test_migration_is_appended_and_upgrades_an_older_database(tmp_path: Path) -> None:
    names = [name for name, _ in MIGRATIONS]
    assert names[:4] == ["m001_initial", "m002_agents", "m003_gap_topics", "m004_knowledge_version"]
    path = tmp_path / "old.db"
    SQLiteDialect(path, migrations=MIGRATIONS[:2]).close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(
        "INSERT INTO gaps (question, normalized, reason, channel, conversation_id, user_id, "
        "created_at) VALUES ('q', 'q', 'low_confidence', 'web', 'c', 'u', ?)",
        (T0.isoformat(),),
    )
    conn.close()
    with SQLiteStore(path) as store:
        assert [g.question for g in store.unclustered_gaps()] == ["q"]
