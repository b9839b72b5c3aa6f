"""The agent's pages: the inbox (queue with filters, live rows) and one ticket (conversation,
handoff payload, earlier tickets, claim / transfer / resolve / reply / promote).

Actions go through the same AutoReply methods as the API, so the store's ownership rules
hold: an error (someone else's ticket, a resolved one) is shown on the ticket page. A reply
is checked against the prohibited phrases as the agent types (``POST /console/check``) and
again on the server when sent: a match is refused, recorded and counted like the API does.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from autoreply.console.i18n import Translator, pick_language
from autoreply.console.render import (
    SLA_MINUTES,
    field,
    page,
    read_form,
    redirect,
    render,
    secure,
    sla,
    state_of,
    waited,
)
from autoreply.console.sessions import CsrfFailed, Session, SessionDep, check_csrf
from autoreply.errors import AutoreplyError, ConflictError
from autoreply.models import Priority, Role, Ticket, TicketStatus
from autoreply.web.batching import in_own_thread

log = logging.getLogger("autoreply.console")
router = APIRouter(prefix="/console", include_in_schema=False)

_ORDER = {Priority.URGENT: 0, Priority.HIGH: 1, Priority.NORMAL: 2, Priority.LOW: 3}
STATUSES = ("active", "open", "claimed", "resolved", "all")


def queue(
    request: Request,
    session: Session,
    *,
    status: str,
    mine: bool,
    priority: str,
    category: str,
    vip: bool,
) -> list[Ticket]:
    """The tickets the filters select, most urgent then oldest first."""
    store = state_of(request).bot.store
    wanted: list[TicketStatus | None]
    if status == "active":
        wanted = [TicketStatus.OPEN, TicketStatus.CLAIMED]
    elif status in ("open", "claimed", "resolved"):
        wanted = [TicketStatus(status)]
    else:
        wanted = [None]
    level = Priority(priority) if priority in Priority.__members__.values() else None
    tickets = [
        ticket
        for st in wanted
        for ticket in store.list_tickets(
            status=st,
            owner=session.agent if mine else None,
            priority=level,
            category=category or None,
            limit=200,
        )
        if ticket.vip or not vip
    ]
    tickets.sort(key=lambda x: (_ORDER[x.priority], x.created_at, x.id))
    return tickets[:200]


def rows(request: Request, tickets: list[Ticket]) -> list[dict[str, Any]]:
    t = Translator(pick_language(request))
    now = datetime.now(UTC)
    out = []
    for ticket in tickets:
        kind, label = sla(ticket, t, now)
        out.append(
            {
                "ticket": ticket,
                "question": str(ticket.context.get("question", "")),
                "waiting": t.duration(waited(ticket, now)),
                "sla_kind": kind,
                "sla_label": label,
            }
        )
    return out


Filters = dict[str, Any]


def _filters(status: str, mine: bool, priority: str, category: str, vip: bool) -> Filters:
    return {
        "status": status if status in STATUSES else "active",
        "mine": mine,
        "priority": priority,
        "category": category.strip(),
        "vip": vip,
    }


@router.get("/inbox")
def inbox(
    request: Request,
    session: SessionDep,
    status: str = "active",
    mine: bool = False,
    priority: str = "",
    category: str = "",
    vip: bool = False,
) -> Response:
    filters = _filters(status, mine, priority, category, vip)
    tickets = queue(request, session, **filters)
    return render(
        request,
        "inbox.html",
        session=session,
        filters=filters,
        rows=rows(request, tickets),
        statuses=STATUSES,
        priorities=[p.value for p in Priority],
        categories=list(state_of(request).bot.kb.categories()),
        sla_minutes=SLA_MINUTES,
        updated=datetime.now(UTC),
    )


@router.get("/inbox/rows")
def inbox_rows(
    request: Request,
    session: SessionDep,
    status: str = "active",
    mine: bool = False,
    priority: str = "",
    category: str = "",
    vip: bool = False,
) -> Response:
    """The queue's table body alone: the inbox polls it for live updates."""
    filters = _filters(status, mine, priority, category, vip)
    tickets = queue(request, session, **filters)
    return render(
        request, "_rows.html", session=None, rows=rows(request, tickets), updated=datetime.now(UTC)
    )


@router.get("/tickets/{ticket_id}")
@page
async def ticket_page(request: Request, ticket_id: int, session: SessionDep) -> Response:
    state = state_of(request)
    store = state.bot.store
    ticket = await asyncio.to_thread(store.get_ticket, ticket_id)
    conversation = await asyncio.to_thread(store.history, ticket.conversation_id)
    earlier = [
        x
        for x in await asyncio.to_thread(store.list_tickets, user_id=ticket.user_id, limit=1000)
        if x.id != ticket_id
    ]
    earlier.sort(key=lambda x: x.id, reverse=True)
    agents = [a.name for a in store.list_agents() if not a.disabled and a.name != session.agent]
    t = Translator(pick_language(request))
    kind, label = sla(ticket, t)
    customer_texts = [m.text for m in conversation if m.role is Role.CUSTOMER]
    asked = customer_texts[-1] if customer_texts else str(ticket.context.get("question", ""))
    return render(
        request,
        "ticket.html",
        session=session,
        ticket=ticket,
        context=ticket.context,
        conversation=conversation,
        earlier=earlier[:20],
        deliveries=store.list_deliveries(ticket_id=ticket_id),
        agents=agents,
        scripts=await _scripts(request, asked, ticket.context),
        draft=session.drafts.pop(ticket_id, ""),
        sla_kind=kind,
        sla_label=label,
        waiting=t.duration(waited(ticket)),
        categories=list(state.bot.kb.categories()),
        mine=ticket.owner == session.agent,
    )


