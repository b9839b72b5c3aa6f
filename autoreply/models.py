"""Pydantic models at the edges: what goes into autoreply and what comes out.

FAQEntry (knowledge), Message (a customer's message in), Reply (what the bot says back),
Decision (the pure engine's verdict), and the stored records: StoredMessage, Ticket, Gap,
Feedback, FAQCandidate; TopicKind, which gap clustering and the store both speak. Closed sets are
StrEnums.
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Action(StrEnum):
    """What the bot does with a message."""

    ANSWER = "answer"
    CLARIFY = "clarify"
    ESCALATE = "escalate"


class Reason(StrEnum):
    """Why the engine chose its action (machine-readable, stable)."""

    CONFIDENT = "confident"
    CLARIFY_PICKED = "clarify_picked"
    AMBIGUOUS = "ambiguous"
    LOW_CONFIDENCE = "low_confidence"
    ASKED_FOR_HUMAN = "asked_for_human"
    COMPLAINT = "complaint"
    REPEATED_FAILURE = "repeated_failure"
    NOT_HELPFUL = "not_helpful"
    """Not an engine decision: the customer voted the bot's answer not helpful (a gap)."""
    SENSITIVE_CATEGORY = "sensitive_category"
    EMPTY_MESSAGE = "empty_message"
    AGENT_HANDLING = "agent_handling"
    RATED = "rated"
    """The customer answered the satisfaction question of a resolved ticket with 1-5."""


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class TicketStatus(StrEnum):
    OPEN = "open"
    CLAIMED = "claimed"
    RESOLVED = "resolved"


class Role(StrEnum):
    """Who wrote a message in a conversation."""

    CUSTOMER = "customer"
    BOT = "bot"
    AGENT = "agent"


