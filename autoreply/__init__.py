"""autoreply: FAQ auto-reply for customer service.

Answers what it knows, hands the rest to a person, and logs what nobody has answered yet::

    from autoreply import AutoReply, Message
    bot = AutoReply.from_path("knowledge/", db="autoreply.db")
    reply = bot.handle(Message(text="怎麼退款", user_id="u1"))
    reply.decision, reply.text, reply.confidence

Names load lazily (PEP 562) so that the command line starts fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "Action": "autoreply.models",
    "AutoReply": "autoreply.service",
    "AutoreplyError": "autoreply.errors",
    "Candidate": "autoreply.models",
    "ConflictError": "autoreply.errors",
    "Decision": "autoreply.models",
    "E5Encoder": "autoreply.encoder",
    "Encoder": "autoreply.encoder",
    "Engine": "autoreply.engine",
    "EngineConfig": "autoreply.settings",
    "FAQEntry": "autoreply.models",
    "FAQFormatError": "autoreply.errors",
    "HashingEncoder": "autoreply.encoder",
    "KnowledgeBase": "autoreply.knowledge",
    "KnowledgeError": "autoreply.errors",
    "KnowledgeInvalid": "autoreply.errors",
    "Message": "autoreply.models",
    "NotFoundError": "autoreply.errors",
    "OwnershipError": "autoreply.errors",
    "Priority": "autoreply.models",
    "Reason": "autoreply.models",
    "Reply": "autoreply.models",
    "SentenceTransformerEncoder": "autoreply.encoder",
    "Settings": "autoreply.settings",
    "Ticket": "autoreply.models",
    "TicketStatus": "autoreply.models",
    "load_faq": "autoreply.knowledge",
    "load_knowledge": "autoreply.knowledge",
}

__all__ = [
    "Action",
    "AutoReply",
    "AutoreplyError",
    "Candidate",
    "ConflictError",
    "Decision",
    "E5Encoder",
    "Encoder",
    "Engine",
    "EngineConfig",
    "FAQEntry",
    "FAQFormatError",
    "HashingEncoder",
    "KnowledgeBase",
    "KnowledgeError",
    "KnowledgeInvalid",
    "Message",
    "NotFoundError",
    "OwnershipError",
    "Priority",
    "Reason",
    "Reply",
    "SentenceTransformerEncoder",
    "Settings",
    "Ticket",
    "TicketStatus",
    "load_faq",
    "load_knowledge",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'autoreply' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from autoreply.encoder import E5Encoder, Encoder, HashingEncoder, SentenceTransformerEncoder
    from autoreply.engine import Engine
    from autoreply.errors import (
        AutoreplyError,
        ConflictError,
        FAQFormatError,
        KnowledgeError,
        KnowledgeInvalid,
        NotFoundError,
        OwnershipError,
    )
    from autoreply.knowledge import KnowledgeBase, load_faq, load_knowledge
    from autoreply.models import (
        Action,
        Candidate,
        Decision,
        FAQEntry,
        Message,
        Priority,
        Reason,
        Reply,
        Ticket,
        TicketStatus,
    )
    from autoreply.service import AutoReply
    from autoreply.settings import EngineConfig, Settings
