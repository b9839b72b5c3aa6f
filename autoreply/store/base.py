"""The Store protocol: everything autoreply keeps between messages, split by concern.

- ConversationStore: conversations and their messages, tickets (the human queue), feedback
  and FAQ candidates, with the ownership rules below;
- GapStore: FAQ gaps and the topics they are grouped into (autoreply.gap_topics);
- AgentStore: agents (bearer tokens, kept as sha256 only), prohibited-phrase interceptions
  and reply deliveries;
- ReportStore: the counts behind the admin stats and the weekly report;
- TrustStore: conversation customer tokens and the VIP list;
- LearningStore: candidate variants learned from answered conversations (autoreply.learning);
- Store: all of them, plus transactions, the knowledge version that tells every replica of
  the service to reload, and housekeeping.

The one implementation is SQLStore (store/sql.py) over SQLite (default) or PostgreSQL
(several replicas sharing one database). Every method is one transaction (``atomic()``
groups several into one). Times are timezone-aware UTC datetimes. The records are in
autoreply.models and store/records.py.

Ownership rules, enforced the same way for every way in (library, CLI, service):

- a ticket is ``open`` until an agent claims it; the claimer owns it (first-ask responsibility);
- only the owner replies to, resolves or transfers a claimed ticket (OwnershipError otherwise);
- claiming a ticket someone else owns raises ConflictError; claiming your own is a no-op;
- acting on a resolved ticket raises ConflictError.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

from autoreply.store.records import (
    Action,
    Agent,
    AgentRole,
    CandidateStatus,
    Delivery,
    DeliveryStatus,
    FAQCandidate,
    Feedback,
    FeedbackCount,
    Gap,
    GapAssignment,
    GapTopic,
    Interception,
    LearnedVariant,
    LearningSource,
    Note,
    Priority,
    Rating,
    Reason,
    ReplyCount,
    Role,
    StoredMessage,
    Ticket,
    TicketStatus,
    TopicGap,
    TopicStatus,
    VariantStatus,
    Vip,
)

__all__ = [
    "AgentStore",
    "ConversationStore",
    "GapStore",
    "LearningStore",
    "ReportStore",
    "Store",
    "TrustStore",
]

# fmt: off
# The signatures are laid out by hand, related parameters on one line, so that the contract
# reads at a glance.


class ConversationStore(Protocol):
    """Conversations, tickets, feedback and FAQ candidates."""

    def add_message(
        self, *, conversation_id: str, user_id: str, channel: str, role: Role, text: str,
        external_id: str | None = None,
        action: Action | None = None, reason: Reason | None = None, entry_id: str | None = None,
        confidence: float | None = None,
        agent: str | None = None, ticket_id: int | None = None, reply_to: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> StoredMessage:
        """Append a message. ``details``: what else a bot reply said (candidates, priority,
        gap id, business hours), kept so a retried message gets the first reply whole.
        ``external_id`` is the channel's id for a customer message;
        (channel, external_id) is unique across every process and replica: adding it twice
        raises ConflictError. NotFoundError for an unknown ``ticket_id`` or ``reply_to``."""
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

    def open_ticket(
        self, *, conversation_id: str, user_id: str, channel: str, priority: Priority,
        reason: Reason, category: str | None = None, vip: bool = False,
        suggested_owner: str | None = None, context: dict[str, Any] | None = None,
    ) -> tuple[Ticket, bool]:
        """Open a ticket for the conversation, or join the one still unresolved.

        Returns (ticket, created). Joining raises the priority if the new one is higher,
        appends the new context under ``context["updates"]`` and fills in a missing
        category, VIP flag or suggested owner. A VIP ticket with a ``suggested_owner`` is
        created already claimed by that agent (VIP stickiness). Two escalations of one
        conversation at once, from any replica, join one ticket."""
        ...

    def get_ticket(self, ticket_id: int) -> Ticket:
        """NotFoundError if there is none."""
        ...

    def active_ticket(self, conversation_id: str) -> Ticket | None:
        """The conversation's unresolved ticket, if any."""
        ...

    def list_tickets(
        self, *, status: TicketStatus | None = None, owner: str | None = None,
        priority: Priority | None = None, category: str | None = None, user_id: str | None = None,
        limit: int = 100,
    ) -> list[Ticket]:
        """Tickets, most urgent first then oldest first. ``category`` matches the path
        and its sub-paths (``billing`` matches ``billing/refunds``, not ``billingx``)."""
        ...

    def claim_ticket(self, ticket_id: int, agent: str) -> Ticket:
        """The agent takes ownership. ConflictError if another agent owns it or it is
        resolved; claiming your own ticket is a no-op. Of two agents claiming at once (any
        process or replica) one wins and the other gets ConflictError."""
        ...

    def transfer_ticket(self, ticket_id: int, *, agent: str, to_agent: str) -> Ticket:
        """The owner hands the ticket to another agent (OwnershipError if not the owner).
        ``claimed_at`` keeps the time of the first claim."""
        ...

    def agent_reply(self, ticket_id: int, *, agent: str, text: str) -> StoredMessage:
        """The owner's reply to the customer, stored in the conversation (role agent).
        An open ticket is claimed by the replying agent first. Sets first_reply_at once."""
        ...

    def resolve_ticket(
        self, ticket_id: int, *, agent: str, resolution: str | None = None
    ) -> Ticket:
        """The owner closes the ticket. ``resolution`` defaults to the agent's last reply
        on this ticket (None if there is none)."""
        ...

    def last_agent_for_user(self, user_id: str) -> str | None:
        """The owner of this user's most recently claimed ticket (for VIP stickiness)."""
        ...

    def add_feedback(
        self, message_id: int, *, helpful: bool, comment: str | None = None
    ) -> Feedback:
        """Feedback on a bot message (NotFoundError if the message is not a bot message)."""
        ...

    def list_feedback(
        self, *, entry_id: str | None = None, message_ids: list[int] | None = None
    ) -> list[Feedback]:
        """Feedback, newest first; with ``entry_id``, only on answers from that entry; with
        ``message_ids``, only on those messages."""
        ...

    def promote(
        self, ticket_id: int, *, agent: str, question: str | None = None,
        answer: str | None = None, category: str | None = None,
    ) -> FAQCandidate:
        """Propose a resolved ticket's answer as a new FAQ entry.

        Defaults: the question is the first customer message of the ticket's conversation
        up to the ticket's creation (else ``context["question"]``), the answer is the
        resolution, the category is the ticket's (else ``general``). Only the owner may
        promote (OwnershipError); the ticket must be resolved (ConflictError otherwise)."""
        ...

    def list_candidates(self, *, status: CandidateStatus | None = None) -> list[FAQCandidate]:
        """FAQ candidates, oldest first (a review queue); optionally of one status."""
        ...

    def set_candidate_status(self, candidate_id: int, status: CandidateStatus) -> FAQCandidate:
        """Accept or dismiss a candidate (or put it back to pending)."""
        ...


