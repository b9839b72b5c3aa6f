"""The weekly product report's data: what customers asked, what the bot did, what is missing.

``weekly_report(store, parse_week("2026-W47"), kb=kb)`` reads one ISO week (Monday 00:00 to
Monday 00:00 in the team's time zone) from any Store and returns a WeeklyReport: volumes and the
deflection rate, escalations by reason and by business category (a tree with subtotals), the
week's top gap topics with their trend, hot issues, tickets with median times by category and
agent, not-helpful answers by entry, agent reply interceptions by phrase and FAQ suggestions.
Rendering is autoreply.weekly_render's job. Customer text is redacted again here, whatever the store
holds.

Hot issues, per topic (HotRules, defaults in brackets):

- rising: this week's count ≥ ``min_count`` [3] and ≥ ``ratio`` [2] × the mean of the previous
  ``history`` [4] weeks (a topic with no history rises as soon as it reaches ``min_count``);
- mass: ≥ ``mass_users`` [10] distinct users asked within ``mass_hours`` [2] hours.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field

from autoreply.errors import ConfigError
from autoreply.gap_clustering import keyword_tokens
from autoreply.gap_suggestions import Suggestion, suggest
from autoreply.knowledge import KnowledgeBase
from autoreply.models import Action, Reason, Ticket, TicketStatus
from autoreply.redact import redact
from autoreply.store import GapTopic, Store, TopicGap, TopicKind, TopicStatus, VariantStatus

Trend = Literal["new", "up", "down", "flat"]
ARROWS: dict[str, str] = {"new": "★", "up": "↑", "down": "↓", "flat": "→"}
_WEEK = re.compile(r"(\d{4})-?W(\d{1,2})", re.IGNORECASE)
UNCATEGORISED = "(uncategorised)"


class Week(BaseModel):
    """One ISO week in a time zone: ``start`` (Monday 00:00) inclusive, ``end`` exclusive."""

    label: str
    start: datetime
    end: datetime


def parse_week(text: str, *, tz: str = "UTC") -> Week:
    """``2026-W47`` (or ``2026W47``) → Week; ConfigError saying what is wrong otherwise."""
    match = _WEEK.fullmatch(text.strip())
    if match is None:
        raise ConfigError(f"'{text}' is not an ISO week; write it like 2026-W47")
    year, number = int(match[1]), int(match[2])
    weeks = date(year, 12, 28).isocalendar().week  # 28 December is always in the last week
    if not 1 <= number <= weeks:
        raise ConfigError(f"'{text}': {year} has weeks 1 to {weeks}, not {number}")
    return week_of(date.fromisocalendar(year, number, 1), tz=tz)


def week_of(day: date | datetime, *, tz: str = "UTC") -> Week:
    """The ISO week containing ``day`` (a datetime is first converted to ``tz``)."""
    zone = _zone(tz)
    if isinstance(day, datetime):
        day = (day if day.tzinfo else day.replace(tzinfo=UTC)).astimezone(zone).date()
    monday = day - timedelta(days=day.weekday())
    year, number, _ = monday.isocalendar()
    start = datetime(monday.year, monday.month, monday.day, tzinfo=zone)
    end = start + timedelta(days=7)
    return Week(label=f"{year}-W{number:02d}", start=start, end=end.astimezone(zone))


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"unknown time zone '{tz}'; use an IANA name such as Asia/Shanghai"
        ) from None


# -- hot and rising topics -------------------------------------------------------------------


@dataclass(frozen=True)
class HotRules:
    """When a topic is hot (see the module docstring)."""

    min_count: int = 3
    ratio: float = 2.0
    history: int = 4
    mass_users: int = 10
    mass_hours: float = 2.0


def trend(count: int, previous: Sequence[int]) -> Trend:
    """Week over week: ``new`` with no gaps in the previous weeks, else against last week."""
    if not any(previous):
        return "new"
    last = previous[-1]
    return "up" if count > last else "down" if count < last else "flat"


def rising(count: int, previous: Sequence[int], rules: HotRules) -> bool:
    """This week's count reaches ``min_count`` and ``ratio`` × the mean of ``previous``."""
    mean = statistics.fmean(previous) if previous else 0.0
    return count >= rules.min_count and count >= rules.ratio * mean


def mass_users(asks: Iterable[tuple[datetime, str]], *, hours: float) -> int:
    """The most distinct users asking within any window of ``hours`` (sliding)."""
    events = sorted(asks)
    window, users, best, left = timedelta(hours=hours), Counter[str](), 0, 0
    for when, user in events:
        users[user] += 1
        while events[left][0] <= when - window:
            old = events[left][1]
            users[old] -= 1
            if not users[old]:
                del users[old]
            left += 1
        best = max(best, len(users))
    return best


