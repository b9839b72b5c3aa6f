"""The agent's pages: the inbox (queue with search and filters, live rows) and one ticket
(conversation, handoff payload, customer panel, internal notes, tags, earlier tickets, claim /
transfer / resolve / reply / promote / note / tag). Bulk actions and the customer panel are
in ``console/desk.py``.

Actions go through the same AutoReply methods as the API, so the store's ownership rules
hold: an error (someone else's ticket, a resolved one) is shown on the ticket page. A reply
is checked against the prohibited phrases as the agent types (``POST /console/check``) and
again on the server when sent: a match is refused, recorded and counted like the API does.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from autoreply.console.desk import (
    customer_name,
    likely_categories,
    profile,
    transfer_targets,
)
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
from autoreply.desk import Bulk
from autoreply.errors import AutoreplyError, ConflictError
from autoreply.models import Priority, Role, StoredMessage, Ticket, TicketStatus
from autoreply.text import has_han
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
    q: str = "",
    tag: str = "",
    owner: str = "",
    since: str = "",
    until: str = "",
) -> list[Ticket]:
    """The tickets the filters select, most urgent then oldest first. ``q`` searches the
    conversations' text and the customer (id, name); ``since``/``until`` are dates
    (YYYY-MM-DD, inclusive) of the ticket's opening."""
    store = state_of(request).bot.store
    only: set[int] | None = None
    if q:
        only = set(store.search_tickets(q, limit=1000))
    if tag:
        tagged = store.tagged(tag)
        only = tagged if only is None else only & tagged
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
            owner=session.agent if mine else (owner or None),
            priority=level,
            category=category or None,
            limit=1000 if only is not None or since or until else 200,
        )
        if (ticket.vip or not vip) and (only is None or ticket.id in only)
    ]
    start, end = _day(since), _day(until)
    if start is not None:
        tickets = [x for x in tickets if x.created_at >= start]
    if end is not None:
        tickets = [x for x in tickets if x.created_at < end + timedelta(days=1)]
    tickets.sort(key=lambda x: (_ORDER[x.priority], x.created_at, x.id))
    return tickets[:200]


def _day(value: str) -> datetime | None:
    """Midnight UTC of a YYYY-MM-DD date, None when empty or not a date."""
    try:
        return datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC) if value else None
    except ValueError:
        return None


def rows(request: Request, tickets: list[Ticket]) -> list[dict[str, Any]]:
    t = Translator(pick_language(request))
    now = datetime.now(UTC)
    guesses = likely_categories(request, tickets)
    tags = state_of(request).bot.store.tags_of([x.id for x in tickets])
    out = []
    for ticket in tickets:
        kind, label = sla(ticket, t, now)
        out.append(
            {
                "ticket": ticket,
                "question": str(ticket.context.get("question", "")),
                "category": ticket.category or guesses.get(ticket.id, ""),
                "customer": customer_name(ticket),
                "tags": tags.get(ticket.id, []),
                "waiting": t.duration(waited(ticket, now)),
                "sla_kind": kind,
                "sla_label": label,
            }
        )
    return out


Filters = dict[str, Any]


def _filters(
    status: str,
    mine: bool,
    priority: str,
    category: str,
    vip: bool,
    q: str = "",
    tag: str = "",
    owner: str = "",
    since: str = "",
    until: str = "",
) -> Filters:
    return {
        "status": status if status in STATUSES else "active",
        "mine": mine,
        "priority": priority,
        "category": category.strip(),
        "vip": vip,
        "q": q.strip()[:200],
        "tag": tag.strip()[:32],
        "owner": owner.strip()[:64],
        "since": since.strip()[:10],
        "until": until.strip()[:10],
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
    q: str = "",
    tag: str = "",
    owner: str = "",
    since: str = "",
    until: str = "",
) -> Response:
    filters = _filters(status, mine, priority, category, vip, q, tag, owner, since, until)
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
        agents=transfer_targets(request, session),
        bulk_actions=[b.value for b in Bulk],
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
    q: str = "",
    tag: str = "",
    owner: str = "",
    since: str = "",
    until: str = "",
) -> Response:
    """The queue's table body alone: the inbox polls it for live updates."""
    filters = _filters(status, mine, priority, category, vip, q, tag, owner, since, until)
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
    everything = [ticket, *earlier]
    earlier.sort(key=lambda x: x.id, reverse=True)
    agents = transfer_targets(request, session)
    t = Translator(pick_language(request))
    kind, label = sla(ticket, t)
    guess = await in_own_thread(
        lambda: likely_categories(request, [ticket]), name="autoreply-console"
    )
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
        sent_reply=_last_agent_reply(conversation, ticket),
        likely_category=guess.get(ticket.id, ""),
        customer_name=customer_name(ticket),
        notes=await asyncio.to_thread(store.list_notes, ticket_id),
        rating=(await asyncio.to_thread(store.ratings_of, [ticket_id])).get(ticket_id),
        tags=(await asyncio.to_thread(store.tags_of, [ticket_id])).get(ticket_id, []),
        profile=await asyncio.to_thread(profile, request, ticket, everything),
        draft=session.drafts.pop(ticket_id, ""),
        sla_kind=kind,
        sla_label=label,
        waiting=t.duration(waited(ticket)),
        categories=list(state.bot.kb.categories()),
        mine=ticket.owner == session.agent,
    )


def _last_agent_reply(conversation: list[StoredMessage], ticket: Ticket) -> str:
    """What promoting should offer as the answer: the last reply an agent sent the customer
    (what actually helped), else the resolution note."""
    sent = [m.text for m in conversation if m.role is Role.AGENT]
    return sent[-1] if sent else (ticket.resolution or "")


async def _scripts(request: Request, question: str, context: dict[str, Any]) -> list[Any]:
    """The FAQ entries whose answers best fit the customer's question (话术), best first:
    the entries the bot considered at escalation, then a fresh search of the question.
    Only entries in the customer's language (Chinese or not) are offered."""
    bot = state_of(request).bot
    kb = bot.kb
    ids: list[str] = [str(c.get("entry_id")) for c in context.get("candidates", [])]
    if question.strip():
        try:
            ranked = await in_own_thread(
                lambda: bot.engine.rank([question], k=10)[0], name="autoreply-console"
            )
        except AutoreplyError:
            ranked = []
        ids += [c.entry_id for c in ranked]
    wanted = "zh" if has_han(question) else "en"  # as KnowledgeBase.language tells entries
    seen: list[str] = []
    for entry_id in ids:
        if (
            entry_id in kb
            and entry_id not in seen
            and kb.get(entry_id).enabled
            and kb.language(kb.get(entry_id)) == wanted
        ):
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
            if target.expired(datetime.now(UTC)):
                raise ConflictError(
                    f"the token of agent '{target.name}' expired; transfer to someone else"
                )
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
        elif action == "note":
            await asyncio.to_thread(
                bot.store.add_note, ticket_id, agent=agent, text=field(form, "text")
            )
            session.flash("ok", t("note_added"))
        elif action == "tag":
            tags = [x for x in field(form, "tags").replace("，", ",").split(",") if x.strip()]
            await asyncio.to_thread(bot.store.tag_ticket, ticket_id, tags, agent=agent)
            session.flash("ok", t("tagged_ok"))
        elif action == "untag":
            await asyncio.to_thread(bot.store.untag_ticket, ticket_id, field(form, "tag"))
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
    if action not in ("claim", "transfer", "resolve", "promote", "reply", "note", "tag", "untag"):
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
