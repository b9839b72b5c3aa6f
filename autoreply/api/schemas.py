"""Request and response bodies of the HTTP API (pydantic at the edge).

The customer's message in is ``autoreply.models.Message`` and the bot's answer out is
``autoreply.models.Reply``; this module adds what only the API needs, and documents the
handoff payload every ticket carries (``TicketView.context``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from autoreply.desk import Bulk
from autoreply.models import Candidate, FAQCandidate, Priority, Reason, StoredMessage, Ticket
from autoreply.store import Delivery, Note


class RatingIn(BaseModel):
    """The customer's satisfaction with a resolved ticket of their conversation (CSAT)."""

    model_config = ConfigDict(extra="forbid")

    conversation_id: str = Field(
        min_length=1, max_length=260, description="``Reply.conversation_id``, e.g. ``api:c1``."
    )
    rating: int = Field(ge=1, le=5, description="1 (very unhappy) to 5 (very happy).")
    ticket_id: int | None = Field(
        default=None, description="Default: the conversation's last resolved ticket."
    )
    comment: str | None = Field(default=None, max_length=2000)


class FeedbackIn(BaseModel):
    """Was the bot's answer helpful? ``message_id`` is ``Reply.message_id``."""

    model_config = ConfigDict(extra="forbid")

    message_id: int
    helpful: bool
    comment: str | None = Field(default=None, max_length=2000)


class Conversation(BaseModel):
    """A conversation's messages, oldest first: customer, bot and agent replies."""

    conversation_id: str
    messages: list[StoredMessage]


class HandoffMessage(BaseModel):
    id: int
    text: str
    at: datetime


class HandoffAttempt(BaseModel):
    """One of the bot's earlier replies in the conversation."""

    text: str
    decision: str | None = None
    reason: str | None = None
    entry_id: str | None = None
    confidence: float | None = None


class HandoffPayload(BaseModel):
    """What a person needs to take over: the same payload goes to the API, the channel
    (e.g. a Chatwoot private note) and the store (``tickets.context``)."""

    model_config = ConfigDict(extra="allow")

    question: str = ""
    """The message that escalated."""
    messages: list[HandoffMessage] = Field(default_factory=list)
    """The customer's recent messages, oldest first."""
    attempts: list[HandoffAttempt] = Field(default_factory=list)
    """The bot's recent replies, with decision, reason, entry and confidence."""
    candidates: list[Candidate] = Field(default_factory=list)
    """The escalating message's top FAQ entries with calibrated confidences."""
    reason: Reason | None = None
    priority: Priority | None = None
    vip: bool = False
    channel: str = ""
    user_id: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)
    suggested_owner: str | None = None
    """The agent the customer asked for, or a VIP's last agent."""
    updates: list[dict[str, Any]] = Field(default_factory=list)
    """Payloads of later escalations in the same conversation while the ticket was open."""


class TicketView(Ticket):
    """A ticket with its handoff payload spelled out."""

    context: HandoffPayload = Field(default_factory=HandoffPayload)  # type: ignore[assignment]

    @classmethod
    def of(cls, ticket: Ticket) -> TicketView:
        return cls.model_validate(ticket.model_dump())


class TicketDetail(BaseModel):
    """Everything an agent needs on one screen."""

    ticket: TicketView
    conversation: list[StoredMessage]
    earlier_tickets: list[TicketView]
    """The same customer's other tickets, newest first."""
    deliveries: list[Delivery]
    """How this ticket's agent replies went out, newest first."""
    tags: list[str] = Field(default_factory=list)
    notes: list[Note] = Field(default_factory=list)
    """Internal notes, oldest first: agents only, never sent to the customer."""


class ReplyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=10_000)


class AgentReply(BaseModel):
    """The stored agent message and how it was delivered to the customer."""

    message: StoredMessage
    delivery: Delivery


class TransferIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: str = Field(min_length=1, max_length=64, description="The agent who takes over.")


class ResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    resolution: str | None = Field(
        default=None, max_length=10_000, description="Default: your last reply on the ticket."
    )


class PromoteIn(BaseModel):
    """Defaults: the customer's question, the ticket's resolution, the ticket's category."""

    model_config = ConfigDict(extra="forbid")

    question: str | None = Field(default=None, max_length=2000)
    answer: str | None = Field(default=None, max_length=10_000)
    category: str | None = Field(default=None, max_length=200)


class ReloadResult(BaseModel):
    """The knowledge index now answering."""

    entries: int
    texts: int
    encoded: int
    """Texts encoded anew (0 when the cached index was reused)."""
    status: str
    seconds: float
    fingerprint: str


class UploadResult(BaseModel):
    file: str
    entries: int
    """Entries in the uploaded file."""
    warnings: list[dict[str, Any]] = Field(default_factory=list)
    """Conflicts with other entries ({file, line, field, problem, hint, message}), installed
    anyway because the admin accepted warnings (or reported by a dry run)."""
    dry_run: bool = False
    """True: only checked; nothing was written or reloaded."""
    reload: ReloadResult | None = None
    """The reload after installing (None for a dry run)."""


class Stats(BaseModel):
    counts: dict[str, int]
    """Store row counts (messages, tickets by status, gaps, feedback, pending candidates)."""
    decisions: dict[str, int]
    """Bot replies by action since the database was created."""
    interceptions_by_agent: dict[str, int]
    interceptions_by_phrase: dict[str, int]
    deliveries_failed: int
    knowledge: ReloadResult


class Health(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)


class CandidateList(BaseModel):
    candidates: list[FAQCandidate]


class NoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=5000, description="For agents only.")


class TagsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tags: list[str] = Field(
        min_length=1,
        max_length=20,
        description="1-32 letters, digits, '.', '_' or '-' each; stored lower-case.",
    )


class TagsOut(BaseModel):
    ticket_id: int
    tags: list[str]


class BulkIn(BaseModel):
    """One action on several tickets; each ticket succeeds or fails on its own, under the
    same rules as the single-ticket routes (only the owner transfers or resolves)."""

    model_config = ConfigDict(extra="forbid")

    action: Bulk
    ticket_ids: list[int] = Field(min_length=1, max_length=200)
    to: str | None = Field(default=None, max_length=64, description="For ``transfer``.")
    tags: list[str] | None = Field(default=None, max_length=20, description="For ``tag``.")
    resolution: str | None = Field(default=None, max_length=10_000, description="For resolve.")


class BulkResult(BaseModel):
    ticket_id: int
    ok: bool
    error: dict[str, str] | None = None
    """``{"type": ..., "message": ...}`` as the single-ticket route would have answered."""
