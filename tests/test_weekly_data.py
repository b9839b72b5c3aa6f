"""The weekly report's data: ISO weeks, trend and hot-issue rules on constructed counts, an
empty week and a busy one (volumes, escalation tree, tickets, feedback, interceptions, topics)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from autoreply.encoder import Encoder
from autoreply.errors import ConfigError
from autoreply.gap_topics import update_topics
from autoreply.models import Message
from autoreply.service import AutoReply
from autoreply.settings import Settings
from autoreply.store.sqlite import SQLiteStore
from autoreply.weekly_data import (
    HotRules,
    category_tree,
    mass_users,
    parse_week,
    rising,
    trend,
    week_of,
    weekly_report,
)

WEEK = parse_week("2026-W47")  # Monday 16 November 2026


class Clock:
    """A settable clock for the store and the bot."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock(WEEK.start + timedelta(days=1, hours=9))


@pytest.fixture
def timed_bot(
    settings: Settings, hashing: Encoder, tmp_path: Path, clock: Clock
) -> Iterator[AutoReply]:
    store = SQLiteStore(tmp_path / "timed.db", now=clock)
    with AutoReply.from_settings(settings, encoder=hashing, store=store, now=clock) as bot:
        yield bot


def test_iso_weeks_parse_with_clear_errors() -> None:
    assert WEEK.label == "2026-W47"
    assert WEEK.start == datetime(2026, 11, 16, tzinfo=WEEK.start.tzinfo)
    assert WEEK.end - WEEK.start == timedelta(days=7)
    assert parse_week("2026w47").start == WEEK.start
    assert parse_week("2020-W53").label == "2020-W53"
    shanghai = parse_week("2026-W47", tz="Asia/Shanghai")
    assert shanghai.start.astimezone(UTC) == datetime(2026, 11, 15, 16, tzinfo=UTC)
    assert week_of(datetime(2026, 11, 22, 23, 59, tzinfo=UTC)).label == "2026-W47"
    assert week_of(datetime(2027, 1, 1, tzinfo=UTC)).label == "2026-W53"
    for bad, says in [
        ("2026-47", "like 2026-W47"),
        ("W47", "like 2026-W47"),
        ("2026-W54", "weeks 1 to 53"),
        ("2025-W53", "weeks 1 to 52"),
        ("2026-W00", "not 0"),
    ]:
        with pytest.raises(ConfigError, match=says):
            parse_week(bad)
    with pytest.raises(ConfigError, match="time zone"):
        parse_week("2026-W47", tz="Mars/Olympus")


def test_trend_and_rising_rules() -> None:
    rules = HotRules()
    assert trend(4, [0, 0, 0, 0]) == "new"
    assert trend(4, [1, 0, 2, 3]) == "up"
    assert trend(2, [1, 0, 2, 3]) == "down"
    assert trend(3, [1, 0, 2, 3]) == "flat"
    assert rising(3, [0, 0, 0, 0], rules)  # no history: 3 is enough
    assert not rising(2, [0, 0, 0, 0], rules)  # below min_count
    assert rising(8, [4, 4, 4, 4], rules)  # exactly twice the mean
    assert not rising(7, [4, 4, 4, 4], rules)
    assert not rising(10, [2, 4, 10, 8], rules)  # mean 6: 10 < 12
    assert rising(5, [2, 3], HotRules(ratio=2.0, history=2))


def test_mass_issue_counts_distinct_users_in_a_sliding_window() -> None:
    t0 = datetime(2026, 11, 17, 9, tzinfo=UTC)
    burst = [(t0 + timedelta(minutes=10 * i), f"u{i}") for i in range(10)]
    assert mass_users(burst, hours=2) == 10
    repeats = [(t0 + timedelta(minutes=i), "same") for i in range(30)]
    assert mass_users(repeats, hours=2) == 1
    spread = [(t0 + timedelta(hours=3 * i), f"u{i}") for i in range(10)]
    assert mass_users(spread, hours=2) == 1
    assert mass_users([], hours=2) == 0
    edge = [(t0, "a"), (t0 + timedelta(hours=2), "b")]
    assert mass_users(edge, hours=2) == 1  # the window is half-open


