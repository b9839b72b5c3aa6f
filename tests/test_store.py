"""The Store contract, run against every backend (SQLite file, SQLite memory, PostgreSQL), plus
SQLite's own file behaviour (PostgreSQL's is in test_store_postgres.py)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from autoreply.errors import ConflictError, NotFoundError, OwnershipError, StoreError
from autoreply.models import (
    Action,
    CandidateStatus,
    Priority,
    Reason,
    Role,
    StoredMessage,
    Ticket,
    TicketStatus,
)
from autoreply.store import LearningSource, Store, VariantStatus, open_store
from autoreply.store.core import Tx
from autoreply.store.schema import MIGRATIONS, migrate
from autoreply.store.sqlite import SQLiteDialect, SQLiteStore

START = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


class Clock:
    """A fake clock that moves one second on every reading, so every row has its own time."""

    def __init__(self, start: datetime = START) -> None:
        self.current = start

    def __call__(self) -> datetime:
        value = self.current
        self.current += timedelta(seconds=1)
        return value


def say(
    store: Store,
    text: str,
    *,
    conv: str = "c1",
    user: str = "u1",
    channel: str = "web",
    external_id: str | None = None,
) -> StoredMessage:
    return store.add_message(
        conversation_id=conv,
        user_id=user,
        channel=channel,
        role=Role.CUSTOMER,
        text=text,
        external_id=external_id,
    )


def answer(
    store: Store, to: StoredMessage, text: str = "Use the reset link.", entry: str = "reset"
) -> StoredMessage:
    return store.add_message(
        conversation_id=to.conversation_id,
        user_id=to.user_id,
        channel=to.channel,
        role=Role.BOT,
        text=text,
        action=Action.ANSWER,
        reason=Reason.CONFIDENT,
        entry_id=entry,
        confidence=0.91,
        reply_to=to.id,
    )


def ticket(
    store: Store,
    *,
    conv: str = "c1",
    user: str = "u1",
    priority: Priority = Priority.NORMAL,
    category: str | None = None,
    **extra: Any,
) -> Ticket:
    created, _ = store.open_ticket(
        conversation_id=conv,
        user_id=user,
        channel="web",
        priority=priority,
        reason=Reason.LOW_CONFIDENCE,
        category=category,
        **extra,
    )
    return created


class StoreContract:
    """Behaviour every Store backend must have; subclasses provide the ``store`` fixture."""

    @pytest.fixture
    def clock(self) -> Clock:
        return Clock()

    # -- conversations -------------------------------------------------------------------
    def test_is_a_store(self, store: Store) -> None:
        """The backend satisfies the Store protocol."""
        assert isinstance(store, Store)

    def test_history_is_oldest_first_and_limit_keeps_the_newest(self, store: Store) -> None:
        """history() returns the conversation oldest first; limit keeps the newest ones."""
        for text in ("one", "two", "three"):
            say(store, text)
        say(store, "elsewhere", conv="c2")
        assert [m.text for m in store.history("c1")] == ["one", "two", "three"]
        assert [m.text for m in store.history("c1", limit=2)] == ["two", "three"]
        assert store.history("c1", limit=0) == []
        assert store.history("nobody") == []

    def test_message_fields_round_trip(self, store: Store) -> None:
        """Every field comes back as stored, with an aware UTC time."""
        question = say(store, "forgot password", external_id="wx-1")
        reply = answer(store, question)
        got = store.get_message(reply.id)
        assert got == reply
        assert got.role is Role.BOT
        assert got.action is Action.ANSWER
        assert got.reason is Reason.CONFIDENT
        assert (got.entry_id, got.confidence) == ("reset", 0.91)
        assert question.created_at == START
        assert question.created_at.tzinfo is not None
        assert question.created_at.utcoffset() == timedelta(0)

    def test_repeated_external_id_is_a_conflict(self, store: Store) -> None:
        """A channel message id is stored once; the same id elsewhere is another message."""
        first = say(store, "hi", external_id="m-1")
        with pytest.raises(ConflictError, match="find_message"):
            say(store, "hi again", external_id="m-1")
        say(store, "hi", channel="line", external_id="m-1")
        assert store.find_message(channel="web", external_id="m-1") == first
        assert store.find_message(channel="web", external_id="m-2") is None
        assert len(store.history("c1")) == 2

    def test_a_bot_replys_details_round_trip(self, store: Store) -> None:
        """The details of a bot reply (candidates, priority, ...) come back as stored."""
        question = say(store, "forgot password")
        details = {"candidates": [{"entry_id": "reset", "confidence": 0.4}], "gap_id": None}
        reply = store.add_message(
            conversation_id="c1",
            user_id="u1",
            channel="web",
            role=Role.BOT,
            text="?",
            reply_to=question.id,
            details=details,
        )
        assert store.get_message(reply.id).details == details
        assert store.get_message(question.id).details is None

    # -- trust: conversation keys and the VIP list ---------------------------------------
    def test_a_conversation_key_is_set_once(self, store: Store) -> None:
        """The first key wins; a second set leaves it as it was."""
        assert store.conversation_key("api:c1") is None
        assert store.set_conversation_key("api:c1", "h1") is True
        assert store.set_conversation_key("api:c1", "h2") is False
        assert store.conversation_key("api:c1") == "h1"

    def test_vip_list_add_update_list_remove(self, store: Store) -> None:
        """A VIP is keyed by channel and user id; adding again updates the note."""
        store.add_vip("telegram", "42", added_by="root", note="key account")
        store.add_vip("telegram", "42", added_by="ann", note="renewed")
        store.add_vip("api", "42", added_by="root")
        assert store.is_vip("telegram", "42") and not store.is_vip("slack", "42")
        listed = store.list_vips()
        assert [(v.channel, v.user_id, v.added_by) for v in listed] == [
            ("api", "42", "root"),
            ("telegram", "42", "ann"),
        ]
        assert listed[1].note == "renewed" and listed[1].added_at.tzinfo is not None
        store.remove_vip("telegram", "42")
        assert not store.is_vip("telegram", "42")
        with pytest.raises(NotFoundError, match="not on the VIP list"):
            store.remove_vip("telegram", "42")

    def test_reply_to_finds_the_bot_answer(self, store: Store) -> None:
        """reply_to() returns the bot message stored as the reply, or None."""
        question = say(store, "forgot password")
        assert store.reply_to(question.id) is None
        reply = answer(store, question)
        assert store.reply_to(question.id) == reply

    def test_unknown_ids_are_not_found(self, store: Store) -> None:
        """Unknown message and ticket ids raise NotFoundError naming the id."""
        with pytest.raises(NotFoundError, match="no message 999"):
            store.get_message(999)
        with pytest.raises(NotFoundError, match="no ticket 42"):
            store.get_ticket(42)
        with pytest.raises(NotFoundError, match="no ticket 42"):
            store.add_message(
                conversation_id="c1", user_id="u1", channel="web", role=Role.BOT, text="x",
                ticket_id=42,
            )  # fmt: skip
        with pytest.raises(NotFoundError, match="no message 7"):
            store.add_message(
                conversation_id="c1", user_id="u1", channel="web", role=Role.BOT, text="x",
                reply_to=7,
            )  # fmt: skip

    # -- tickets -------------------------------------------------------------------------
    def test_second_escalation_joins_the_open_ticket(self, store: Store) -> None:
        """One unresolved ticket per conversation: joining raises priority and adds context."""
        first, created = store.open_ticket(
            conversation_id="c1", user_id="u1", channel="web", priority=Priority.NORMAL,
            reason=Reason.LOW_CONFIDENCE, context={"question": "refund?"},
        )  # fmt: skip
        assert created
        assert first.status is TicketStatus.OPEN
        joined, created = store.open_ticket(
            conversation_id="c1", user_id="u1", channel="web", priority=Priority.URGENT,
            reason=Reason.COMPLAINT, category="billing", context={"question": "still nothing!"},
        )  # fmt: skip
        assert not created
        assert joined.id == first.id
        assert joined.priority is Priority.URGENT
        assert joined.reason is Reason.LOW_CONFIDENCE
        assert joined.category == "billing"
        assert joined.context == {
            "question": "refund?",
            "updates": [{"question": "still nothing!"}],
        }
        lower, _ = store.open_ticket(
            conversation_id="c1", user_id="u1", channel="web", priority=Priority.LOW,
            reason=Reason.LOW_CONFIDENCE, context={"n": 3},
        )  # fmt: skip
        assert lower.priority is Priority.URGENT
        assert len(lower.context["updates"]) == 2
        assert store.active_ticket("c1") == lower
        assert store.active_ticket("c2") is None

    def test_resolved_ticket_is_not_joined(self, store: Store) -> None:
        """After a ticket is resolved, the next escalation opens a new one."""
        first = ticket(store)
        store.claim_ticket(first.id, "alice")
        store.resolve_ticket(first.id, agent="alice", resolution="done")
        assert store.active_ticket("c1") is None
        second, created = store.open_ticket(
            conversation_id="c1", user_id="u1", channel="web", priority=Priority.NORMAL,
            reason=Reason.ASKED_FOR_HUMAN,
        )  # fmt: skip
        assert created
        assert second.id != first.id

    def test_notes_stay_off_the_conversation(self, store: Store) -> None:
        """A note is kept with its author, oldest first, and never joins the history."""
        t = ticket(store)
        store.add_note(t.id, agent="ann", text="  customer is on the phone too  ")
        store.add_note(t.id, agent="bob", text="refund approved by finance")
        notes = store.list_notes(t.id)
        assert [(n.agent, n.text) for n in notes] == [
            ("ann", "customer is on the phone too"),
            ("bob", "refund approved by finance"),
        ]
        assert notes[0].created_at.tzinfo is not None
        assert all("finance" not in m.text for m in store.history(t.conversation_id))
        with pytest.raises(ConflictError, match="1-5000 characters"):
            store.add_note(t.id, agent="ann", text="   ")
        with pytest.raises(NotFoundError):
            store.add_note(999, agent="ann", text="x")

    def test_tags_add_remove_and_find(self, store: Store) -> None:
        """Tags are cleaned (case, repeats), kept once per ticket, removable and findable;
        a bad tag is refused by name and nothing of that call is stored."""
        a, b = ticket(store), ticket(store, conv="c2")
        assert store.tag_ticket(a.id, ["Refund", "退款", "refund"], agent="ann") == [
            "refund",
            "退款",
        ]
        assert store.tag_ticket(a.id, ["late-delivery"], agent="bob") == [
            "late-delivery",
            "refund",
            "退款",
        ]
        store.tag_ticket(b.id, ["refund"], agent="ann")
        with pytest.raises(ConflictError, match="'bad tag!'"):
            store.tag_ticket(b.id, ["ok", "bad tag!"], agent="ann")
        assert store.tags_of([a.id, b.id, 999]) == {
            a.id: ["late-delivery", "refund", "退款"],
            b.id: ["refund"],
        }
        assert store.tagged("REFUND") == {a.id, b.id}
        assert store.untag_ticket(a.id, "refund") == ["late-delivery", "退款"]
        assert store.tagged("refund") == {b.id}

    def test_search_finds_tickets_by_conversation_text_and_customer(self, store: Store) -> None:
        """Any message of the ticket's conversation, the customer id or the handoff payload
        matches, case-insensitively and literally (% and _ are not wildcards); notes never."""
        say(store, "Where is my PARCEL?", conv="c1")
        a = ticket(store, conv="c1", user="wang", context={"metadata": {"name": "王芳"}})
        b = ticket(store, conv="c2", user="li_50%")
        store.add_note(b.id, agent="ann", text="parcel lost in the warehouse")
        assert store.search_tickets("parcel") == [a.id]
        assert store.search_tickets("王芳") == [a.id]
        assert store.search_tickets("LI_50%") == [b.id]
        assert store.search_tickets("i_5") == [b.id] and store.search_tickets("%") == [b.id]
        assert store.search_tickets("warehouse") == []

    def test_one_rating_per_resolved_ticket(self, store: Store) -> None:
        """Only a resolved ticket is rated, once, 1-5; ratings are found by ticket and by
        week."""
        t = ticket(store)
        with pytest.raises(ConflictError, match="only a resolved ticket"):
            store.add_rating(t.id, rating=5)
        store.claim_ticket(t.id, "ann")
        store.resolve_ticket(t.id, agent="ann")
        with pytest.raises(ConflictError, match="not 1-5"):
            store.add_rating(t.id, rating=6)
        rated = store.add_rating(t.id, rating=4, comment="quick")
        assert (rated.rating, rated.comment) == (4, "quick")
        with pytest.raises(ConflictError, match="rated already"):
            store.add_rating(t.id, rating=1)
        assert store.ratings_of([t.id, 999]) == {t.id: rated}
        week = store.ratings_between(
            since=rated.created_at - timedelta(days=1), until=rated.created_at + timedelta(1)
        )
        assert [r.ticket_id for r in week] == [t.id]
        with pytest.raises(NotFoundError):
            store.add_rating(999, rating=3)

    def test_vip_ticket_goes_to_the_suggested_agent(self, store: Store) -> None:
        """A VIP ticket with a suggested owner is created claimed by that agent."""
        vip = ticket(store, vip=True, suggested_owner="alice")
        assert vip.status is TicketStatus.CLAIMED
        assert vip.owner == "alice"
        assert vip.claimed_at == vip.created_at
        plain = ticket(store, conv="c2", suggested_owner="alice")
        assert (plain.status, plain.owner, plain.suggested_owner) == (
            TicketStatus.OPEN,
            None,
            "alice",
        )
        unsuggested = ticket(store, conv="c3", vip=True)
        assert unsuggested.status is TicketStatus.OPEN

    def test_claim_rules(self, store: Store) -> None:
        """The first claimer owns the ticket; others conflict; re-claiming is a no-op."""
        t = ticket(store)
        claimed = store.claim_ticket(t.id, "alice")
        assert (claimed.status, claimed.owner) == (TicketStatus.CLAIMED, "alice")
        assert claimed.claimed_at is not None
        with pytest.raises(ConflictError, match="owned by alice; ask alice to transfer it"):
            store.claim_ticket(t.id, "bob")
        assert store.claim_ticket(t.id, "alice") == claimed
        store.resolve_ticket(t.id, agent="alice", resolution="ok")
        with pytest.raises(ConflictError, match="resolved"):
            store.claim_ticket(t.id, "alice")
        with pytest.raises(NotFoundError, match="no ticket 999"):
            store.claim_ticket(999, "alice")

    def test_only_the_owner_replies_resolves_or_transfers(self, store: Store) -> None:
        """Another agent gets OwnershipError, and the ticket is unchanged."""
        t = store.claim_ticket(ticket(store).id, "alice")
        with pytest.raises(OwnershipError, match="owned by alice"):
            store.agent_reply(t.id, agent="bob", text="hello")
        with pytest.raises(OwnershipError, match="owned by alice"):
            store.resolve_ticket(t.id, agent="bob")
        with pytest.raises(OwnershipError, match="owned by alice"):
            store.transfer_ticket(t.id, agent="bob", to_agent="bob")
        assert store.get_ticket(t.id) == t
        assert store.history("c1") == []

    def test_unclaimed_ticket_cannot_be_resolved_or_transferred(self, store: Store) -> None:
        """Resolving or transferring an open ticket asks for a claim first."""
        t = ticket(store)
        with pytest.raises(OwnershipError, match="claim it"):
            store.resolve_ticket(t.id, agent="alice")
        with pytest.raises(OwnershipError, match="claim it"):
            store.transfer_ticket(t.id, agent="alice", to_agent="bob")

    def test_transfer_hands_over_ownership(self, store: Store) -> None:
        """After a transfer the new owner replies and the old one cannot."""
        t = store.claim_ticket(ticket(store).id, "alice")
        moved = store.transfer_ticket(t.id, agent="alice", to_agent="bob")
        assert (moved.owner, moved.status, moved.claimed_at) == ("bob", t.status, t.claimed_at)
        reply = store.agent_reply(t.id, agent="bob", text="I'm on it")
        assert (reply.role, reply.agent, reply.ticket_id) == (Role.AGENT, "bob", t.id)
        with pytest.raises(OwnershipError, match="owned by bob"):
            store.agent_reply(t.id, agent="alice", text="me too")

    def test_reply_claims_an_open_ticket_and_first_reply_is_set_once(self, store: Store) -> None:
        """Replying to an open ticket claims it; first_reply_at keeps the first reply's time."""
        t = ticket(store)
        first = store.agent_reply(t.id, agent="alice", text="Hello!")
        after = store.get_ticket(t.id)
        assert (after.status, after.owner) == (TicketStatus.CLAIMED, "alice")
        assert after.first_reply_at == first.created_at
        store.agent_reply(t.id, agent="alice", text="Anything else?")
        assert store.get_ticket(t.id).first_reply_at == first.created_at
        history = store.history("c1")
        assert [(m.role, m.text) for m in history] == [
            (Role.AGENT, "Hello!"),
            (Role.AGENT, "Anything else?"),
        ]
        assert history[0].user_id == "u1"

    def test_resolve_defaults_to_the_last_reply(self, store: Store) -> None:
        """Without a resolution, the owner's last reply on the ticket is used."""
        t = ticket(store)
        store.agent_reply(t.id, agent="alice", text="Try the reset link.")
        store.agent_reply(t.id, agent="alice", text="Reset link sent to your email.")
        done = store.resolve_ticket(t.id, agent="alice")
        assert done.status is TicketStatus.RESOLVED
        assert done.resolution == "Reset link sent to your email."
        assert done.resolved_at is not None
        with pytest.raises(ConflictError, match="resolved"):
            store.resolve_ticket(t.id, agent="alice")
        with pytest.raises(ConflictError, match="resolved"):
            store.agent_reply(t.id, agent="alice", text="one more thing")
        other = store.claim_ticket(ticket(store, conv="c2").id, "alice")
        assert (
            store.resolve_ticket(other.id, agent="alice", resolution="fixed").resolution == "fixed"
        )
        silent = store.claim_ticket(ticket(store, conv="c3").id, "alice")
        assert store.resolve_ticket(silent.id, agent="alice").resolution is None

    def test_promote_rules_and_defaults(self, store: Store) -> None:
        """Only the owner promotes a resolved ticket; defaults come from the conversation."""
        say(store, "How do I get a refund?")
        t = ticket(store, category="billing/refunds")
        say(store, "hello??")
        with pytest.raises(ConflictError, match="resolve it before promoting"):
            store.promote(t.id, agent="alice")
        store.agent_reply(t.id, agent="alice", text="Refunds take 5 days.")
        store.resolve_ticket(t.id, agent="alice")
        with pytest.raises(OwnershipError, match="owned by alice"):
            store.promote(t.id, agent="bob")
        candidate = store.promote(t.id, agent="alice")
        assert (candidate.question, candidate.answer, candidate.category) == (
            "How do I get a refund?",
            "Refunds take 5 days.",
            "billing/refunds",
        )
        assert (candidate.ticket_id, candidate.agent) == (t.id, "alice")
        assert candidate.status is CandidateStatus.PENDING
        custom = store.promote(t.id, agent="alice", question="Q", answer="A", category="faq")
        assert (custom.question, custom.answer, custom.category) == ("Q", "A", "faq")

    def test_promote_falls_back_to_context_question_and_general(self, store: Store) -> None:
        """With no customer message, the context question is used; no category is general."""
        t = ticket(store, context={"question": "Can I change my plan?"})
        store.claim_ticket(t.id, "alice")
        store.resolve_ticket(t.id, agent="alice", resolution="Yes, in settings.")
        candidate = store.promote(t.id, agent="alice")
        assert (candidate.question, candidate.category) == ("Can I change my plan?", "general")
        bare = store.claim_ticket(ticket(store, conv="c2").id, "alice")
        store.resolve_ticket(bare.id, agent="alice", resolution="ok")
        with pytest.raises(ConflictError, match="pass question="):
            store.promote(bare.id, agent="alice")

    def test_list_tickets_order_and_filters(self, store: Store) -> None:
        """Most urgent first, then oldest; filters by status, owner, priority, category path."""
        low = ticket(store, conv="a", priority=Priority.LOW, category="billing")
        normal_old = ticket(store, conv="b", category="billing/refunds")
        urgent = ticket(store, conv="c", priority=Priority.URGENT, category="billingx")
        normal_new = ticket(store, conv="d", user="u2")
        high = ticket(store, conv="e", priority=Priority.HIGH, category="account")
        ids = [t.id for t in store.list_tickets()]
        assert ids == [urgent.id, high.id, normal_old.id, normal_new.id, low.id]
        assert [t.id for t in store.list_tickets(limit=2)] == [urgent.id, high.id]
        store.claim_ticket(high.id, "alice")
        store.claim_ticket(low.id, "bob")
        assert [t.id for t in store.list_tickets(status=TicketStatus.CLAIMED)] == [high.id, low.id]
        assert [t.id for t in store.list_tickets(owner="bob")] == [low.id]
        assert [t.id for t in store.list_tickets(priority=Priority.NORMAL)] == [
            normal_old.id,
            normal_new.id,
        ]
        assert [t.id for t in store.list_tickets(category="billing")] == [normal_old.id, low.id]
        assert [t.id for t in store.list_tickets(category="billing/refunds")] == [normal_old.id]
        assert store.list_tickets(category="Billing") == []
        assert [t.id for t in store.list_tickets(user_id="u2")] == [normal_new.id]

    def test_last_agent_for_user_is_the_latest_claimer(self, store: Store) -> None:
        """The owner of the user's most recently claimed ticket, resolved or not."""
        assert store.last_agent_for_user("u1") is None
        old = ticket(store, conv="a")
        new = ticket(store, conv="b")
        ticket(store, conv="c")  # never claimed
        store.claim_ticket(new.id, "bob")
        store.claim_ticket(old.id, "alice")
        store.resolve_ticket(old.id, agent="alice", resolution="ok")
        assert store.last_agent_for_user("u1") == "alice"
        assert store.last_agent_for_user("u2") is None

    # -- gaps, feedback, candidates ------------------------------------------------------
    def test_gaps_newest_first_within_since_until(self, store: Store) -> None:
        """list_gaps() is newest first; since is inclusive, until exclusive; limit caps."""
        gaps = [
            store.add_gap(
                question=f"q{i}", normalized=f"q{i}", reason=Reason.LOW_CONFIDENCE,
                channel="web", conversation_id="c1", user_id="u1",
                best_entry_id="reset", best_score=0.3, category="account",
            )
            for i in range(4)
        ]  # fmt: skip
        assert gaps[0].best_score == 0.3
        assert [g.question for g in store.list_gaps()] == ["q3", "q2", "q1", "q0"]
        window = store.list_gaps(since=gaps[1].created_at, until=gaps[3].created_at)
        assert [g.question for g in window] == ["q2", "q1"]
        assert [g.question for g in store.list_gaps(limit=1)] == ["q3"]
        assert len(store.list_gaps(limit=None)) == 4
        local = gaps[2].created_at.astimezone(timezone(timedelta(hours=8)))
        assert [g.question for g in store.list_gaps(since=local)] == ["q3", "q2"]
        rejected = store.add_gap(
            question="q4", normalized="q4", reason=Reason.NOT_HELPFUL, channel="web",
            conversation_id="c1", user_id="u1", best_entry_id="reset",
        )  # fmt: skip
        assert store.list_gaps(reason=Reason.NOT_HELPFUL) == [rejected]
        assert [g.question for g in store.list_gaps(reason=Reason.LOW_CONFIDENCE, limit=2)] == [
            "q3",
            "q2",
        ]

    def test_feedback_only_on_bot_messages(self, store: Store) -> None:
        """Feedback needs a bot message; list_feedback filters by the answering entry."""
        question = say(store, "forgot password")
        reset = answer(store, question, entry="reset")
        other = answer(store, say(store, "shipping?"), entry="shipping")
        with pytest.raises(NotFoundError, match=f"no bot message {question.id}"):
            store.add_feedback(question.id, helpful=True)
        with pytest.raises(NotFoundError, match="no bot message 999"):
            store.add_feedback(999, helpful=True)
        good = store.add_feedback(reset.id, helpful=True, comment="thanks")
        bad = store.add_feedback(other.id, helpful=False)
        assert (good.message_id, good.helpful, good.comment) == (reset.id, True, "thanks")
        assert bad.helpful is False
        assert [f.id for f in store.list_feedback()] == [bad.id, good.id]
        assert store.list_feedback(entry_id="reset") == [good]
        assert store.list_feedback(entry_id="nothing") == []
        assert store.list_feedback(message_ids=[reset.id]) == [good]
        assert store.list_feedback(message_ids=[reset.id, other.id]) == [bad, good]
        assert store.list_feedback(message_ids=[]) == []
        assert store.list_feedback(entry_id="reset", message_ids=[other.id]) == []

    def test_candidate_status_changes(self, store: Store) -> None:
        """Candidates are listed by status and can be accepted or dismissed."""
        say(store, "refund?")
        t = store.claim_ticket(ticket(store).id, "alice")
        store.resolve_ticket(t.id, agent="alice", resolution="5 days")
        first = store.promote(t.id, agent="alice")
        second = store.promote(t.id, agent="alice", question="refund time?")
        assert [c.id for c in store.list_candidates()] == [first.id, second.id]
        accepted = store.set_candidate_status(first.id, CandidateStatus.ACCEPTED)
        assert accepted.status is CandidateStatus.ACCEPTED
        assert store.list_candidates(status=CandidateStatus.PENDING) == [second]
        assert store.list_candidates(status=CandidateStatus.ACCEPTED) == [accepted]
        with pytest.raises(NotFoundError, match="no FAQ candidate 999"):
            store.set_candidate_status(999, CandidateStatus.DISMISSED)

    def test_counts(self, store: Store) -> None:
        """counts() has exactly the documented keys."""
        empty = dict.fromkeys(
            [
                "messages",
                "tickets_open",
                "tickets_claimed",
                "tickets_resolved",
                "gaps",
                "feedback",
                "candidates_pending",
            ],
            0,
        )
        assert store.counts() == empty
        reply = answer(store, say(store, "refund?"))
        store.add_feedback(reply.id, helpful=True)
        ticket(store, conv="open")
        store.claim_ticket(ticket(store, conv="claimed").id, "alice")
        done = store.claim_ticket(ticket(store).id, "alice")
        store.resolve_ticket(done.id, agent="alice", resolution="ok")
        store.promote(done.id, agent="alice")
        store.add_gap(
            question="q", normalized="q", reason=Reason.AMBIGUOUS, channel="web",
            conversation_id="c1", user_id="u1",
        )  # fmt: skip
        assert store.counts() == {
            "messages": 2,
            "tickets_open": 1,
            "tickets_claimed": 1,
            "tickets_resolved": 1,
            "gaps": 1,
            "feedback": 1,
            "candidates_pending": 1,
        }

    def test_concurrent_claims_have_one_winner(self, store: Store) -> None:
        """Eight agents claim the same ticket at once: one wins, seven get ConflictError."""
        t = ticket(store)
        barrier = threading.Barrier(8)
        winners: list[str] = []
        conflicts: list[str] = []
        errors: list[BaseException] = []

        def grab(agent: str) -> None:
            barrier.wait()
            try:
                store.claim_ticket(t.id, agent)
                winners.append(agent)
            except ConflictError:
                conflicts.append(agent)
            except BaseException as exc:  # reported below, not lost in the thread
                errors.append(exc)

        threads = [threading.Thread(target=grab, args=(f"agent{i}",)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert len(winners) == 1
        assert len(conflicts) == 7
        assert store.get_ticket(t.id).owner == winners[0]

    # -- learning ------------------------------------------------------------------------
    def test_evidence_groups_into_variants_with_counts_per_source(self, store: Store) -> None:
        """Evidence with one (entry, normalized text) is one candidate variant, counted per
        source; the same message from the same source counts once."""
        first = store.add_evidence(
            entry_id="refund",
            text="money back?",
            normalized="money back",
            source=LearningSource.PICKED,
            conversation_id="c1",
            message_id=1,
        )
        assert first is not None and first.counts == {"picked": 1}
        again = store.add_evidence(
            entry_id="refund",
            text="Money back",
            normalized="money back",
            source=LearningSource.PICKED,
            conversation_id="c1",
            message_id=1,
        )
        assert again is None
        more = store.add_evidence(
            entry_id="refund",
            text="Money back",
            normalized="money back",
            source=LearningSource.AGENT_SCRIPT,
            conversation_id="c2",
            message_id=7,
            flag="closer to entry 'x' (0.91)",
        )
        assert more is not None and more.id == first.id
        assert more.counts == {"picked": 1, "agent_script": 1} and more.count == 2
        assert more.text == "money back?" and more.flag == "closer to entry 'x' (0.91)"
        assert more.last_seen >= more.first_seen
        other = store.add_evidence(
            entry_id="cancel",
            text="money back?",
            normalized="money back",
            source=LearningSource.HELPFUL,
            message_id=3,
        )
        assert other is not None and other.id != first.id
        listed = store.learned_variants()
        assert [v.id for v in listed] == [first.id, other.id]  # most evidence first
        assert [v.id for v in store.learned_variants(entry_id="cancel")] == [other.id]

    def test_variant_status_keeps_who_and_when(self, store: Store) -> None:
        """Accepting or dismissing records who and when; pending again clears them; an
        unknown id is NotFoundError and changes nothing."""
        v = store.add_evidence(
            entry_id="refund",
            text="refund pls",
            normalized="refund pls",
            source=LearningSource.HELPFUL,
            message_id=5,
        )
        assert v is not None
        [done] = store.set_variant_status([v.id], VariantStatus.ACCEPTED, by="ann")
        assert done.status is VariantStatus.ACCEPTED and done.decided_by == "ann"
        assert done.decided_at is not None
        assert store.learned_variants(status=VariantStatus.PENDING) == []
        with pytest.raises(NotFoundError, match="no candidate variant 999"):
            store.set_variant_status([v.id, 999], VariantStatus.DISMISSED, by="bob")
        assert store.get_learned_variant(v.id).status is VariantStatus.ACCEPTED
        [back] = store.set_variant_status([v.id], VariantStatus.PENDING)
        assert back.decided_by is None and back.decided_at is None
        with pytest.raises(NotFoundError):
            store.get_learned_variant(999)


class TestSQLiteFile(StoreContract):
    @pytest.fixture
    def db_path(self, tmp_path: Path) -> Path:
        return tmp_path / "nested" / "dir" / "autoreply.db"

    @pytest.fixture
    def store(self, db_path: Path, clock: Clock) -> Iterator[SQLiteStore]:
        store = SQLiteStore(db_path, now=clock)
        yield store
        store.close()

    def test_file_settings(self, store: SQLiteStore, db_path: Path) -> None:
        """A file database is created with its folders and runs in WAL mode."""
        assert db_path.is_file()
        conn = sqlite3.connect(db_path)
        try:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        finally:
            conn.close()

    def test_migrations_recorded_and_idempotent(
        self, store: SQLiteStore, db_path: Path, clock: Clock
    ) -> None:
        """Migrations are recorded once; reopening applies nothing and keeps the data."""
        say(store, "hello")
        t = store.claim_ticket(ticket(store).id, "alice")
        store.close()
        reopened = SQLiteStore(db_path, now=clock)
        try:
            assert [m.text for m in reopened.history("c1")] == ["hello"]
            assert reopened.get_ticket(t.id) == t
        finally:
            reopened.close()
        conn = sqlite3.connect(db_path)
        try:
            rows = conn.execute("SELECT name, applied_at FROM _migrations ORDER BY id").fetchall()
            assert [name for name, _ in rows] == [name for name, _ in MIGRATIONS]
            assert all(datetime.fromisoformat(at).tzinfo is not None for _, at in rows)
            assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        finally:
            conn.close()

    def test_new_migration_applies_in_order_and_failures_roll_back(self, db_path: Path) -> None:
        """A later migration is applied once and recorded; a failing one leaves no trace."""

        def m002_notes(tx: Tx) -> None:
            tx.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY)")

        def m003_broken(tx: Tx) -> None:
            tx.execute("CREATE TABLE broken (id INTEGER PRIMARY KEY)")
            raise RuntimeError("boom")

        db = SQLiteDialect(db_path)
        try:
            extended = [*MIGRATIONS, ("m002_notes", m002_notes)]
            assert migrate(db, migrations=extended) == ["m002_notes"]
            assert migrate(db, migrations=extended) == []
            with pytest.raises(RuntimeError, match="boom"):
                migrate(db, migrations=[*extended, ("m003_broken", m003_broken)])
        finally:
            db.close()
        conn = sqlite3.connect(db_path)
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            assert "notes" in tables
            assert "broken" not in tables
            assert conn.execute("PRAGMA user_version").fetchone()[0] == len(extended)
        finally:
            conn.close()

    def test_newer_schema_is_refused(self, db_path: Path) -> None:
        """A database with migrations this version does not know asks for an upgrade."""
        SQLiteStore(db_path).close()
        with sqlite3.connect(db_path) as conn:
            conn.execute(
                "INSERT INTO _migrations (name, applied_at) VALUES (?, ?)",
                ("m999_from_the_future", START.isoformat()),
            )
        conn.close()
        with pytest.raises(StoreError, match="newer autoreply.*upgrade autoreply") as info:
            SQLiteStore(db_path)
        assert str(db_path) in str(info.value)
        assert "m999_from_the_future" in str(info.value)

    def test_garbage_file_is_refused_naming_the_path(self, tmp_path: Path) -> None:
        """A file that is not SQLite raises StoreError with its path, not sqlite3.Error."""
        path = tmp_path / "notes.db"
        path.write_bytes(b"this is not a database, just some text " * 100)
        with pytest.raises(StoreError, match="not a usable SQLite database") as info:
            SQLiteStore(path)
        assert str(path) in str(info.value)

    def test_closed_store_raises_store_error(self, store: SQLiteStore, db_path: Path) -> None:
        """Using a closed store is a StoreError naming the database; closing twice is fine."""
        store.close()
        store.close()
        with pytest.raises(StoreError, match="closed") as info:
            store.history("c1")
        assert str(db_path) in str(info.value)

    def test_separate_connections_cannot_both_claim(
        self, store: SQLiteStore, db_path: Path
    ) -> None:
        """Two processes' worth of connections on one file: BEGIN IMMEDIATE picks one winner."""
        t = ticket(store)
        stores = [SQLiteStore(db_path) for _ in range(4)]
        barrier = threading.Barrier(len(stores))
        outcomes: list[str] = []

        def grab(index: int) -> None:
            barrier.wait()
            try:
                stores[index].claim_ticket(t.id, f"agent{index}")
                outcomes.append("won")
            except ConflictError:
                outcomes.append("conflict")

        threads = [threading.Thread(target=grab, args=(i,)) for i in range(len(stores))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for other in stores:
            other.close()
        assert sorted(outcomes) == ["conflict"] * (len(stores) - 1) + ["won"]

    def test_open_store_url(self, db_path: Path) -> None:
        """open_store() understands sqlite:/// URLs and plain paths."""
        for url in (f"sqlite:///{db_path}", str(db_path)):
            opened = open_store(url)
            try:
                assert isinstance(opened, SQLiteStore)
            finally:
                opened.close()


class TestSQLiteMemory(StoreContract):
    @pytest.fixture
    def store(self, clock: Clock) -> Iterator[SQLiteStore]:
        store = SQLiteStore(":memory:", now=clock)
        yield store
        store.close()


@pytest.mark.postgres
class TestPostgres(StoreContract):
    @pytest.fixture
    def store(self, pg_url: str, clock: Clock) -> Iterator[Store]:
        from autoreply.store.postgres import PostgresStore

        store = PostgresStore(pg_url, now=clock)
        yield store
        store.close()