class GapStore(Protocol):
    """FAQ gaps and their topics (autoreply.gap_topics keeps the topics current)."""

    def add_gap(
        self, *, question: str, normalized: str, reason: Reason, channel: str,
        conversation_id: str, user_id: str, best_entry_id: str | None = None,
        best_score: float | None = None, category: str | None = None,
    ) -> Gap:
        """Log a question the bot could not answer. The caller has redacted it already."""
        ...

    def list_gaps(
        self, *, since: datetime | None = None, until: datetime | None = None,
        limit: int | None = 100, reason: Reason | None = None,
    ) -> list[Gap]:
        """Gaps, newest first, created in ``[since, until)`` (with ``reason``: only those
        logged for it); ``limit=None`` for all."""
        ...

    def unclustered_gaps(self, *, limit: int | None = None) -> list[Gap]:
        """Gaps with no stored vector yet (never clustered), oldest first."""
        ...

    def gap_assignments(
        self, *, topic_ids: list[int] | None = None, waiting: bool = False, limit: int | None = None
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

    def set_gap_topic_status(self, topic_id: int, status: TopicStatus) -> GapTopic:
        """Mark a topic accepted, dismissed or open again."""
        ...

    def delete_gap_topics(self, topic_ids: list[int]) -> None:
        """Delete topics; their gaps stay, waiting (topic None)."""
        ...

    def clear_gap_topics(self) -> None:
        """Forget every topic and every stored gap vector (a rebuild starts from scratch)."""
        ...

    def topic_gaps(
        self, *, topic_id: int | None = None, since: datetime | None = None,
        until: datetime | None = None, limit: int | None = None,
    ) -> list[TopicGap]:
        """Gaps with their topic, newest first, created in ``[since, until)``; with
        ``topic_id`` only that topic's."""
        ...


class AgentStore(Protocol):
    """Agents (API tokens), the replies quality inspection blocked, and deliveries."""

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
        self, *, status: DeliveryStatus | None = None, ticket_id: int | None = None,
        limit: int = 100,
    ) -> list[Delivery]:
        """Deliveries, newest first; with ``ticket_id``, those of the ticket's messages."""
        ...


class ReportStore(Protocol):
    """What the admin stats and the weekly report count."""

    def decision_counts(self, *, since: datetime | None = None) -> dict[str, int]:
        """Bot replies per action (answer, clarify, escalate), every action present."""
        ...

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

    def counts(self) -> dict[str, int]:
        """Row counts: messages, tickets_open, tickets_claimed, tickets_resolved, gaps,
        feedback, candidates_pending."""
        ...


