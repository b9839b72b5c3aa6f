"""What one running app holds (built once in the lifespan) and how handlers reach it.

``ServiceState.handle`` is the one way a customer message gets answered, from
``POST /v1/messages`` and from every chat channel alike: text cap, per-user rate limit,
micro-batched ``AutoReply.handle_many``, metrics, and a handoff notice to the channel when
the message opened a ticket.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from autoreply.errors import AutoreplyError
from autoreply.models import Action, Message, Reason, Reply
from autoreply.service import AutoReply
from autoreply.settings import Settings
from autoreply.web.batching import MicroBatcher
from autoreply.web.delivery import Channels
from autoreply.web.errors import Invalid, RateLimited
from autoreply.web.limits import TokenBuckets
from autoreply.web.prometheus import Metrics

log = logging.getLogger("autoreply.api")


@dataclass
class ServiceState:
    """The bot and everything around it for one app."""

    settings: Settings
    bot: AutoReply
    metrics: Metrics
    batcher: MicroBatcher
    channels: Channels
    user_buckets: TokenBuckets
    ip_buckets: TokenBuckets
    admin_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    """One knowledge change (upload or reload) at a time."""

    def check_text(self, text: str) -> None:
        limit = self.settings.server.max_text_chars
        if len(text) > limit:
            raise Invalid(
                f"text is {len(text)} characters; the limit is {limit} "
                "(server.max_text_chars): send a shorter message",
                errors=[{"field": "text", "problem": f"longer than {limit} characters"}],
            )

    def check_user(self, key: str) -> None:
        try:
            self.user_buckets.check(key, what=f"user {key}")
        except RateLimited:
            self.metrics.rate_limited.labels("user").inc()
            raise

    async def handle(self, message: Message) -> Reply:
        """Answer one customer message (batched with concurrent ones)."""
        self.check_text(message.text)
        self.check_user(f"{message.channel}:{message.user_id}")
        reply = await self.batcher.submit(message)
        self.metrics.observe_reply(reply)
        log.info(
            "reply",
            extra={
                "conversation_id": reply.conversation_id,
                "decision": reply.decision.value,
                "reason": reply.reason.value,
                "ticket_id": reply.ticket_id,
                "duplicate": reply.duplicate,
            },
        )
        opened = (
            reply.ticket_id is not None
            and not reply.duplicate
            and reply.decision is Action.ESCALATE
            and reply.reason is not Reason.AGENT_HANDLING
        )
        if (
            opened
            and reply.ticket_id is not None
            and self.channels.announces_handoff(message.channel)
        ):
            try:
                ticket = await asyncio.to_thread(self.bot.store.get_ticket, reply.ticket_id)
            except AutoreplyError:
                pass  # the reply stands; the notice is a courtesy
            else:
                self.channels.handoff(ticket)
        return reply


async def get_state(request: Request) -> ServiceState:
    """The running app's state (async: no thread hop on the hot path)."""
    state: ServiceState = request.app.state.service
    return state


StateDep = Annotated[ServiceState, Depends(get_state)]
