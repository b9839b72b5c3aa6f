"""The real bundled encoder on the demo knowledge base: the behaviour a newcomer sees first."""

from __future__ import annotations

import pytest

from autoreply.models import Action, Message, Reason
from autoreply.service import AutoReply


@pytest.mark.parametrize(
    ("text", "entry"),
    [
        ("怎麼退款", "zh-refund-how"),
        ("怎么退款", "zh-refund-how"),
        ("怎麼修改密碼？", "zh-password-change"),
        ("I forgot my password", "password-reset"),
        ("do you ship to other countries", "shipping-international"),
        ("How can I cancel my subscription", "subscription-cancel"),
    ],
)
def test_demo_answers_known_questions(demo_bot: AutoReply, text: str, entry: str) -> None:
    reply = demo_bot.handle(text)
    assert reply.decision is Action.ANSWER, reply
    assert reply.entry_id == entry


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("怎么修改密码", "怎麼修改密碼"),
        ("怎么修改密码？", "怎么修改密码?"),
        ("ＨＯＷ ＤＯ Ｉ ＲＥＳＥＴ ＭＹ ＰＡＳＳＷＯＲＤ", "how do i reset my password"),
        ("how do i reset my password 🙏🙏", "how do i reset my password"),
    ],
)
def test_same_question_in_other_forms_gets_the_same_confidence(
    demo_bot: AutoReply, a: str, b: str
) -> None:
    first, second = demo_bot.engine.decide(a), demo_bot.engine.decide(b)
    assert first.entry_id == second.entry_id
    assert first.confidence == pytest.approx(second.confidence, abs=0.01)


@pytest.mark.parametrize("text", ["你们的火箭几点发射", "What's the weather in Paris tomorrow?"])
def test_out_of_scope_escalates_and_is_a_gap(demo_bot: AutoReply, text: str) -> None:
    reply = demo_bot.handle(text, user_id="u1")
    assert reply.decision is Action.ESCALATE and reply.reason is Reason.LOW_CONFIDENCE
    assert reply.gap_id is not None and reply.ticket_id is not None
    assert demo_bot.store.list_gaps()[0].question == text


def test_vague_question_asks_did_you_mean(demo_bot: AutoReply) -> None:
    reply = demo_bot.handle("password")
    assert reply.decision is Action.CLARIFY
    ids = {c.entry_id for c in reply.candidates}
    assert {"password-reset", "password-change"} <= ids


def test_picking_an_option_answers_it(demo_bot: AutoReply) -> None:
    first = demo_bot.handle("password", conversation_id="c1")
    picked = first.candidates[1].entry_id
    reply = demo_bot.handle(Message(text="2", conversation_id="c1", metadata={"picked": picked}))
    assert reply.decision is Action.ANSWER and reply.entry_id == picked
    assert reply.reason is Reason.CLARIFY_PICKED


def test_legal_threat_goes_to_a_person(demo_bot: AutoReply) -> None:
    reply = demo_bot.handle("我要起诉你们")
    assert reply.decision is Action.ESCALATE