class CandidateStatus(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    DISMISSED = "dismissed"


class TopicKind(StrEnum):
    """What a gap topic asks of the FAQ."""

    NEW = "new"
    """Questions no entry covers: a new entry is needed."""
    NEAR_MISS = "near_miss"
    """Questions an existing entry (``entry_id``) nearly matched: it needs more variants."""


class FAQEntry(BaseModel):
    """One FAQ entry: a question, its other phrasings, the answer and a business category."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=200)
    question: str = Field(min_length=1)
    variants: tuple[str, ...] = ()
    answer: str = Field(min_length=1)
    category: str = Field(default="general", min_length=1)
    tags: tuple[str, ...] = ()
    escalate: bool = False
    enabled: bool = True
    source: str | None = Field(default=None, exclude=True)
    """Where the entry was read from (``file:line``); not part of the entry's data."""

    @field_validator("id", "question", "answer", "category")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be empty")
        return value

    @field_validator("variants", "tags")
    @classmethod
    def _strip_items(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(v.strip() for v in value if v.strip())

    @property
    def texts(self) -> tuple[str, ...]:
        """The question followed by every variant: what the index matches against."""
        return (self.question, *self.variants)


TRUSTED_METADATA = frozenset(
    {"vip", "priority", "agent_id", "customer_id", "name", "email", "phone", "vip_source"}
)
"""Metadata keys that raise a customer's standing or claim an identity: taken only from
verified senders (``Message.verified``), dropped from anyone else's messages."""


class MessageIn(BaseModel):
    """A customer's message as its sender states it: the body of ``POST /v1/messages``.
    Nothing in it is trusted; the service turns it into a ``Message``."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(max_length=20_000)
    user_id: str = Field(default="anonymous", min_length=1, max_length=200)
    conversation_id: str | None = Field(default=None, max_length=200)
    channel: str = Field(default="api", min_length=1, max_length=50)
    message_id: str | None = Field(default=None, max_length=200)
    """The channel's own id for the message; a repeated id is answered once."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Free-form; understood keys: ``vip`` (bool), ``priority`` (a floor for the ticket's
    priority), ``agent_id`` (preferred agent), ``name``, ``picked`` (the entry id the
    customer chose from a clarification). The keys in ``TRUSTED_METADATA`` count only when
    ``verified``."""

    @field_validator("metadata")
    @classmethod
    def _valid_unicode(cls, value: dict[str, Any]) -> dict[str, Any]:
        # JSON can escape lone surrogates ("\ud800") that no database stores as text.
        todo: list[Any] = [value]
        while todo:
            item = todo.pop()
            if isinstance(item, dict):
                todo += [*item, *item.values()]
            elif isinstance(item, list):
                todo += item
            elif isinstance(item, str):
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    raise ValueError(
                        f"text {item[:40]!r} holds a lone surrogate, which is not valid "
                        "Unicode; send UTF-8 text"
                    ) from None
        return value


class Message(MessageIn):
    """A customer's message as it arrives from any channel, with what its sender can prove."""

    # Room for the service's namespace prefix ("api:" and the sender's channel name).
    conversation_id: str | None = Field(default=None, max_length=260)
    message_id: str | None = Field(default=None, max_length=260)

    verified: bool = True
    """Whether whoever built this message vouches for ``user_id`` and the trusted metadata:
    a signed platform request, a signed generic webhook, or the application embedding the
    library. The service's open webhook sets False: such a message gets no VIP status, no
    priority and no identity from what it says about itself, and no VIP-list lookup."""

    @property
    def conversation(self) -> str:
        """The conversation id, defaulting to one conversation per user and channel."""
        return self.conversation_id or f"{self.channel}:{self.user_id}"

    @property
    def vip(self) -> bool:
        return self.verified and self.metadata.get("vip") is True

    @property
    def priority(self) -> Priority | None:
        """The priority the (verified) sender asked for, if it is a known one."""
        value = self.metadata.get("priority") if self.verified else None
        if isinstance(value, str) and value in Priority.__members__.values():
            return Priority(value)
        return None

    def untrusted(self) -> Message:
        """This message as an unverified sender's: the trusted metadata keys dropped."""
        kept = {k: v for k, v in self.metadata.items() if k not in TRUSTED_METADATA}
        return self.model_copy(update={"metadata": kept, "verified": False})


class Candidate(BaseModel):
    """One FAQ entry the engine considered, best first."""

    entry_id: str
    question: str
    category: str
    confidence: float
    """0..1, calibrated: a confidence of 0.9 should be right about 9 times in 10."""
    probability: float = 0.0
    """P(entry | question) among the entries (sums to 1 over all entries)."""
    similarity: float
    """The raw similarity of the best matching text (encoder scale)."""
    matched_text: str = ""


class Decision(BaseModel):
    """The pure engine's verdict on one message: no ticket or store ids yet."""

    action: Action
    reason: Reason
    text: str
    """What to say to the customer: the answer, the clarifying prompt or the fallback."""
    entry_id: str | None = None
    confidence: float = 0.0
    candidates: list[Candidate] = Field(default_factory=list)
    priority: Priority = Priority.NORMAL
    normalized: str = ""
    """The normalized query text the engine matched (for gap logging)."""


class Reply(BaseModel):
    """What the library, CLI and service return for one customer message."""

    decision: Action
    reason: Reason
    text: str
    entry_id: str | None = None
    confidence: float = 0.0
    candidates: list[Candidate] = Field(default_factory=list)
    priority: Priority = Priority.NORMAL
    conversation_id: str
    message_id: int | None = None
    """The store's id of the bot's reply message (use it for feedback)."""
    ticket_id: int | None = None
    gap_id: int | None = None
    out_of_hours: bool = False
    next_open: datetime | None = None
    duplicate: bool = False
    """True when this message id was seen before and the first reply is returned again."""
    conversation_token: str | None = None
    """Returned once, with the reply that started a ``POST /v1/messages`` conversation: send
    it as ``X-Conversation-Token`` to read the conversation and to keep writing to it."""


class StoredMessage(BaseModel):
    """One message of a conversation as kept in the store."""

    id: int
    conversation_id: str
    user_id: str
    channel: str
    role: Role
    text: str
    created_at: datetime
    external_id: str | None = None
    action: Action | None = None
    reason: Reason | None = None
    entry_id: str | None = None
    confidence: float | None = None
    agent: str | None = None
    ticket_id: int | None = None
    reply_to: int | None = Field(default=None, exclude=True)
    """For a bot reply: the customer message it answers (not shown in conversations)."""
    details: dict[str, Any] | None = Field(default=None, exclude=True)
    """A bot reply's other fields (candidates, priority, gap id, business hours), kept so a
    retried message gets the first reply whole; not shown in conversations."""

    @field_validator("details", mode="before")
    @classmethod
    def _details_from_json(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value


class Ticket(BaseModel):
    """A hand-off to a person. Whoever claims it owns it until it is resolved or transferred."""

    id: int
    conversation_id: str
    user_id: str
    channel: str
    status: TicketStatus
    priority: Priority
    reason: Reason
    category: str | None = None
    vip: bool = False
    owner: str | None = None
    suggested_owner: str | None = None
    context: dict[str, Any] = Field(default_factory=dict)
    """The handoff payload: customer's messages, the bot's attempts, scores, reason."""
    created_at: datetime
    claimed_at: datetime | None = None
    first_reply_at: datetime | None = None
    resolved_at: datetime | None = None
    resolution: str | None = None


class Gap(BaseModel):
    """A question the bot could not answer, personal data redacted."""

    id: int
    question: str
    normalized: str
    reason: Reason
    best_entry_id: str | None = None
    best_score: float | None = None
    category: str | None = None
    channel: str
    conversation_id: str
    user_id: str
    created_at: datetime


class Feedback(BaseModel):
    id: int
    message_id: int
    helpful: bool
    comment: str | None = None
    created_at: datetime


class FAQCandidate(BaseModel):
    """An agent's answer proposed as a new FAQ entry, waiting for review."""

    id: int
    ticket_id: int | None = None
    question: str
    answer: str
    category: str
    agent: str
    status: CandidateStatus = CandidateStatus.PENDING
    created_at: datetime
