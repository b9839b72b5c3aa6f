"""The agent desk's actions on several tickets at once, shared by the agent API and the
console: claim, transfer, resolve or tag a selection.

Each ticket is done on its own, through the same AutoReply and store methods as the
single-ticket actions, so the ownership rules hold ticket by ticket (a ticket someone else
holds is not claimed; only its owner transfers or resolves it) and one refusal does not undo
or stop the others. The caller tells the channels about the tickets that were resolved.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from autoreply.errors import AutoreplyError, ConflictError
from autoreply.models import Ticket
from autoreply.service import AutoReply
from autoreply.store import clean_tags

MAX_TICKETS = 200


class Bulk(StrEnum):
    CLAIM = "claim"
    TRANSFER = "transfer"
    RESOLVE = "resolve"
    TAG = "tag"


@dataclass(frozen=True)
class Outcome:
    """One ticket's result: ``error`` is None when the action was done."""

    ticket_id: int
    error: AutoreplyError | None = None
    ticket: Ticket | None = None


def bulk(
    bot: AutoReply,
    action: Bulk,
    ticket_ids: Sequence[int],
    *,
    agent: str,
    to: str | None = None,
    tags: Sequence[str] = (),
    resolution: str | None = None,
) -> list[Outcome]:
    """Do ``action`` as ``agent`` on each ticket (each id once, in the given order).

    ConflictError before anything is done when the selection is empty or over
    ``MAX_TICKETS``, a transfer names no enabled, unexpired agent, or tagging has no valid
    tags (naming the bad one)."""
    ids = list(dict.fromkeys(ticket_ids))
    if not ids or len(ids) > MAX_TICKETS:
        raise ConflictError(f"ticket_ids: select 1-{MAX_TICKETS} tickets")
    cleaned: list[str] = []
    if action is Bulk.TRANSFER:
        target = bot.store.get_agent((to or "").strip()) if (to or "").strip() else None
        if target is None:
            raise ConflictError("to: name the agent who takes the tickets over")
        if target.disabled or target.expired(datetime.now(UTC)):
            raise ConflictError(f"to: agent '{target.name}' cannot sign in; pick someone else")
    if action is Bulk.TAG:
        cleaned = clean_tags(list(tags))
        if not cleaned:
            raise ConflictError("tags: give at least one tag")
    out: list[Outcome] = []
    for ticket_id in ids:
        try:
            if action is Bulk.CLAIM:
                ticket = bot.claim(ticket_id, agent)
            elif action is Bulk.TRANSFER:
                ticket = bot.transfer(ticket_id, agent=agent, to_agent=str(to).strip())
            elif action is Bulk.RESOLVE:
                ticket = bot.resolve(ticket_id, agent=agent, resolution=resolution)
            else:
                bot.store.tag_ticket(ticket_id, cleaned, agent=agent)
                ticket = bot.store.get_ticket(ticket_id)
        except AutoreplyError as exc:
            out.append(Outcome(ticket_id, error=exc))
        else:
            out.append(Outcome(ticket_id, ticket=ticket))
    return out