# -- the report model -------------------------------------------------------------------------


class Volumes(BaseModel):
    questions: int
    """Customer messages the bot decided on (messages forwarded to an agent not counted)."""
    answered: int
    clarified: int
    escalated: int
    forwarded: int
    """Messages passed straight to the agent already handling the conversation."""
    deflection_rate: float | None
    """answered / questions."""


class CountNode(BaseModel):
    """A count with its breakdown; ``count`` is the subtotal of ``children`` when present."""

    name: str
    count: int
    children: list[CountNode] = Field(default_factory=list)


class TopicLine(BaseModel):
    id: int
    kind: TopicKind
    entry_id: str | None
    """For a near miss: the entry its questions nearly matched."""
    status: TopicStatus
    representative: str
    keywords: list[str]
    category: str | None
    count: int
    """Gaps this week."""
    previous: list[int]
    """Gaps in each of the previous weeks, oldest first."""
    total: int
    trend: Trend
    users: int
    first_seen: datetime
    last_seen: datetime
    examples: list[str]
    channels: dict[str, int]
    rising: bool = False
    mass: bool = False

    @property
    def arrow(self) -> str:
        return ARROWS[self.trend]


class HotIssue(BaseModel):
    topic_id: int
    representative: str
    rule: Literal["rising", "mass"]
    detail: str


class TicketGroup(BaseModel):
    name: str
    opened: int
    resolved: int
    first_reply_minutes: float | None
    """Median time from opening to the first agent reply."""
    resolve_minutes: float | None
    """Median time from opening to resolution."""


class EntryFeedback(BaseModel):
    entry_id: str
    question: str
    category: str
    helpful: int
    not_helpful: int


class RatingGroup(BaseModel):
    """Satisfaction (CSAT) ratings given this week, for one agent or category."""

    by: str
    """``agent`` or ``category``."""
    name: str
    ratings: int
    average: float


class PhrasingLine(BaseModel):
    """A phrasing learned from answered conversations (autoreply.learning): accepted this week
    or waiting for a person."""

    entry_id: str
    text: str
    status: str
    evidence: dict[str, int]
    flag: str | None = None


class WeeklyReport(BaseModel):
    """One week of the bot and its people, for the product team."""

    week: Week
    generated_at: datetime
    volumes: Volumes
    escalations_by_reason: CountNode
    escalations_by_category: CountNode
    """By the category of the best-matching entry (for a gap: the nearest, not a match)."""
    topics: list[TopicLine]
    """The gap topics with most gaps this week, most first."""
    hot: list[HotIssue]
    tickets: TicketGroup
    """Tickets opened this week (first-reply time) and resolved this week (resolve time)."""
    tickets_by_category: list[TicketGroup]
    tickets_by_agent: list[TicketGroup]
    feedback: list[EntryFeedback]
    """Entries whose answers were marked not helpful this week: candidates for a rewrite."""
    interceptions: dict[str, int]
    """Agent replies blocked this week, per prohibited phrase."""
    suggestions: list[Suggestion]
    """Drafts for this week's open topics, in the same order."""
    gaps: int
    """Gaps logged this week (in a topic or not)."""
    rules: dict[str, float]
    tags: dict[str, int] = Field(default_factory=dict)
    """This week's tickets (opened or resolved) per tag, most first."""
    satisfaction: list[RatingGroup] = Field(default_factory=list)
    """CSAT given this week: per agent who resolved the ticket, then per category."""
    phrasings: list[PhrasingLine] = Field(default_factory=list)
    """Phrasings learned into the FAQ this week, then those waiting, most evidence first."""


# -- building it ------------------------------------------------------------------------------


