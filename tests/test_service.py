"""AutoReply wires the engine to the store: messages, tickets, gaps, ownership, VIP, reuse."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from autoreply.encoder import Encoder
from autoreply.errors import ConflictError, KnowledgeInvalid, OwnershipError
from autoreply.models import Action, Message, Reason, Role, TicketStatus
from autoreply.service import AutoReply
from autoreply.settings import HoursConfig, Settings


def test_answer_is_recorded_without_ticket_or_gap(bot: AutoReply) -> None:
    reply = bot.handle("Do you ship internationally?", user_id="u1")
    assert reply.decision is Action.ANSWER
    assert reply.ticket_id is None and reply.gap_id is None
    history = bot.store.history(reply.conversation_id)
    assert [m.role for m in history] == [Role.CUSTOMER, Role.BOT]
    assert history[1].entry_id == "shipping"


def test_unknown_question_opens_ticket_and_logs_redacted_gap(bot: AutoReply) -> None:
    reply = bot.handle("zxqv wpfk 13812345678 me@example.com", user_id="u2")
    assert reply.decision is Action.ESCALATE and reply.reason is Reason.LOW_CONFIDENCE
    assert reply.ticket_id is not None and reply.gap_id is not None
    gap = bot.store.list_gaps()[0]
    assert "13812345678" not in gap.question and "[PHONE]" in gap.question
    assert "me@example.com" not in gap.question and "[EMAIL]" in gap.normalized.upper()
    ticket = bot.store.get_ticket(reply.ticket_id)
    assert ticket.status is TicketStatus.OPEN
    payload = ticket.context
    assert payload["reason"] == "low_confidence"
    assert payload["messages"][-1]["text"].startswith("zxqv")
    assert payload["candidates"] and "confidence" in payload["candidates"][0]


def test_asking_for_a_person_is_not_a_gap(bot: AutoReply) -> None:
    reply = bot.handle("转人工", user_id="u3")
    assert reply.ticket_id is not None
    assert reply.gap_id is None


def test_repeated_message_id_is_answered_once(bot: AutoReply) -> None:
    msg = Message(text="zxqv wpfk", user_id="u4", message_id="m-1", channel="slack")
    first = bot.handle(msg)
    again = bot.handle(msg)
    assert again.duplicate and not first.duplicate
    assert again.message_id == first.message_id and again.ticket_id == first.ticket_id
    assert len(bot.store.list_gaps()) == 1
    assert bot.store.counts()["messages"] == 2


def test_agent_owns_ticket_until_resolved(bot: AutoReply) -> None:
    reply = bot.handle("zxqv wpfk", user_id="u5")
    assert reply.ticket_id is not None
    tid = reply.ticket_id
    bot.claim(tid, "alice")
    with pytest.raises(ConflictError):
        bot.claim(tid, "bob")
    with pytest.raises(OwnershipError):
        bot.reply(tid, agent="bob", text="hi")
    bot.reply(tid, agent="alice", text="We will look into it.")
    # while a person handles the conversation the bot stays out of it
    follow_up = bot.handle("Do you ship internationally?", user_id="u5")
    assert follow_up.reason is Reason.AGENT_HANDLING and follow_up.ticket_id == tid
    bot.resolve(tid, agent="alice")
    candidate = bot.promote(tid, agent="alice", category="misc/other")
    assert candidate.answer == "We will look into it."
    assert candidate.question == "zxqv wpfk"
    # after resolution the bot answers again
    assert bot.handle("Do you ship internationally?", user_id="u5").decision is Action.ANSWER


def test_vip_ticket_goes_to_their_last_agent(bot: AutoReply) -> None:
    vip = {"vip": True}
    first = bot.handle(Message(text="转人工", user_id="vip-1", metadata=vip))
    assert first.ticket_id is not None
    bot.claim(first.ticket_id, "carol")
    bot.resolve(first.ticket_id, agent="carol", resolution="done")
    second = bot.handle(Message(text="转人工", user_id="vip-1", metadata=vip))
    assert second.ticket_id is not None
    ticket = bot.store.get_ticket(second.ticket_id)
    assert ticket.owner == "carol" and ticket.status is TicketStatus.CLAIMED and ticket.vip


def test_out_of_hours_ticket_tells_when_a_person_replies(
    settings: Settings, hashing: Encoder
) -> None:
    closed = settings.with_overrides(
        hours=HoursConfig(timezone="UTC", weekly={"mon": "09:00-17:00"})
    )
    saturday = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    with AutoReply.from_settings(closed, encoder=hashing, now=lambda: saturday) as bot:
        reply = bot.handle("转人工", user_id="u6")
    assert reply.ticket_id is not None and reply.out_of_hours
    assert reply.next_open == datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    assert "2026-11-30 09:00" in reply.text


def test_feedback_on_an_answer(bot: AutoReply) -> None:
    reply = bot.handle("Do you ship internationally?")
    assert reply.message_id is not None
    bot.feedback(reply.message_id, helpful=False, comment="too short")
    assert bot.store.list_feedback(entry_id="shipping")[0].helpful is False


def test_index_is_reused_and_updated_incrementally(settings: Settings, hashing: Encoder) -> None:
    with AutoReply.from_settings(settings, encoder=hashing) as first:
        assert first.engine.index.info.status == "built"
    with AutoReply.from_settings(settings, encoder=hashing) as second:
        assert second.engine.index.info.status == "loaded"
        assert second.engine.index.info.encoded == 0
    faq = Path(settings.knowledge) / "faq.yaml"
    faq.write_text(
        faq.read_text(encoding="utf-8").replace("stop my plan", "halt my plan"), encoding="utf-8"
    )
    with AutoReply.from_settings(settings, encoder=hashing) as third:
        info = third.engine.index.info
        assert info.status == "updated" and info.encoded == 1


def test_reload_keeps_the_old_engine_on_a_bad_knowledge_base(bot: AutoReply) -> None:
    old = bot.engine
    faq = Path(bot.settings.knowledge) / "faq.yaml"
    faq.write_text("entries:\n  - id: x\n    question: q\n", encoding="utf-8")
    with pytest.raises(KnowledgeInvalid, match="answer"):
        bot.reload()
    assert bot.engine is old


def test_reload_swaps_in_the_new_knowledge(bot: AutoReply, tmp_path: Path) -> None:
    new = tmp_path / "new.jsonl"
    new.write_text(
        '{"id": "hours", "question": "When are you open?", "answer": "9 to 5.",'
        ' "variants": ["opening hours"]}\n',
        encoding="utf-8",
    )
    bot.reload(new)
    assert bot.handle("When are you open?").entry_id == "hours"


def test_resolving_asks_for_a_rating_and_a_digit_answers_it(bot: AutoReply) -> None:
    """On resolve the bot asks, in the customer's language, for 1-5; a reply of "４" (any
    width) is the ticket's rating with thanks; once rated, digits are questions again."""
    asked = bot.handle("我要投诉，找人工！", user_id="rater")
    assert asked.ticket_id is not None
    bot.claim(asked.ticket_id, "alice")
    bot.reply(asked.ticket_id, agent="alice", text="已为您处理。")
    bot.resolve(asked.ticket_id, agent="alice")
    question = bot.store.history(asked.conversation_id)[-1]
    assert question.role is Role.BOT and "1" in question.text and "打分" in question.text
    rated = bot.handle("４", user_id="rater")
    assert rated.reason is Reason.RATED and rated.ticket_id == asked.ticket_id
    assert bot.store.ratings_of([asked.ticket_id])[asked.ticket_id].rating == 4
    again = bot.handle("5", user_id="rater")
    assert again.reason is not Reason.RATED
    assert bot.store.ratings_of([asked.ticket_id])[asked.ticket_id].rating == 4
    assert rated.message_id is not None  # a vote on the thanks: its "question" is a digit
    bot.feedback(rated.message_id, helpful=False)
    assert bot.store.list_gaps(reason=Reason.NOT_HELPFUL) == []


def test_a_question_after_the_rating_request_is_handled_as_usual(bot: AutoReply) -> None:
    """Only a bare 1-5 answers the rating question; anything else is a new question."""
    asked = bot.handle("I want to talk to a human", user_id="norate")
    assert asked.ticket_id is not None
    bot.claim(asked.ticket_id, "alice")
    bot.resolve(asked.ticket_id, agent="alice")
    assert "1 (poor) to 5 (great)" in bot.store.history(asked.conversation_id)[-1].text
    followed = bot.handle("5 stars but how do I get a refund", user_id="norate")
    assert followed.reason is not Reason.RATED
    assert bot.store.ratings_of([asked.ticket_id]) == {}
