"""The agent side: work the human queue with a bearer token.

List the queue, open a ticket (conversation, handoff payload, the customer's earlier
tickets), claim, reply, transfer, resolve, promote. The store's ownership rules apply: acting
on someone else's ticket is 403 (``not_owner``), claiming a ticket another agent holds or
touching a resolved one is 409 (``conflict``). A reply is checked against the prohibited
phrases (违规话术) before anything else: a match is refused with 422 naming the phrase, and
recorded and counted; a clean reply is stored and delivered through the conversation's channel.
"""

from __future__ import annotations

import asyncio
import logging
from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Query, status

from autoreply.api.auth import AgentDep
from autoreply.api.schemas import (
    AgentReply,
    PromoteIn,
    ReplyIn,
    ResolveIn,
    TicketDetail,
    TicketView,
    TransferIn,
)
from autoreply.errors import ConflictError
from autoreply.models import FAQCandidate, Priority, TicketStatus
from autoreply.web.errors import ERROR_RESPONSES, ProhibitedPhrase
from autoreply.web.state import StateDep

log = logging.getLogger("autoreply.api")

router = APIRouter(
    prefix="/v1/tickets",
    tags=["agents"],
    responses={k: ERROR_RESPONSES[k] for k in (401, 403, 404, 409, 422, 429)},
)


class QueueStatus(StrEnum):
    """Which tickets to list: ``active`` is open and claimed together."""

    ACTIVE = "active"
    OPEN = "open"
    CLAIMED = "claimed"
    RESOLVED = "resolved"
    ALL = "all"


_ORDER = {Priority.URGENT: 0, Priority.HIGH: 1, Priority.NORMAL: 2, Priority.LOW: 3}


@router.get("", response_model=list[TicketView], summary="The queue, most urgent and oldest first")
def list_queue(
    agent: AgentDep,
    state: StateDep,
    status: QueueStatus = QueueStatus.ACTIVE,
    priority: Priority | None = None,
    category: Annotated[str | None, Query(description="Category path and its sub-paths.")] = None,
    mine: Annotated[bool, Query(description="Only tickets you own.")] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[TicketView]:
    store = state.bot.store
    wanted: list[TicketStatus | None]
    if status is QueueStatus.ACTIVE:
        wanted = [TicketStatus.OPEN, TicketStatus.CLAIMED]
    elif status is QueueStatus.ALL:
        wanted = [None]
    else:
        wanted = [TicketStatus(status.value)]
    tickets = [
        t
        for st in wanted
        for t in store.list_tickets(
            status=st,
            owner=agent.name if mine else None,
            priority=priority,
            category=category,
            limit=limit,
        )
    ]
    tickets.sort(key=lambda t: (_ORDER[t.priority], t.created_at, t.id))
    return [TicketView.of(t) for t in tickets[:limit]]


@router.get("/{ticket_id}", response_model=TicketDetail, summary="One ticket with its context")
def ticket_detail(ticket_id: int, agent: AgentDep, state: StateDep) -> TicketDetail:
    """The ticket and its handoff payload, the whole conversation, the customer's earlier
    tickets (newest first) and how agent replies were delivered."""
    store = state.bot.store
    ticket = store.get_ticket(ticket_id)
    earlier = [
        t for t in store.list_tickets(user_id=ticket.user_id, limit=1000) if t.id < ticket_id
    ]
    earlier.sort(key=lambda t: t.id, reverse=True)
    return TicketDetail(
        ticket=TicketView.of(ticket),
        conversation=store.history(ticket.conversation_id),
        earlier_tickets=[TicketView.of(t) for t in earlier[:20]],
        deliveries=store.list_deliveries(ticket_id=ticket_id),
    )


@router.post("/{ticket_id}/claim", response_model=TicketView, summary="Take the ticket")
def claim(ticket_id: int, agent: AgentDep, state: StateDep) -> TicketView:
    """You own it until you resolve or transfer it. Claiming your own ticket is a no-op;
    a ticket another agent owns is 409."""
    return TicketView.of(state.bot.claim(ticket_id, agent.name))


@router.post(
    "/{ticket_id}/reply",
    response_model=AgentReply,
    status_code=status.HTTP_201_CREATED,
    summary="Reply to the customer",
)
async def reply(ticket_id: int, body: ReplyIn, agent: AgentDep, state: StateDep) -> AgentReply:
    """Checked for prohibited phrases first (422 ``prohibited_phrase``, recorded); then
    stored (an open ticket is claimed by you) and delivered through the conversation's
    channel. ``delivery.status`` is ``sent``, ``failed`` (with ``error``; the reply is
    stored all the same) or ``poll`` (no push channel: the customer reads the conversation)."""
    bot = state.bot
    prohibited = bot.kb.phrases.get("prohibited")
    phrase = prohibited.find(body.text) if prohibited is not None else None
    if phrase is not None:
        await asyncio.to_thread(
            bot.store.add_interception, agent=agent.name, ticket_id=ticket_id, phrase=phrase
        )
        state.metrics.interceptions.labels(phrase).inc()
        log.warning(
            "reply intercepted",
            extra={"agent": agent.name, "ticket_id": ticket_id, "phrase": phrase},
        )
        raise ProhibitedPhrase(phrase)
    message = await asyncio.to_thread(bot.reply, ticket_id, agent=agent.name, text=body.text)
    ticket = await asyncio.to_thread(bot.store.get_ticket, ticket_id)
    delivery = await state.channels.deliver(ticket, message)
    return AgentReply(message=message, delivery=delivery)


@router.post("/{ticket_id}/transfer", response_model=TicketView, summary="Hand the ticket over")
def transfer(ticket_id: int, body: TransferIn, agent: AgentDep, state: StateDep) -> TicketView:
    """Only the owner transfers; the new owner must be a known, enabled agent."""
    target = state.bot.store.get_agent(body.to)
    if target.disabled:
        raise ConflictError(f"agent '{target.name}' is disabled; transfer to someone else")
    return TicketView.of(state.bot.transfer(ticket_id, agent=agent.name, to_agent=target.name))


@router.post("/{ticket_id}/resolve", response_model=TicketView, summary="Close the ticket")
async def resolve(
    ticket_id: int, agent: AgentDep, state: StateDep, body: ResolveIn | None = None
) -> TicketView:
    """Only the owner resolves. The resolution defaults to your last reply; the channel is
    told (e.g. Chatwoot hands the conversation back to the bot)."""
    resolution = body.resolution if body is not None else None
    ticket = await asyncio.to_thread(
        state.bot.resolve, ticket_id, agent=agent.name, resolution=resolution
    )
    state.channels.resolved(ticket)
    return TicketView.of(ticket)


@router.post(
    "/{ticket_id}/promote",
    response_model=FAQCandidate,
    status_code=status.HTTP_201_CREATED,
    summary="Propose the answer as a new FAQ entry",
)
def promote(
    ticket_id: int, agent: AgentDep, state: StateDep, body: PromoteIn | None = None
) -> FAQCandidate:
    """A resolved ticket's owner proposes its question and answer for review
    (``GET /v1/admin/candidates``)."""
    body = body or PromoteIn()
    return state.bot.promote(
        ticket_id,
        agent=agent.name,
        question=body.question,
        answer=body.answer,
        category=body.category,
    )