async def _scripts(request: Request, question: str, context: dict[str, Any]) -> list[Any]:
    """The FAQ entries whose answers best fit the customer's question (话术), best first:
    the entries the bot considered at escalation, then a fresh search of the question."""
    bot = state_of(request).bot
    kb = bot.kb
    ids: list[str] = [str(c.get("entry_id")) for c in context.get("candidates", [])]
    if question.strip():
        try:
            ranked = await in_own_thread(
                lambda: bot.engine.rank([question], k=5)[0], name="autoreply-console"
            )
        except AutoreplyError:
            ranked = []
        ids += [c.entry_id for c in ranked]
    seen: list[str] = []
    for entry_id in ids:
        if entry_id in kb and entry_id not in seen and kb.get(entry_id).enabled:
            seen.append(entry_id)
    return [kb.get(entry_id) for entry_id in seen[:5]]


async def _act(request: Request, session: Session, ticket_id: int, action: str) -> Response:
    form = await read_form(request, session)
    state = state_of(request)
    bot = state.bot
    t = Translator(pick_language(request))
    agent = session.agent or ""
    try:
        if action == "claim":
            await asyncio.to_thread(bot.claim, ticket_id, agent)
            session.flash("ok", t("claimed_ok", id=ticket_id))
        elif action == "transfer":
            target = await asyncio.to_thread(bot.store.get_agent, field(form, "to"))
            if target.disabled:
                raise ConflictError(f"agent '{target.name}' is disabled; transfer to someone else")
            await asyncio.to_thread(bot.transfer, ticket_id, agent=agent, to_agent=target.name)
            session.flash("ok", t("transferred_ok", id=ticket_id, to=target.name))
        elif action == "resolve":
            resolution = field(form, "resolution").strip() or None
            ticket = await asyncio.to_thread(
                bot.resolve, ticket_id, agent=agent, resolution=resolution
            )
            state.channels.resolved(ticket)
            session.flash("ok", t("resolved_ok", id=ticket_id))
        elif action == "promote":
            candidate = await asyncio.to_thread(
                bot.promote,
                ticket_id,
                agent=agent,
                question=field(form, "question").strip() or None,
                answer=field(form, "answer").strip() or None,
                category=field(form, "category").strip() or None,
            )
            session.flash("ok", t("promoted_ok", id=candidate.id))
        elif action == "reply":
            await _reply(request, session, ticket_id, field(form, "text"))
    except AutoreplyError as exc:
        session.flash("error", str(exc))
    return redirect(f"/console/tickets/{ticket_id}")


async def _reply(request: Request, session: Session, ticket_id: int, text: str) -> None:
    state = state_of(request)
    bot = state.bot
    t = Translator(pick_language(request))
    agent = session.agent or ""
    if not text.strip():
        session.flash("error", "the reply is empty; write something first")
        return
    state.check_text(text)
    phrase = prohibited_phrase(request, text)
    if phrase is not None:
        await asyncio.to_thread(
            bot.store.add_interception, agent=agent, ticket_id=ticket_id, phrase=phrase
        )
        state.metrics.interceptions.labels(phrase).inc()
        log.warning(
            "reply intercepted", extra={"agent": agent, "ticket_id": ticket_id, "phrase": phrase}
        )
        session.drafts[ticket_id] = text
        session.flash("error", t("prohibited_refused", phrase=phrase))
        return
    message = await asyncio.to_thread(bot.reply, ticket_id, agent=agent, text=text)
    ticket = await asyncio.to_thread(bot.store.get_ticket, ticket_id)
    delivery = await state.channels.deliver(ticket, message)
    session.flash("ok", t("sent", status=delivery.status.value))


def prohibited_phrase(request: Request, text: str) -> str | None:
    prohibited = state_of(request).bot.kb.phrases.get("prohibited")
    return prohibited.find(text) if prohibited is not None else None


@router.post("/tickets/{ticket_id}/{action}")
@page
async def ticket_action(
    request: Request, ticket_id: int, action: str, session: SessionDep
) -> Response:
    if action not in ("claim", "transfer", "resolve", "promote", "reply"):
        return secure(Response("unknown action", status_code=404, media_type="text/plain"))
    return await _act(request, session, ticket_id, action)


@router.post("/check")
async def check_reply(request: Request, session: SessionDep) -> Response:
    """``{"phrase": "..."}`` when the draft contains a prohibited phrase, else null. Called
    as the agent types (JSON body ``{"text": ...}``, header ``X-CSRF-Token``)."""
    try:
        check_csrf(session, request.headers.get("x-csrf-token"))
        body = await request.json()
    except (CsrfFailed, ValueError):
        return secure(JSONResponse({"error": "CSRF check failed or not JSON"}, status_code=403))
    text = str(body.get("text", ""))[:20_000] if isinstance(body, dict) else ""
    return secure(JSONResponse({"phrase": prohibited_phrase(request, text)}))
