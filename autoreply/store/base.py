"""The Store protocol: everything autoreply keeps between messages.

Conversations and their messages, tickets (the human queue), FAQ gaps, feedback and FAQ
candidates; for the service also agents (bearer tokens, kept as sha256 only),
prohibited-phrase interceptions and reply deliveries, and the knowledge version that tells
every replica of the service to reload. Implementations: SQLiteStore (default) and
PostgresStore (several replicas sharing one database).
Every method is one transaction (``atomic()`` groups several into one). Times are
timezone-aware UTC datetimes. Ownership rules live here, so every way in (library, CLI,
service) enforces them the same way:

- a ticket is ``open`` until an agent claims it; the claimer owns it (first-ask responsibility);
- only the owner replies to, resolves or transfers a claimed ticket (OwnershipError otherwise);
- claiming a ticket someone else owns raises ConflictError; claiming your own is a no-op;
- acting on a resolved ticket raises ConflictError.
"""

from __future__ import annotations

import hashlib
import secrets
from contextlib import AbstractContextManager
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field

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
)

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


class TopicKind(StrEnum):
    """What a gap topic asks of the FAQ."""

    NEW = "new"
    """Questions no entry covers: a new entry is needed."""
    NEAR_MISS = "near_miss"
    """Questions an existing entry (``entry_id``) nearly matched: it needs more variants."""


class TopicStatus(StrEnum):
    """Where a topic stands in review. Re-clustering never changes it."""

    OPEN = "open"
    ACCEPTED = "accepted"
    """Its suggestion went into the knowledge base."""
    DISMISSED = "dismissed"
    """Looked at and left alone (noise, or not the FAQ's job)."""


class GapTopic(BaseModel):
    """A group of FAQ gaps that ask the same thing (autoreply.gaps keeps them current)."""

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