def test_category_tree_has_subtotals() -> None:
    tree = category_tree(Counter({"billing/refunds": 5, "billing/invoices": 2, "account": 4}))
    assert tree.count == 11
    billing = tree.children[0]
    assert (billing.name, billing.count) == ("billing", 7)
    assert [(c.name, c.count) for c in billing.children] == [("refunds", 5), ("invoices", 2)]
    assert tree.children[1].name == "account" and not tree.children[1].children


def test_empty_week(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "empty.db") as store:
        report = weekly_report(store, WEEK)
    v = report.volumes
    assert (v.questions, v.answered, v.escalated, v.deflection_rate) == (0, 0, 0, None)
    assert report.topics == [] and report.hot == [] and report.suggestions == []
    assert report.tickets.opened == 0 and report.tickets.first_reply_minutes is None
    assert report.feedback == [] and report.interceptions == {} and report.gaps == 0


def test_busy_week(timed_bot: AutoReply, clock: Clock) -> None:
    """Answers, clarifications, escalations, tickets with response times, feedback,
    interceptions and a gap topic that is new this week and a mass issue."""
    bot, store = timed_bot, timed_bot.store
    answered = [
        bot.handle(q, user_id=f"a{i}") for i, q in enumerate(["怎么申请退款？", "如何退款"])
    ]
    assert all(r.decision.value == "answer" for r in answered)
    store.add_feedback(answered[0].message_id or 0, helpful=False)
    store.add_feedback(answered[1].message_id or 0, helpful=True)
    bot.handle("我要转人工", user_id="human")
    rockets = [
        "when does the rocket launch",
        "rocket launch time today",
        "is the rocket launch delayed",
        "next rocket launch date",  # see test_gaps.ROCKET
    ] * 3
    for i, q in enumerate(rockets):
        clock.advance(minutes=5)
        bot.handle(Message(text=q, user_id=f"r{i}", channel="web" if i % 2 else "wecom"))
    tickets = store.list_tickets()
    rocket = next(t for t in tickets if t.user_id.startswith("r"))
    clock.advance(minutes=30)
    store.agent_reply(rocket.id, agent="ann", text="Launch at 10:00")
    store.add_interception(agent="bob", phrase="保证", ticket_id=tickets[1].id)
    store.add_interception(agent="bob", phrase="保证")
    store.add_interception(agent="ann", phrase="绝对")
    clock.advance(hours=2)
    store.resolve_ticket(rocket.id, agent="ann")
    update_topics(store, bot.engine.index, now=clock())
    clock.advance(days=7)  # next week's traffic stays out of this report
    bot.handle("下周的问题", user_id="later")
    report = weekly_report(store, WEEK, kb=bot.kb, rules=HotRules(mass_users=5), now=clock())

    v = report.volumes
    assert v.questions == 2 + 1 + len(rockets) and v.answered == 2
    assert v.escalated == 1 + len(rockets) - v.clarified
    assert v.deflection_rate == pytest.approx(2 / v.questions)
    reasons = {c.name: c.count for c in report.escalations_by_reason.children}
    assert reasons["asked_for_human"] == 1 and report.escalations_by_reason.count == v.escalated
    assert report.escalations_by_category.count == v.escalated
    assert report.tickets.opened == len(tickets) and report.tickets.resolved == 1
    assert report.tickets.first_reply_minutes is not None
    agents = {g.name: g for g in report.tickets_by_agent}
    assert agents["ann"].resolved == 1 and agents["ann"].resolve_minutes is not None
    assert [(f.entry_id, f.not_helpful, f.helpful) for f in report.feedback] == [("refund", 1, 1)]
    assert report.interceptions == {"保证": 2, "绝对": 1}
    (topic,) = report.topics
    assert topic.count == len(rockets) and topic.trend == "new" and topic.rising and topic.mass
    assert topic.previous == [0, 0, 0, 0] and topic.arrow == "★"
    assert set(topic.channels) == {"web", "wecom"} and 1 <= len(topic.examples) <= 3
    assert {h.rule for h in report.hot} == {"rising", "mass"}
    assert report.gaps == len(rockets)
    (draft,) = report.suggestions
    assert draft.topic_id == topic.id and draft.answer == "Launch at 10:00"
