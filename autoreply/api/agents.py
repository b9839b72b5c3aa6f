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
import json
import logging
from collections.abc import Callable
from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Query, status

from autoreply.api.auth import AgentDep
from autoreply.api.schemas import (
    AgentReply,
    BulkIn,
    BulkResult,
    NoteIn,
    PromoteIn,
    ReplyIn,
    ResolveIn,
    TagsIn,
    TagsOut,
    TicketDetail,
    TicketView,
    TransferIn,
)
from autoreply.desk import Bulk, bulk
from autoreply.errors import ConflictError
from autoreply.models import FAQCandidate, Priority, TicketStatus
from autoreply.store import Note
from autoreply.web.errors import ERROR_RESPONSES, Invalid, ProhibitedPhrase, error_response
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
    tag: Annotated[str | None, Query(max_length=32, description="Only tickets with it.")] = None,
    q: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=200,
            description="Text in the conversation, the customer's id or name (literal).",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[TicketView]:
    store = state.bot.store
    only: set[int] | None = None
    if tag is not None:
        only = store.tagged(tag)
    if q is not None:
        found = set(store.search_tickets(q, limit=1000))
        only = found if only is None else only & found
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
    if only is not None:
        tickets = [t for t in tickets if t.id in only]
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
        tags=store.tags_of([ticket_id]).get(ticket_id, []),
        notes=store.list_notes(ticket_id),
    )


@router.get("/{ticket_id}/notes", response_model=list[Note], summary="Internal notes")
def notes(ticket_id: int, agent: AgentDep, state: StateDep) -> list[Note]:
    """The ticket's internal notes, oldest first (agents only)."""
    store = state.bot.store
    store.get_ticket(ticket_id)
    return store.list_notes(ticket_id)


@router.post(
    "/{ticket_id}/notes",
    response_model=Note,
    status_code=status.HTTP_201_CREATED,
    summary="Add an internal note",
)
def add_note(ticket_id: int, body: NoteIn, agent: AgentDep, state: StateDep) -> Note:
    """Any agent may note on any ticket. A note is never delivered to a channel nor shown in
    the customer's conversation."""
    return state.bot.store.add_note(ticket_id, agent=agent.name, text=body.text)


@router.post("/{ticket_id}/tags", response_model=TagsOut, summary="Tag the ticket")
def add_tags(ticket_id: int, body: TagsIn, agent: AgentDep, state: StateDep) -> TagsOut:
    """Add tags (422 naming a bad one); the ticket's tags come back."""
    tags = _tagging(lambda: state.bot.store.tag_ticket(ticket_id, body.tags, agent=agent.name))
    return TagsOut(ticket_id=ticket_id, tags=tags)


@router.delete("/{ticket_id}/tags/{tag}", response_model=TagsOut, summary="Remove a tag")
def remove_tag(ticket_id: int, tag: str, agent: AgentDep, state: StateDep) -> TagsOut:
    return TagsOut(ticket_id=ticket_id, tags=state.bot.store.untag_ticket(ticket_id, tag))


def _tagging(call: Callable[[], list[str]]) -> list[str]:
    try:
        return call()
    except ConflictError as exc:
        if "tag " not in str(exc):
            raise
        raise Invalid(str(exc), field="tags") from exc


@router.post("/bulk", response_model=list[BulkResult], summary="One action on several tickets")
async def bulk_action(body: BulkIn, agent: AgentDep, state: StateDep) -> list[BulkResult]:
    """Claim, transfer, resolve or tag up to 200 tickets. Each ticket is done on its own
    under the single-ticket rules: the result lists, per ticket, ``ok`` or the error the
    single-ticket route would have given (``not_owner``, ``conflict``, ``not_found``).
    A request that cannot apply to any ticket (no agent to transfer to, a bad tag) is 422."""
    try:
        outcomes = await asyncio.to_thread(
            bulk,
            state.bot,
            body.action,
            body.ticket_ids,
            agent=agent.name,
            to=body.to,
            tags=body.tags or (),
            resolution=body.resolution,
        )
    except ConflictError as exc:
        name = str(exc).split(":", 1)[0]
        name = name if name in ("ticket_ids", "to", "tags") else "tags"
        raise Invalid(str(exc), field=name) from exc
    results = []
    for outcome in outcomes:
        if outcome.error is None:
            if body.action is Bulk.RESOLVE and outcome.ticket is not None:
                state.channels.resolved(outcome.ticket)
            results.append(BulkResult(ticket_id=outcome.ticket_id, ok=True))
            continue
        error = json.loads(bytes(error_response(outcome.error).body))["error"]
        results.append(BulkResult(ticket_id=outcome.ticket_id, ok=False, error=error))
    return results


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
