"""Engine decisions: answer, clarify or escalate, and why."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from autoreply.encoder import Encoder
from autoreply.engine import Engine, consecutive_failures
from autoreply.knowledge import load_knowledge
from autoreply.knowledge_index import KnowledgeIndex
from autoreply.models import Action, Message, Priority, Reason, Role, StoredMessage
from autoreply.settings import EngineConfig


@pytest.fixture
def engine(faq_dir: Path, hashing: Encoder) -> Engine:
    index = KnowledgeIndex.build(load_knowledge(faq_dir), hashing)
    return Engine(index)


def _bot_turn(action: Action, reason: Reason, n: int) -> StoredMessage:
    return StoredMessage(
        id=n,
        conversation_id="c",
        user_id="u",
        channel="api",
        role=Role.BOT,
        text="...",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        action=action,
        reason=reason,
    )


def _customer_turn(n: int) -> StoredMessage:
    return StoredMessage(
        id=n,
        conversation_id="c",
        user_id="u",
        channel="api",
        role=Role.CUSTOMER,
        text="?",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


def test_exact_question_is_answered_as_written(engine: Engine) -> None:
    decision = engine.decide("How do I cancel my subscription?")
    assert decision.action is Action.ANSWER
    assert decision.entry_id == "cancel"
    assert decision.text == "Go to Billing → Subscription → Cancel."
    assert 0.0 <= decision.confidence <= 1.0


def test_traditional_chinese_matches_simplified_entry(engine: Engine) -> None:
    simplified = engine.decide("怎么修改密码")
    traditional = engine.decide("怎麼修改密碼？")
    assert traditional.entry_id == simplified.entry_id == "password"
    assert traditional.confidence == pytest.approx(simplified.confidence, abs=0.01)


@pytest.mark.parametrize(
    ("plain", "variant"),
    [
        ("怎么修改密码", "怎麼修改密碼"),  # traditional
        ("怎么修改密码", "怎么修改密码？！"),  # full-width end punctuation
        ("怎么修改密码", "怎么修改密码🙏"),  # emoji
        ("how do i cancel my subscription", "ＨＯＷ ｄｏ Ｉ cancel my subscription？"),  # width
        ("how do i cancel my subscription", "How do I cancel my subscription?? 😀"),
    ],
)
def test_equivalent_forms_reach_the_same_entry_with_the_same_confidence(
    engine: Engine, plain: str, variant: str
) -> None:
    a, b = engine.rank([plain, variant])
    assert [c.entry_id for c in a[:3]] == [c.entry_id for c in b[:3]]
    assert b[0].confidence == pytest.approx(a[0].confidence, abs=0.01)


@pytest.mark.parametrize("text", ["转人工", "我要找人工客服", "Can I talk to a human?"])
def test_request_for_a_person_escalates(engine: Engine, text: str) -> None:
    decision = engine.decide(text)
    assert decision.action is Action.ESCALATE
    assert decision.reason is Reason.ASKED_FOR_HUMAN


@pytest.mark.parametrize("text", ["你们就是骗子", "This is a SCAM", "where is my order!!!"])
def test_complaint_escalates_with_high_priority_and_a_calming_line(
    engine: Engine, text: str
) -> None:
    decision = engine.decide(text)
    assert decision.action is Action.ESCALATE
    assert decision.reason is Reason.COMPLAINT
    assert decision.priority is Priority.HIGH
    assert decision.text in engine.kb.calming["zh" if "骗" in text else "en"]


def test_angry_message_escalates_even_with_a_confident_match(engine: Engine) -> None:
    """An angry message escalates even when the FAQ could answer it."""
    decision = engine.decide("How do I cancel my subscription?!!! ridiculous")
    assert decision.reason is Reason.COMPLAINT


def test_vip_gets_one_priority_step_up(engine: Engine) -> None:
    decision = engine.decide(Message(text="骗子", metadata={"vip": True}))
    assert decision.priority is Priority.URGENT


def test_entry_marked_escalate_goes_to_a_person(engine: Engine) -> None:
    decision = engine.decide("I want to take legal action")
    assert decision.action is Action.ESCALATE
    assert decision.reason is Reason.SENSITIVE_CATEGORY
    assert decision.entry_id == "legal"
    assert decision.text != "Our legal team will contact you."


def test_sensitive_category_from_config(faq_dir: Path, hashing: Encoder) -> None:
    index = KnowledgeIndex.build(load_knowledge(faq_dir), hashing)
    engine = Engine(index, config=EngineConfig(sensitive_categories=["billing"]))
    decision = engine.decide("How do I cancel my subscription?")
    assert decision.reason is Reason.SENSITIVE_CATEGORY


def test_unknown_question_escalates_with_fallback(engine: Engine) -> None:
    decision = engine.decide("zxqv wpfk jjjj")
    assert decision.action is Action.ESCALATE
    assert decision.reason is Reason.LOW_CONFIDENCE
    assert decision.priority is Priority.NORMAL


def test_empty_message_asks_for_the_question(engine: Engine) -> None:
    decision = engine.decide("   🙂 ")
    assert decision.action is Action.CLARIFY
    assert decision.reason is Reason.EMPTY_MESSAGE


def test_close_runner_up_asks_did_you_mean(faq_dir: Path, hashing: Encoder) -> None:
    index = KnowledgeIndex.build(load_knowledge(faq_dir), hashing)
    engine = Engine(index, config=EngineConfig(answer_threshold=1.0, clarify_threshold=0.0))
    decision = engine.decide("password")
    assert decision.action is Action.CLARIFY
    assert decision.reason is Reason.AMBIGUOUS
    assert 1 <= len(decision.candidates) <= 5
    assert decision.candidates[0].question in decision.text
    # sensitive entries are never offered as a choice
    assert all(c.entry_id != "legal" for c in decision.candidates)


def test_picked_option_is_answered(engine: Engine) -> None:
    decision = engine.decide(Message(text="2", metadata={"picked": "shipping"}))
    assert decision.action is Action.ANSWER
    assert decision.reason is Reason.CLARIFY_PICKED
    assert decision.entry_id == "shipping"


def test_repeated_failures_escalate(engine: Engine) -> None:
    history = [
        _customer_turn(1),
        _bot_turn(Action.ESCALATE, Reason.LOW_CONFIDENCE, 2),
        _customer_turn(3),
        _bot_turn(Action.CLARIFY, Reason.AMBIGUOUS, 4),
    ]
    decision = engine.decide("zxqv wpfk jjjj", history=history)
    assert decision.reason is Reason.REPEATED_FAILURE
    assert decision.priority is Priority.HIGH


def test_failures_are_counted_since_the_last_answer() -> None:
    history = [
        _bot_turn(Action.CLARIFY, Reason.AMBIGUOUS, 1),
        _bot_turn(Action.ANSWER, Reason.CONFIDENT, 2),
        _bot_turn(Action.ESCALATE, Reason.LOW_CONFIDENCE, 3),
    ]
    assert consecutive_failures(history) == 1
    assert consecutive_failures([]) == 0


def test_decide_many_matches_decide(engine: Engine) -> None:
    texts = ["怎么申请退款？", "Do you ship internationally?", "转人工", ""]
    many = engine.decide_many(texts)
    assert [d.action for d in many] == [engine.decide(t).action for t in texts]
