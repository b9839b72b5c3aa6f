"""The desk around the queue: a likely category and the customer's name for the inbox, the
customer panel of a ticket (identity, VIP and who set it, conversations), the agents a
ticket can go to, and bulk actions on the ticked tickets (``autoreply.desk.bulk``: each
ticket under the single-ticket ownership rules, refusals listed ticket by ticket)."""

from __future__ import annotations

import asyncio
import weakref
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, Response

from autoreply.console.i18n import Translator, pick_language
from autoreply.console.render import field, page, read_form, redirect, state_of
from autoreply.console.sessions import Session, SessionDep
from autoreply.desk import Bulk, bulk
from autoreply.errors import AutoreplyError
from autoreply.models import Ticket

router = APIRouter(prefix="/console", include_in_schema=False)

FILING_CONFIDENCE = 0.5
_GUESSES: weakref.WeakKeyDictionary[Any, dict[int, str]] = weakref.WeakKeyDictionary()
"""Per engine (a reload starts afresh): ticket id -> the category guessed for it."""


def likely_categories(request: Request, tickets: list[Ticket]) -> dict[int, str]:
    """A business category for each ticket the bot filed under none (it only files one it is
    fairly sure of, and a request for a person or a complaint skips the search). In order:
    the nearest entry the bot considered, the entry it last answered from, a fresh search of
    the question; the first and last only as sure as the bot's own filing. Guesses are
    cached per engine, so the polling inbox searches each question once."""
    bot = state_of(request).bot
    kb, engine = bot.kb, bot.engine
    cache = _GUESSES.setdefault(engine, {})
    out: dict[int, str] = {}
    todo: list[Ticket] = []
    for ticket in tickets:
        if ticket.category:
            continue
        if ticket.id in cache:
            out[ticket.id] = cache[ticket.id]
            continue
        ids = [
            str(c.get("entry_id"))
            for c in ticket.context.get("candidates", [])[:1]
            if isinstance(c, dict) and (c.get("confidence") or 0) >= FILING_CONFIDENCE
        ]
        ids += [str(a.get("entry_id")) for a in reversed(ticket.context.get("attempts", []))]
        found = next((kb.get(i).category for i in ids if i in kb), None)
        if found is not None:
            cache[ticket.id] = out[ticket.id] = found
        elif str(ticket.context.get("question", "")).strip():
            todo.append(ticket)
    if todo:
        try:
            ranked = engine.rank([str(t.context["question"]) for t in todo], k=1)
        except AutoreplyError:
            ranked = [[] for _ in todo]
        for ticket, candidates in zip(todo, ranked, strict=True):
            # As sure as the bot must be to file a ticket under a category itself.
            sure = candidates and candidates[0].confidence >= FILING_CONFIDENCE
            cache[ticket.id] = out[ticket.id] = candidates[0].category if sure else ""
    if len(cache) > 10_000:
        cache.clear()
    return out


def customer_name(ticket: Ticket) -> str:
    """The customer's name as the channel stated it (trusted metadata only), else ''."""
    metadata = ticket.context.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return str(name).strip()[:80] if name else ""


def transfer_targets(request: Request, session: Session) -> list[str]:
    """Agents who can take a ticket over: enabled, token not expired, not oneself."""
    now = datetime.now(UTC)
    return [
        a.name
        for a in state_of(request).bot.store.list_agents()
        if not a.disabled and not a.expired(now) and a.name != session.agent
    ]


def profile(request: Request, ticket: Ticket, tickets: list[Ticket]) -> dict[str, Any]:
    """The customer panel: channel identity (from trusted metadata only), VIP and who set
    it (an admin on the VIP list, else the channel), earlier conversations."""
    store = state_of(request).bot.store
    metadata = ticket.context.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    who = (ticket.channel, ticket.user_id)
    listed = next((v for v in store.list_vips() if (v.channel, v.user_id) == who), None)
    vip_by = None
    if listed is not None:
        vip_by = listed.added_by
    elif ticket.vip:
        vip_by = "channel"
    conversations: dict[str, Ticket] = {}
    for other in sorted(tickets, key=lambda x: x.id):
        conversations.setdefault(other.conversation_id, other)
    return {
        "identity": {
            k: str(metadata[k])[:200]
            for k in ("name", "customer_id", "email", "phone")
            if metadata.get(k)
        },
        "vip": listed is not None or ticket.vip,
        "vip_by": vip_by,
        "vip_note": listed.note if listed is not None else None,
        "conversations": list(conversations.values()),
    }


@router.post("/inbox/bulk")
@page
async def inbox_bulk(request: Request, session: SessionDep) -> Response:
    """One action on the ticked tickets (``ticket`` fields): claim, transfer (``to``),
    resolve or tag (``tags``), each under the single-ticket rules; what was refused is
    listed ticket by ticket."""
    form = await read_form(request, session)
    state = state_of(request)
    t = Translator(pick_language(request))
    back = _safe_inbox(field(form, "back"))
    try:
        action = Bulk(field(form, "action"))
        ids = [int(x) for x in form.getlist("ticket") if isinstance(x, str) and x.isdigit()]
        tags = [x for x in field(form, "tags").replace("，", ",").split(",") if x.strip()]
        outcomes = await asyncio.to_thread(
            bulk,
            state.bot,
            action,
            ids,
            agent=session.agent or "",
            to=field(form, "to") or None,
            tags=tags,
        )
    except ValueError:
        session.flash("error", t("bulk_pick_action"))
        return redirect(back)
    except AutoreplyError as exc:
        session.flash("error", str(exc))
        return redirect(back)
    done = [o for o in outcomes if o.error is None]
    for outcome in done:
        if action is Bulk.RESOLVE and outcome.ticket is not None:
            state.channels.resolved(outcome.ticket)
    session.flash("ok", t("bulk_done", action=t(action.value), n=len(done)))
    for outcome in outcomes:
        if outcome.error is not None:
            session.flash("error", f"#{outcome.ticket_id}: {outcome.error}")
    return redirect(back)


def _safe_inbox(target: str) -> str:
    """Back to the inbox with its filters; nothing but an inbox path."""
    ok = target.startswith("/console/inbox") and "//" not in target
    return target if ok else "/console/inbox"