def weekly_report(
    store: Store,
    week: Week,
    *,
    kb: KnowledgeBase | None = None,
    rules: HotRules | None = None,
    top: int = 10,
    now: datetime | None = None,
) -> WeeklyReport:
    """Everything of one week, read from the store (``kb`` names entries and categories)."""
    rules = rules or HotRules()
    replies = store.reply_counts(since=week.start, until=week.end)
    volume: Counter[Action] = Counter()
    forwarded = 0
    by_reason: Counter[str] = Counter()
    by_category: Counter[str] = Counter()
    for row in replies:
        if row.reason is Reason.AGENT_HANDLING:
            forwarded += row.count
            continue
        volume[row.action] += row.count
        if row.action is Action.ESCALATE:
            by_reason[(row.reason or Reason.LOW_CONFIDENCE).value] += row.count
            by_category[_category(kb, row.entry_id)] += row.count
    questions = sum(volume.values())
    topics, hot, gaps = _topics(store, week, rules, top)
    tickets = store.tickets_between(since=week.start, until=week.end)
    return WeeklyReport(
        week=week,
        generated_at=now or datetime.now(UTC),
        volumes=Volumes(
            questions=questions,
            answered=volume[Action.ANSWER],
            clarified=volume[Action.CLARIFY],
            escalated=volume[Action.ESCALATE],
            forwarded=forwarded,
            deflection_rate=volume[Action.ANSWER] / questions if questions else None,
        ),
        escalations_by_reason=CountNode(
            name="escalated",
            count=sum(by_reason.values()),
            children=[CountNode(name=r, count=n) for r, n in by_reason.most_common()],
        ),
        escalations_by_category=category_tree(by_category),
        topics=topics,
        hot=hot,
        tickets=_ticket_group("all tickets", tickets, week),
        tickets_by_category=_groups(tickets, week, lambda t: t.category or UNCATEGORISED),
        tickets_by_agent=_groups(tickets, week, lambda t: t.owner or "(unclaimed)"),
        feedback=_feedback(store, week, kb),
        interceptions=_interceptions(store, week),
        suggestions=[
            suggest(store, store.get_gap_topic(t.id), kb=kb)
            for t in topics
            if t.status is TopicStatus.OPEN
        ],
        gaps=gaps,
        rules={k: float(v) for k, v in rules.__dict__.items()},
        phrasings=_phrasings(store, week, top),
        **_desk(store, week, tickets),
    )


def _desk(store: Store, week: Week, tickets: list[Ticket]) -> dict[str, Any]:
    """The agent desk's part: tags on this week's tickets, and this week's CSAT ratings per
    agent and per category."""
    tags: Counter[str] = Counter()
    for names in store.tags_of([t.id for t in tickets]).values():
        tags.update(names)
    ratings = store.ratings_between(since=week.start, until=week.end)
    known = {t.id: t for t in tickets}
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for r in ratings:
        ticket = known.get(r.ticket_id) or store.get_ticket(r.ticket_id)
        groups[("agent", ticket.owner or "(unclaimed)")].append(r.rating)
        groups[("category", ticket.category or UNCATEGORISED)].append(r.rating)
    satisfaction = [
        RatingGroup(by=by, name=name, ratings=len(v), average=round(sum(v) / len(v), 2))
        for (by, name), v in sorted(groups.items())
    ]
    return {"tags": dict(tags.most_common()), "satisfaction": satisfaction}


def _phrasings(store: Store, week: Week, top: int) -> list[PhrasingLine]:
    learned = [
        v
        for v in store.learned_variants(status=VariantStatus.ACCEPTED)
        if v.decided_at is not None and week.start <= v.decided_at < week.end
    ]
    waiting = store.learned_variants(status=VariantStatus.PENDING)[:top]
    return [
        PhrasingLine(
            entry_id=v.entry_id,
            text=redact(v.text),
            status=v.status.value,
            evidence=v.counts,
            flag=v.flag,
        )
        for v in [*learned, *waiting]
    ]


def _category(kb: KnowledgeBase | None, entry_id: str | None) -> str:
    if kb is None or entry_id is None or entry_id not in kb:
        return UNCATEGORISED
    return kb.get(entry_id).category


def category_tree(counts: Counter[str], *, name: str = "escalated") -> CountNode:
    """Counts of ``a/b/c`` category paths as a tree whose inner nodes carry subtotals."""
    root = CountNode(name=name, count=0)
    for path, n in sorted(counts.items()):
        node = root
        node.count += n
        for part in path.split("/"):
            child = next((c for c in node.children if c.name == part), None)
            if child is None:
                child = CountNode(name=part, count=0)
                node.children.append(child)
            child.count += n
            node = child
    _sort(root)
    return root


def _sort(node: CountNode) -> None:
    node.children.sort(key=lambda c: (-c.count, c.name))
    for child in node.children:
        _sort(child)


