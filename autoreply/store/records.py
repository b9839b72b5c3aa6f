"""The records the store speaks, in one place: those of conversations, tickets, gaps, feedback
and FAQ candidates (defined in autoreply.models, the models at the edges, and re-exported
here), and the store's own: agents and their tokens, interceptions, deliveries, gap topics
and the weekly counts. The Store protocol (store/base.py) and the SQL store (store/sql*.py)
import their vocabulary from here."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from autoreply.errors import ConflictError
from autoreply.models import (
    Action,
    CandidateStatus,
    FAQCandidate,
    Feedback,
    Gap,
    Priority,
    Reason,
    Role,
    StoredMessage,
    Ticket,
    TicketStatus,
    TopicKind,
)

__all__ = [
    "Action",
    "Agent",
    "AgentRole",
    "CandidateStatus",
    "Delivery",
    "DeliveryStatus",
    "FAQCandidate",
    "Feedback",
    "FeedbackCount",
    "Gap",
    "GapAssignment",
    "GapTopic",
    "Interception",
    "Note",
    "Rating",
    "LearnedVariant",
    "LearningSource",
    "Priority",
    "Reason",
    "ReplyCount",
    "Role",
    "StoredMessage",
    "Ticket",
    "TicketStatus",
    "TopicGap",
    "TopicKind",
    "TopicStatus",
    "VariantStatus",
    "Vip",
    "clean_tags",
    "hash_token",
    "new_token",
]

TOKEN_PREFIX = "ar_"


def new_token() -> str:
    """A fresh random agent token (256 bits); shown to its owner once, stored only hashed."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The sha256 hex digest under which a token is stored and looked up. Tokens are random,
    so a fast hash is enough: there is nothing to brute-force from a dictionary."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class AgentRole(StrEnum):
    """What an API token may do: work the queue (agent), or also manage the bot (admin)."""

    AGENT = "agent"
    ADMIN = "admin"


class Agent(BaseModel):
    """A person who works the queue through the API. Its token is never stored, only its
    sha256 (see hash_token)."""

    id: int
    name: str
    role: AgentRole
    created_at: datetime
    expires_at: datetime | None = None
    disabled: bool = False

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at


class Vip(BaseModel):
    """A customer on the admin-managed VIP list: (channel, user_id) as the channel proves it."""

    channel: str
    user_id: str
    note: str | None = None
    added_by: str
    added_at: datetime


class Note(BaseModel):
    """An internal note on a ticket: agents only, never sent to a channel or shown to the
    customer (kept apart from the conversation's messages)."""

    id: int
    ticket_id: int
    agent: str
    text: str
    created_at: datetime


class Rating(BaseModel):
    """A customer's satisfaction rating (CSAT) of a resolved ticket: 1 (bad) to 5 (great)."""

    ticket_id: int
    rating: int = Field(ge=1, le=5)
    comment: str | None = None
    created_at: datetime


NOTE_MAX_CHARS = 5000
_TAG = re.compile(r"^[\w.-]{1,32}$")


def clean_tags(tags: list[str]) -> list[str]:
    """Tags as stored: stripped, lower-cased, without repeats, in the given order.
    ConflictError naming the tag when one is not 1-32 letters, digits, ``.``, ``_`` or ``-``
    (Chinese characters count as letters)."""
    out: list[str] = []
    for raw in tags:
        tag = raw.strip().casefold()
        if not _TAG.match(tag):
            raise ConflictError(
                f"tag {raw[:40]!r} is not valid: use 1-32 letters, digits, '.', '_' or '-'"
            )
        if tag not in out:
            out.append(tag)
    return out


class Interception(BaseModel):
    """An agent reply blocked because it contained a prohibited phrase (违规话术)."""

    id: int
    agent: str
    ticket_id: int | None = None
    phrase: str
    created_at: datetime