@runtime_checkable
class Store(Protocol):
    """Persistence for conversations, tickets, gaps, feedback and FAQ candidates."""

    def atomic(self) -> AbstractContextManager[None]:
        """One transaction for every call made inside (in this thread): all of them are
        stored or, on an exception or a crash, none. Nested ``atomic()`` joins the outer one.
        A customer message, its gap, ticket and the bot's reply go in together this way."""
        ...

    # -- conversations -------------------------------------------------------------------
    def add_message(
        self,
        *,
        conversation_id: str,
        user_id: str,
        channel: str,
        role: Role,
        text: str,
        external_id: str | None = None,
        action: Action | None = None,
        reason: Reason | None = None,
        entry_id: str | None = None,
        confidence: float | None = None,
        agent: str | None = None,
        ticket_id: int | None = None,
        reply_to: int | None = None,
    ) -> StoredMessage:
        """Append a message. ``external_id`` is the channel's id for a customer message;
        (channel, external_id) is unique: adding it twice raises ConflictError."""
        ...

    def find_message(self, *, channel: str, external_id: str) -> StoredMessage | None:
        """The customer message with this channel id, or None."""
        ...

    def reply_to(self, message_id: int) -> StoredMessage | None:
        """The bot message stored as the reply to customer message ``message_id``."""
        ...

    def get_message(self, message_id: int) -> StoredMessage:
        """One message by id; NotFoundError if there is none."""
        ...

    def history(self, conversation_id: str, *, limit: int | None = None) -> list[StoredMessage]:
        """The conversation's messages, oldest first; with ``limit``, the newest ``limit``."""
        ...

    # -- tickets -------------------------------------------------------------------------
    def open_ticket(
        self,
        *,
        conversation_id: str,
        user_id: str,
        channel: str,
        priority: Priority,
        reason: Reason,
        category: str | None = None,
        vip: bool = False,
        suggested_owner: str | None = None,
        context: dict[str, Any] | None = None,
    ) -> tuple[Ticket, bool]:
        """Open a ticket for the conversation, or join the one still unresolved.

        Returns (ticket, created). Joining raises the priority if the new one is higher and
        appends the new context under ``context["updates"]``. A VIP ticket with a
        ``suggested_owner`` is created already claimed by that agent (VIP stickiness)."""
        ...

    def get_ticket(self, ticket_id: int) -> Ticket:
        """NotFoundError if there is none."""
        ...

    def active_ticket(self, conversation_id: str) -> Ticket | None:
        """The conversation's unresolved ticket, if any."""
        ...

    def list_tickets(
        self,
        *,
        status: TicketStatus | None = None,
        owner: str | None = None,
        priority: Priority | None = None,
        category: str | None = None,
        user_id: str | None = None,
        limit: int = 100,
    ) -> list[Ticket]:
        """Tickets, most urgent first then oldest first. ``category`` matches the path
        and its sub-paths (``billing`` matches ``billing/refunds``)."""
        ...

    def claim_ticket(self, ticket_id: int, agent: str) -> Ticket:
        """The agent takes ownership. ConflictError if another agent owns it or it is resolved."""
        ...

    def transfer_ticket(self, ticket_id: int, *, agent: str, to_agent: str) -> Ticket:
        """The owner hands the ticket to another agent (OwnershipError if not the owner)."""
        ...

    def agent_reply(self, ticket_id: int, *, agent: str, text: str) -> StoredMessage:
        """The owner's reply to the customer, stored in the conversation (role agent).
        An open ticket is claimed by the replying agent first. Sets first_reply_at once."""
        ...

    def resolve_ticket(
        self, ticket_id: int, *, agent: str, resolution: str | None = None
    ) -> Ticket:
        """The owner closes the ticket. ``resolution`` defaults to the agent's last reply."""
        ...

    def set_conversation_key(self, conversation_id: str, token_hash: str) -> bool:
        """Give a conversation its customer token (sha256 hex) unless it has one already;
        True if this call set it (concurrent first messages: exactly one wins)."""
        ...

    def conversation_key(self, conversation_id: str) -> str | None:
        """The sha256 hex of the conversation's customer token, or None."""
        ...

    def add_vip(self, channel: str, user_id: str, *, added_by: str, note: str | None = None) -> Vip:
        """Put a customer on the VIP list (again: updates the note and who added it)."""
        ...

    def remove_vip(self, channel: str, user_id: str) -> None:
        """Take a customer off the VIP list; NotFoundError if they are not on it."""
        ...

    def list_vips(self) -> list[Vip]:
        """The VIP list, by channel then user id."""
        ...

    def is_vip(self, channel: str, user_id: str) -> bool:
        """Whether (channel, user_id) is on the VIP list."""
        ...

    def last_agent_for_user(self, user_id: str) -> str | None:
        """The agent who most recently owned a ticket of this user (for VIP stickiness)."""
        ...

    # -- gaps, feedback, candidates ------------------------------------------------------
    def add_gap(
        self,
        *,
        question: str,
        normalized: str,
        reason: Reason,
        channel: str,
        conversation_id: str,
        user_id: str,
        best_entry_id: str | None = None,
        best_score: float | None = None,
        category: str | None = None,
    ) -> Gap:
        """Log a question the bot could not answer. The caller has redacted it already."""
        ...

    def list_gaps(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = 100,
    ) -> list[Gap]:
        """Gaps, newest first."""
        ...

    def add_feedback(
        self, message_id: int, *, helpful: bool, comment: str | None = None
    ) -> Feedback:
        """Feedback on a bot message (NotFoundError if the message is not a bot message)."""
        ...

    def list_feedback(self, *, entry_id: str | None = None) -> list[Feedback]:
        """Feedback, newest first; with ``entry_id``, only on answers from that entry."""
        ...

    def promote(
        self,
        ticket_id: int,
        *,
        agent: str,
        question: str | None = None,
        answer: str | None = None,
        category: str | None = None,
    ) -> FAQCandidate:
        """Propose a resolved ticket's answer as a new FAQ entry. Defaults: the customer's
        first message in the ticket's context, the ticket's resolution, the ticket's category.
        Only the owner may promote; the ticket must be resolved (ConflictError otherwise)."""
        ...

    def list_candidates(self, *, status: CandidateStatus | None = None) -> list[FAQCandidate]: ...

    def set_candidate_status(self, candidate_id: int, status: CandidateStatus) -> FAQCandidate: ...

    # -- agents (API tokens) ---------------------------------------------------------------
    def add_agent(
        self, name: str, *, role: AgentRole, token: str, expires_at: datetime | None = None
    ) -> Agent:
        """Register an agent with the token it will present; only ``hash_token(token)`` is
        stored. Names are 1-64 of ``A-Z a-z 0-9 . _ @ -`` (StoreError otherwise);
        ConflictError if the name is taken."""
        ...

    def set_agent_token(
        self, name: str, *, token: str, expires_at: datetime | None = None
    ) -> Agent:
        """Replace an agent's token (the old one stops working) and its expiry, and enable
        it again. NotFoundError if there is no such agent."""
        ...

    def agent_for_token(self, token: str) -> Agent | None:
        """The agent holding this token, also when disabled or expired (the caller decides
        and says why), or None for an unknown token."""
        ...

    def get_agent(self, name: str) -> Agent:
        """NotFoundError (listing the known names) if there is none."""
        ...

    def list_agents(self) -> list[Agent]:
        """Every agent, by name."""
        ...

    def disable_agent(self, name: str) -> Agent:
        """The agent's token stops working; its tickets stay as they are."""
        ...

    # -- quality inspection and deliveries ----------------------------------------------
    def add_interception(
        self, *, agent: str, phrase: str, ticket_id: int | None = None
    ) -> Interception:
        """Record that ``agent``'s reply on ``ticket_id`` was blocked for ``phrase``."""
        ...

    def list_interceptions(
        self, *, agent: str | None = None, since: datetime | None = None, limit: int = 100
    ) -> list[Interception]:
        """Interceptions, newest first."""
        ...

    def count_interceptions(
        self, *, by: Literal["agent", "phrase"], since: datetime | None = None
    ) -> dict[str, int]:
        """Number of interceptions per agent or per phrase, largest first."""
        ...

    def add_delivery(
        self, *, message_id: int, channel: str, status: DeliveryStatus, error: str | None = None
    ) -> Delivery:
        """Record how the agent message ``message_id`` went out (NotFoundError if no such
        message)."""
        ...

    def list_deliveries(
        self,
        *,
        status: DeliveryStatus | None = None,
        ticket_id: int | None = None,
        limit: int = 100,
    ) -> list[Delivery]:
        """Deliveries, newest first; with ``ticket_id``, those of the ticket's messages."""
        ...

    def decision_counts(self, *, since: datetime | None = None) -> dict[str, int]:
        """Bot replies per action (answer, clarify, escalate), every action present."""
        ...

    # -- gap topics (autoreply.gaps) ---------------------------------------------------------
    def unclustered_gaps(self, *, limit: int | None = None) -> list[Gap]:
        """Gaps with no stored vector yet (never clustered), oldest first."""
        ...

    def gap_assignments(
        self,
        *,
        topic_ids: list[int] | None = None,
        waiting: bool = False,
        limit: int | None = None,
    ) -> list[GapAssignment]:
        """Clustered gaps, newest first: with ``topic_ids`` only those topics' members, with
        ``waiting`` only those in no topic."""
        ...

    def save_gap_topics(self, topics: list[GapTopic], assignments: list[GapAssignment]) -> None:
        """Insert or update topics and assignments in one transaction. A stored topic keeps
        its review status whatever ``topics`` says (use set_gap_topic_status)."""
        ...

    def gap_topics(self, *, status: TopicStatus | None = None) -> list[GapTopic]:
        """Topics, largest first (then by id)."""
        ...

    def get_gap_topic(self, topic_id: int) -> GapTopic:
        """NotFoundError (listing some known ids) if there is none."""
        ...

    def set_gap_topic_status(self, topic_id: int, status: TopicStatus) -> GapTopic: ...

    def delete_gap_topics(self, topic_ids: list[int]) -> None:
        """Delete topics; their gaps stay, waiting (topic None)."""
        ...

    def clear_gap_topics(self) -> None:
        """Forget every topic and every stored gap vector (a rebuild starts from scratch)."""
        ...

    def topic_gaps(
        self,
        *,
        topic_id: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
    ) -> list[TopicGap]:
        """Gaps with their topic, newest first, created in ``[since, until)``; with
        ``topic_id`` only that topic's."""
        ...

    # -- weekly report -------------------------------------------------------------------
    def reply_counts(self, *, since: datetime, until: datetime) -> list[ReplyCount]:
        """Bot replies created in ``[since, until)`` counted by action, reason and entry."""
        ...

    def feedback_counts(self, *, since: datetime, until: datetime) -> list[FeedbackCount]:
        """Feedback given in ``[since, until)``, per entry of the answer it was given on,
        most not-helpful first."""
        ...

    def tickets_between(self, *, since: datetime, until: datetime) -> list[Ticket]:
        """Tickets opened or resolved in ``[since, until)``, by id."""
        ...

    def tickets_for_conversations(self, conversation_ids: list[str]) -> list[Ticket]:
        """Every ticket of these conversations, by id."""
        ...

    # -- knowledge version (reload propagation) -------------------------------------------
    def knowledge_version(self) -> int:
        """How many times the knowledge base was reloaded anywhere (0 for a new store).
        Every replica polls it and reloads when it moves."""
        ...

    def bump_knowledge_version(self) -> int:
        """Count one reload (atomically, also across processes) and return the new version."""
        ...

    # -- housekeeping --------------------------------------------------------------------
    def ping(self) -> None:
        """Check that the database answers (StoreError if not): the service's readiness."""
        ...

    def counts(self) -> dict[str, int]:
        """Row counts: messages, tickets_open, tickets_claimed, tickets_resolved, gaps,
        feedback, candidates_pending."""
        ...

    def close(self) -> None: ...
