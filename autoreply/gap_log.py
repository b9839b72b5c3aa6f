"""The FAQ gap log's two ways in, redacted: a question the bot could not answer, and a question
whose answer the customer voted not helpful (the bot answered, but not what was asked)."""

from __future__ import annotations

from autoreply.knowledge import KnowledgeBase
from autoreply.models import Action, Decision, Message, Reason, StoredMessage
from autoreply.redact import redact
from autoreply.store import Store
from autoreply.text import normalize


def log_unanswered(store: Store, msg: Message, decision: Decision) -> int:
    """Log ``msg`` for the decision that did not answer it, with its best candidate."""
    top = decision.candidates[0] if decision.candidates else None
    gap = store.add_gap(
        question=redact(msg.text),
        normalized=redact(decision.normalized),
        reason=decision.reason,
        channel=msg.channel,
        conversation_id=msg.conversation,
        user_id=msg.user_id,
        best_entry_id=top.entry_id if top else None,
        best_score=top.confidence if top else None,
        category=top.category if top else None,
    )
    return gap.id


def log_rejected(
    store: Store, kb: KnowledgeBase, answer: StoredMessage, question: StoredMessage
) -> int | None:
    """Log ``question`` as ``not_helpful``, the rejected entry as its best match; None for any
    bot message but a confident answer (a pick's or a rating's question is a number)."""
    if answer.action is not Action.ANSWER or answer.reason is not Reason.CONFIDENT:
        return None
    entry = kb.get(answer.entry_id) if answer.entry_id and answer.entry_id in kb else None
    gap = store.add_gap(
        question=redact(question.text),
        normalized=redact(normalize(question.text)),
        reason=Reason.NOT_HELPFUL,
        channel=question.channel,
        conversation_id=question.conversation_id,
        user_id=question.user_id,
        best_entry_id=answer.entry_id,
        best_score=answer.confidence,
        category=entry.category if entry else None,
    )
    return gap.id
