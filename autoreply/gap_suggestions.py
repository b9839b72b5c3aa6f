"""Suggested FAQ entries: a draft FAQ change for each gap topic (a new entry, or variants for
the entry a topic nearly matched), with the answer agents gave when resolving its tickets."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta

from pydantic import BaseModel, Field

from autoreply.knowledge import KnowledgeBase
from autoreply.models import Ticket, TicketStatus
from autoreply.redact import redact
from autoreply.store import (
    GapTopic,
    Store,
    TopicGap,
    TopicKind,
    TopicStatus,
)
from autoreply.text import normalize


class Suggestion(BaseModel):
    """A draft FAQ change for a topic: a new entry, or variants for an existing one."""

    topic_id: int
    kind: TopicKind
    entry_id: str
    """The new entry's proposed id, or the near-missed entry's id."""
    question: str
    variants: list[str]
    answer: str = ""
    needs_answer: bool = False
    """No resolved ticket of the topic gave an answer: a person has to write one."""
    category: str
    gaps: int
    tickets: list[int] = Field(default_factory=list)
    """The resolved tickets the answer was taken from."""


def suggestions(
    store: Store, *, kb: KnowledgeBase | None = None, limit: int | None = 10
) -> list[Suggestion]:
    """Drafts for the open topics, largest first."""
    topics = store.gap_topics(status=TopicStatus.OPEN)
    return [suggest(store, t, kb=kb) for t in topics[:limit] if t.representative]


def suggest(store: Store, topic: GapTopic, *, kb: KnowledgeBase | None = None) -> Suggestion:
    """The draft for one topic. A new entry: the representative question, the topic's other
    distinct questions as variants (up to 10, those nearest the topic's centroid first: its
    core), the answer most often given when resolving a ticket of one of its conversations
    (opened up to a day after the gap), its category. A near miss: the topic's questions the
    entry does not have yet, as variants for that entry."""
    gaps = store.topic_gaps(topic_id=topic.id)
    question = redact(topic.representative)
    redacted = {g.id: redact(g.question) for g in gaps}
    texts = Counter(redacted.values())
    closeness: dict[str, float] = {}
    similarity = {a.gap_id: a.similarity for a in store.gap_assignments(topic_ids=[topic.id])}
    for g in gaps:
        sim = similarity.get(g.id)
        text = redacted[g.id]
        closeness[text] = max(closeness.get(text, -1.0), -1.0 if sim is None else sim)
    entry = kb.get(topic.entry_id) if kb and topic.entry_id and topic.entry_id in kb else None
    have = {normalize(t) for t in (entry.texts if entry else (question,))}
    variants: list[str] = []
    # The core first: the questions nearest the topic's centroid, then the most repeated.
    for text in sorted(texts, key=lambda t: (-closeness[t], -texts[t])):
        if normalize(text) not in have and len(variants) < 10:
            have.add(normalize(text))
            variants.append(text)
    if topic.kind is TopicKind.NEAR_MISS and topic.entry_id:
        return Suggestion(
            topic_id=topic.id,
            kind=topic.kind,
            variants=variants,
            gaps=len(gaps),
            entry_id=topic.entry_id,
            question=entry.question if entry else question,
            answer=entry.answer if entry else "",
            category=entry.category if entry else topic.category or "general",
        )
    answer, tickets = _answer(store, gaps)
    return Suggestion(
        topic_id=topic.id,
        kind=topic.kind,
        variants=variants,
        gaps=len(gaps),
        entry_id=_new_id(topic, kb),
        question=question,
        answer=answer,
        needs_answer=not answer,
        category=topic.category or "general",
        tickets=tickets,
    )


def _answer(store: Store, gaps: Sequence[TopicGap]) -> tuple[str, list[int]]:
    asked: dict[str, list[datetime]] = {}
    for g in gaps:
        asked.setdefault(g.conversation_id, []).append(g.created_at)
    votes: dict[str, list[Ticket]] = {}
    for t in store.tickets_for_conversations(list(asked)):
        if t.status is not TicketStatus.RESOLVED or not (t.resolution or "").strip():
            continue
        if any(
            a - timedelta(minutes=1) <= t.created_at <= a + timedelta(days=1)
            for a in asked[t.conversation_id]
        ):
            votes.setdefault(normalize(t.resolution or ""), []).append(t)
    if not votes:
        return "", []
    best = max(votes.values(), key=lambda ts: (len(ts), max(t.created_at for t in ts)))
    return redact((best[-1].resolution or "").strip()), [t.id for t in best]


def _new_id(topic: GapTopic, kb: KnowledgeBase | None) -> str:
    words = [w for w in topic.keywords if re.fullmatch(r"[a-z0-9]+", w)][:3]
    slug = "-".join(words)
    if not slug:
        return f"gap-{topic.id}"
    return slug if kb is None or slug not in kb else f"{slug}-{topic.id}"