class DeliveryStatus(StrEnum):
    """What became of an agent reply on its way to the customer."""

    SENT = "sent"
    """The channel accepted it (platform API or callback URL)."""
    FAILED = "failed"
    """The channel refused it or timed out after its retries; ``error`` says why."""
    POLL = "poll"
    """No push channel: the reply waits in the conversation (GET /v1/conversations/{id})."""


class TopicStatus(StrEnum):
    """Where a topic stands in review. Re-clustering never changes it."""

    OPEN = "open"
    ACCEPTED = "accepted"
    """Its suggestion went into the knowledge base."""
    DISMISSED = "dismissed"
    """Looked at and left alone (noise, or not the FAQ's job)."""


class GapTopic(BaseModel):
    """A group of FAQ gaps that ask the same thing (autoreply.gap_topics keeps them current)."""

    id: int
    """Stable across runs: the id of the topic's earliest gap when it was first found."""
    kind: TopicKind = TopicKind.NEW
    status: TopicStatus = TopicStatus.OPEN
    encoder: str
    """The encoder whose vectors the centroid is in."""
    centroid: bytes
    """Mean of the members' unit vectors, little-endian float32."""
    size: int
    representative: str
    """The member question most like the others (redacted)."""
    keywords: list[str] = Field(default_factory=list)
    category: str | None = None
    entry_id: str | None = None
    """For a near miss: the entry its questions nearly matched."""
    first_seen: datetime
    last_seen: datetime
    updated_at: datetime


class GapAssignment(BaseModel):
    """A clustered gap: its vector (encoded once) and its topic (None: waiting for more)."""

    gap_id: int
    topic_id: int | None = None
    similarity: float | None = None
    """Cosine to the topic's centroid when it was assigned."""
    encoder: str
    vector: bytes
    """Unit vector, little-endian float32."""


class TopicGap(Gap):
    """A gap with its topic (None: not clustered yet, or waiting for similar gaps)."""

    topic_id: int | None = None


class ReplyCount(BaseModel):
    """How many bot replies had this action, reason and entry (weekly volumes)."""

    action: Action
    reason: Reason | None = None
    entry_id: str | None = None
    count: int


class FeedbackCount(BaseModel):
    """Helpful and not-helpful votes on the answers from one entry."""

    entry_id: str | None = None
    helpful: int
    not_helpful: int


class Delivery(BaseModel):
    """One attempt (with the channel's own retries) to deliver an agent reply."""

    id: int
    message_id: int
    channel: str
    status: DeliveryStatus
    error: str | None = None
    created_at: datetime


class LearningSource(StrEnum):
    """What showed that a customer's question belongs to an entry (autoreply.learning)."""

    PICKED = "picked"
    """The customer picked the entry from "did you mean"."""
    AGENT_SCRIPT = "agent_script"
    """An agent answered the escalated question with the entry's answer (a standard script)."""
    HELPFUL = "helpful"
    """The customer voted the entry's answer helpful."""
    PROMOTE = "promote"
    """An agent promoted a ticket whose answer is the entry's answer."""


class VariantStatus(StrEnum):
    """Where a candidate variant stands in review."""

    PENDING = "pending"
    ACCEPTED = "accepted"
    """Written into its entry (a journalled, undoable change)."""
    DISMISSED = "dismissed"


class LearnedVariant(BaseModel):
    """A candidate variant of an entry: customers' questions with one normalized text, and
    the evidence that they belong to the entry, counted per source."""

    id: int
    entry_id: str
    text: str
    """As the first customer wrote it, personal data redacted."""
    normalized: str
    status: VariantStatus = VariantStatus.PENDING
    counts: dict[str, int] = Field(default_factory=dict)
    """Evidence per LearningSource value."""
    flag: str | None = None
    """Why it must not be accepted automatically (closer to another entry, a conflict)."""
    decided_by: str | None = None
    decided_at: datetime | None = None
    first_seen: datetime
    last_seen: datetime

    @property
    def count(self) -> int:
        return sum(self.counts.values())