class TrustStore(Protocol):
    """What the trust model keeps: conversation customer tokens and the VIP list."""

    def set_conversation_key(self, conversation_id: str, token_hash: str) -> bool:
        """Give a conversation its customer token (sha256 hex) unless it has one already;
        True if this call set it (concurrent first messages: exactly one wins)."""
        ...

    def conversation_key(self, conversation_id: str) -> str | None:
        """The sha256 hex of the conversation's customer token, or None."""
        ...

    def add_vip(
        self, channel: str, user_id: str, *, added_by: str, note: str | None = None
    ) -> Vip:
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


class DeskStore(Protocol):
    """The agent desk around tickets: internal notes, tags and satisfaction ratings."""

    def add_note(self, ticket_id: int, *, agent: str, text: str) -> Note:
        """Add an internal note to a ticket (any agent, any status). Notes are for agents
        only: never part of the conversation, never delivered. NotFoundError for an unknown
        ticket, ConflictError for an empty or over-long text."""
        ...

    def list_notes(self, ticket_id: int) -> list[Note]:
        """The ticket's notes, oldest first."""
        ...

    def tag_ticket(self, ticket_id: int, tags: list[str], *, agent: str) -> list[str]:
        """Add tags (see ``clean_tags``; ConflictError naming a bad one, nothing stored);
        tags it has already are kept. Returns the ticket's tags, sorted."""
        ...

    def untag_ticket(self, ticket_id: int, tag: str) -> list[str]:
        """Remove one tag (absent: nothing happens); the ticket's tags, sorted."""
        ...

    def tags_of(self, ticket_ids: list[int]) -> dict[int, list[str]]:
        """Ticket id -> its tags, sorted; tickets without tags are left out."""
        ...

    def tagged(self, tag: str) -> set[int]:
        """The ids of the tickets carrying ``tag``."""
        ...

    def add_rating(self, ticket_id: int, *, rating: int, comment: str | None = None) -> Rating:
        """The customer's satisfaction rating of a resolved ticket, 1-5: one per ticket.
        ConflictError for a ticket not resolved, rated already, or a rating outside 1-5;
        NotFoundError for an unknown ticket. (Who may rate is the caller's check.)"""
        ...

    def ratings_of(self, ticket_ids: list[int]) -> dict[int, Rating]:
        """Ticket id -> its rating, for the rated ones."""
        ...

    def ratings_between(self, *, since: datetime, until: datetime) -> list[Rating]:
        """Ratings given in ``[since, until)``, oldest first."""
        ...

    def search_tickets(self, text: str, *, limit: int = 200) -> list[int]:
        """Ids of the tickets (newest first) whose conversation has a message containing
        ``text`` (case-insensitive, a literal substring), or whose customer id or handoff
        payload (customer name, metadata) contains it. Never notes."""
class LearningStore(Protocol):
    """Candidate variants learned from answered conversations (autoreply.learning)."""

    def add_evidence(
        self, *, entry_id: str, text: str, normalized: str, source: LearningSource,
        conversation_id: str | None = None, message_id: int | None = None,
        flag: str | None = None,
    ) -> LearnedVariant | None:
        """Record that a customer's question (redacted by the caller) belongs to an entry:
        its candidate variant (entry_id, normalized) is created, or seen again (``last_seen``;
        a new ``flag`` replaces the old one). None, and nothing stored, when ``message_id``
        is already evidence for that variant from that source."""
        ...

    def learned_variants(
        self, *, entry_id: str | None = None, status: VariantStatus | None = None,
    ) -> list[LearnedVariant]:
        """Candidate variants with their counts per source, most evidence first."""
        ...

    def get_learned_variant(self, variant_id: int) -> LearnedVariant:
        """NotFoundError if there is none."""
        ...

    def set_variant_status(
        self, variant_ids: list[int], status: VariantStatus, *, by: str | None = None,
    ) -> list[LearnedVariant]:
        """Mark candidate variants accepted, dismissed or pending again (who and when are
        kept; pending clears them). NotFoundError naming the first unknown id."""
        ...


@runtime_checkable
class Store(
    ConversationStore,
    GapStore,
    AgentStore,
    ReportStore,
    TrustStore,
    LearningStore,
    DeskStore,
    Protocol,
):
    """Persistence for everything above, in transactions."""

    def atomic(self) -> AbstractContextManager[None]:
        """One transaction for every call made inside (in this thread): all of them are
        stored or, on an exception or a crash, none. Nested ``atomic()`` joins the outer one.
        A customer message, its gap, ticket and the bot's reply go in together this way."""
        ...

    def knowledge_version(self) -> int:
        """How many times the knowledge base was reloaded anywhere (0 for a new store).
        Every replica polls it and reloads when it moves."""
        ...

    def bump_knowledge_version(self) -> int:
        """Count one reload (atomically, also across processes) and return the new version."""
        ...

    def ping(self) -> None:
        """Check that the database answers (StoreError if not): the service's readiness."""
        ...

    def close(self) -> None:
        """Close the connections; further calls raise StoreError. Closing twice is fine."""
        ...
# fmt: on
