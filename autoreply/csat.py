"""Satisfaction (CSAT) through the conversation: when an agent resolves a ticket the bot asks
the customer for a 1-5 rating in the customer's language, and a reply of just a digit 1-5 to
that question (while the ticket has no rating) is stored as the rating, with the bot's thanks.
The service calls ``ask`` on resolve and ``answer`` before deciding; the app delivers the
question through the conversation's channel."""

from __future__ import annotations

import unicodedata
from typing import Any

from autoreply.models import Action, Message, Reason, Reply, Role, StoredMessage, Ticket
from autoreply.store import Store
from autoreply.text import has_han

ASK = {
    "zh": "您的问题已处理完毕。请为本次服务打分：回复 1（很差）到 5（很好）。",
    "en": "Your request is resolved. How did we do? "
    "Reply with a number from 1 (poor) to 5 (great).",
}
THANKS = {"zh": "感谢您的评分！", "en": "Thank you for your rating!"}
KEY = "csat_for"
"""The details key of the bot message that asks for a ticket's rating (its value: the id)."""


def ask(store: Store, ticket: Ticket) -> StoredMessage:
    """Store the rating question in the ticket's conversation, in the language of the
    customer's last message."""
    said = [
        m.text for m in store.history(ticket.conversation_id, limit=20) if m.role is Role.CUSTOMER
    ]
    lang = "zh" if said and has_han(said[-1]) else "en"
    details: dict[str, Any] = {KEY: ticket.id, "lang": lang}
    return store.add_message(
        conversation_id=ticket.conversation_id,
        user_id=ticket.user_id,
        channel=ticket.channel,
        role=Role.BOT,
        text=ASK[lang],
        ticket_id=ticket.id,
        details=details,
    )


def asked(history: list[StoredMessage]) -> tuple[int, str] | None:
    """(ticket id, language) when the conversation's last message is the rating question."""
    if not history:
        return None
    last = history[-1]
    details = last.details or {}
    if last.role is not Role.BOT or not isinstance(details.get(KEY), int):
        return None
    return int(details[KEY]), str(details.get("lang") or "en")


def rating_in(text: str) -> int | None:
    """1-5 when the text is just that digit (full-width digits and a closing mark allowed)."""
    folded = unicodedata.normalize("NFKC", text).strip().rstrip(".!。！")
    return int(folded) if len(folded) == 1 and folded in "12345" else None


def answer(store: Store, msg: Message, history: list[StoredMessage]) -> Reply | None:
    """The customer's rating, when ``msg`` answers the rating question of a ticket not rated
    yet: the message, the rating and the bot's thanks stored in one transaction. Else None
    (the message is handled as any other)."""
    question, rating = asked(history), rating_in(msg.text)
    if question is None or rating is None:
        return None
    ticket_id, lang = question
    if store.ratings_of([ticket_id]):
        return None
    with store.atomic():
        customer = store.add_message(
            conversation_id=msg.conversation,
            user_id=msg.user_id,
            channel=msg.channel,
            role=Role.CUSTOMER,
            text=msg.text,
            external_id=msg.message_id,
        )
        store.add_rating(ticket_id, rating=rating)
        bot = store.add_message(
            conversation_id=msg.conversation,
            user_id=msg.user_id,
            channel=msg.channel,
            role=Role.BOT,
            text=THANKS[lang],
            action=Action.ANSWER,
            reason=Reason.RATED,
            reply_to=customer.id,
        )
    return Reply(
        decision=Action.ANSWER,
        reason=Reason.RATED,
        text=bot.text,
        conversation_id=msg.conversation,
        message_id=bot.id,
        ticket_id=ticket_id,
    )