def _topics(
    store: Store, week: Week, rules: HotRules, top: int
) -> tuple[list[TopicLine], list[HotIssue], int]:
    since = week.start - timedelta(weeks=rules.history)
    recent = store.topic_gaps(since=since, until=week.end)
    this_week = [g for g in recent if g.created_at >= week.start]
    by_topic: dict[int, list[TopicGap]] = defaultdict(list)
    for g in recent:
        if g.topic_id is not None:
            by_topic[g.topic_id].append(g)
    known = {t.id: t for t in store.gap_topics()}
    lines: list[TopicLine] = []
    for topic_id, gaps in by_topic.items():
        if topic_id in known:
            line = _line(known[topic_id], gaps, week, rules)
            if line.count:
                lines.append(line)
    lines.sort(key=lambda t: (-t.count, -t.total, t.id))
    hot: list[HotIssue] = []
    for t in lines:
        if t.rising:
            detail = f"{t.count} this week; weekly before: {_counts(t.previous)}"
            hot.append(
                HotIssue(
                    topic_id=t.id, representative=t.representative, rule="rising", detail=detail
                )
            )
        if t.mass:
            detail = f"{t.users} different customers within {rules.mass_hours:g} h"
            hot.append(
                HotIssue(topic_id=t.id, representative=t.representative, rule="mass", detail=detail)
            )
    return lines[:top], hot[:top], len(this_week)


def _counts(previous: Sequence[int]) -> str:
    return ", ".join(str(n) for n in previous) or "none"


def _line(topic: GapTopic, gaps: list[TopicGap], week: Week, rules: HotRules) -> TopicLine:
    now = [g for g in gaps if g.created_at >= week.start]
    previous = [
        sum(
            1
            for g in gaps
            if week.start - timedelta(weeks=w) <= g.created_at < week.start - timedelta(weeks=w - 1)
        )
        for w in range(rules.history, 0, -1)
    ]
    peak = mass_users(((g.created_at, g.user_id) for g in now), hours=rules.mass_hours)
    # Examples: the week's distinct questions that share most of the topic's keywords.
    distinct = list(dict.fromkeys(redact(g.question) for g in now))
    keys = set(topic.keywords)
    examples = sorted(distinct, key=lambda q: -len(keys & set(keyword_tokens(q))))
    return TopicLine(
        id=topic.id,
        kind=topic.kind,
        entry_id=topic.entry_id,
        status=topic.status,
        representative=redact(topic.representative),
        keywords=[redact(k) for k in topic.keywords],
        category=topic.category,
        count=len(now),
        previous=previous,
        total=topic.size,
        trend=trend(len(now), previous),
        users=peak,
        first_seen=topic.first_seen,
        last_seen=topic.last_seen,
        examples=examples[:3],
        channels=dict(Counter(g.channel for g in now).most_common()),
        rising=rising(len(now), previous, rules),
        mass=peak >= rules.mass_users,
    )


def _minutes(spans: Iterable[timedelta]) -> float | None:
    values = [s.total_seconds() / 60 for s in spans]
    return round(statistics.median(values), 1) if values else None


def _ticket_group(name: str, tickets: Sequence[Ticket], week: Week) -> TicketGroup:
    opened = [t for t in tickets if week.start <= t.created_at < week.end]
    resolved = [
        t
        for t in tickets
        if t.status is TicketStatus.RESOLVED
        and t.resolved_at
        and week.start <= t.resolved_at < week.end
    ]
    return TicketGroup(
        name=name,
        opened=len(opened),
        resolved=len(resolved),
        first_reply_minutes=_minutes(
            t.first_reply_at - t.created_at for t in opened if t.first_reply_at
        ),
        resolve_minutes=_minutes(t.resolved_at - t.created_at for t in resolved if t.resolved_at),
    )


def _groups(tickets: Sequence[Ticket], week: Week, key: object) -> list[TicketGroup]:
    groups: dict[str, list[Ticket]] = defaultdict(list)
    for t in tickets:
        groups[key(t)].append(t)  # type: ignore[operator]
    result = [_ticket_group(name, ts, week) for name, ts in groups.items()]
    return sorted(result, key=lambda g: (-g.opened, -g.resolved, g.name))


def _feedback(store: Store, week: Week, kb: KnowledgeBase | None) -> list[EntryFeedback]:
    rows = []
    for row in store.feedback_counts(since=week.start, until=week.end):
        if row.entry_id is None or not row.not_helpful:
            continue
        entry = kb.get(row.entry_id) if kb is not None and row.entry_id in kb else None
        rows.append(
            EntryFeedback(
                entry_id=row.entry_id,
                question=entry.question if entry else "",
                category=entry.category if entry else UNCATEGORISED,
                helpful=row.helpful,
                not_helpful=row.not_helpful,
            )
        )
    return sorted(rows, key=lambda r: (-r.not_helpful, r.helpful, r.entry_id))


def _interceptions(store: Store, week: Week) -> dict[str, int]:
    found = store.list_interceptions(since=week.start, limit=1_000_000)
    return dict(Counter(i.phrase for i in found if i.created_at < week.end).most_common())
