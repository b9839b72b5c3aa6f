"""The one documented handoff payload every escalation carries (API, channels, store)."""

from __future__ import annotations

from typing import Any

from autoreply.models import Decision, Message, Role, StoredMessage


def handoff_payload(
    msg: Message,
    decision: Decision,
    history: list[StoredMessage],
    customer: StoredMessage,
    votes: dict[int, bool] | None = None,
) -> dict[str, Any]:
    """The one documented handoff payload every escalation carries (API, channels, store).

    Keys: ``question`` (this message), ``messages`` (the customer's recent messages, oldest
    first), ``attempts`` (the bot's recent replies with id, decision, reason, entry,
    confidence and ``helpful``: the customer's vote on it from ``votes``, None if none),
    ``candidates`` (this message's top entries with scores), ``reason``, ``priority``, ``vip``,
    ``channel``, ``user_id``, ``metadata``.
    """
    customer_msgs = [m for m in history if m.role is Role.CUSTOMER] + [customer]
    attempts = [m for m in history if m.role is Role.BOT]
    return {
        "question": msg.text,
        "messages": [
            {"id": m.id, "text": m.text, "at": m.created_at.isoformat()} for m in customer_msgs
        ],
        "attempts": [
            {
                "id": m.id,
                "text": m.text,
                "decision": m.action.value if m.action else None,
                "reason": m.reason.value if m.reason else None,
                "entry_id": m.entry_id,
                "confidence": m.confidence,
                "helpful": (votes or {}).get(m.id),
            }
            for m in attempts
        ],
        "candidates": [c.model_dump() for c in decision.candidates],
        "reason": decision.reason.value,
        "priority": decision.priority.value,
        "vip": msg.vip,
        "channel": msg.channel,
        "user_id": msg.user_id,
        "metadata": msg.metadata,
    }
