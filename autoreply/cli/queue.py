"""The human queue: ``autoreply queue list | claim | reply | transfer | resolve | promote``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from autoreply.cli.common import AgentOpt, DbOpt, JsonOpt, enum_option, open_store, out, print_json

if TYPE_CHECKING:
    from autoreply.models import Ticket

queue_app = typer.Typer(help="Work the human queue: list, claim, reply, resolve, promote.")


def queue_table(tickets: list[Ticket]) -> None:
    table = Table("#", "status", "priority", "reason", "owner", "user", "question", title="queue")
    for t in tickets:
        table.add_row(
            str(t.id),
            t.status.value,
            t.priority.value,
            t.reason.value,
            t.owner or "",
            t.user_id + (" (VIP)" if t.vip else ""),
            str(t.context.get("question", ""))[:60],
        )
    out.print(table)


@queue_app.command("list")
def queue_list(
    db: DbOpt = None,
    status: Annotated[str | None, typer.Option(help="open, claimed or resolved")] = None,
    mine: Annotated[str | None, typer.Option("--mine", help="Only this agent's tickets.")] = None,
    priority: Annotated[str | None, typer.Option(help="low, normal, high, urgent")] = None,
    category: Annotated[str | None, typer.Option(help="Category path prefix.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List tickets, most urgent and oldest first.

    Example:  autoreply queue list --status open
    """
    from autoreply.models import Priority, TicketStatus

    st = enum_option(TicketStatus, status, "--status")
    pr = enum_option(Priority, priority, "--priority")
    store = open_store(db)
    try:
        tickets = store.list_tickets(status=st, owner=mine, priority=pr, category=category)
    finally:
        store.close()
    if as_json:
        print_json([t.model_dump(mode="json") for t in tickets])
    else:
        queue_table(tickets)


@queue_app.command("claim")
def queue_claim(ticket: int, agent: AgentOpt, db: DbOpt = None) -> None:
    """Claim a ticket: you own it until it is resolved or you transfer it.

    Example:  autoreply queue claim 3 --agent alice
    """
    _ticket_action(
        db, lambda s: s.claim_ticket(ticket, agent), f"ticket #{ticket} claimed by {agent}"
    )


@queue_app.command("reply")
def queue_reply(
    ticket: int,
    text: Annotated[str, typer.Argument(help="Your reply.")],
    agent: AgentOpt,
    db: DbOpt = None,
) -> None:
    """Reply to the customer of a ticket you own (an open ticket is claimed first).

    Example:  autoreply queue reply 3 "Refunds take 3-5 days." --agent alice
    """
    _ticket_action(
        db, lambda s: s.agent_reply(ticket, agent=agent, text=text), f"replied on #{ticket}"
    )


@queue_app.command("transfer")
def queue_transfer(
    ticket: int,
    to: Annotated[str, typer.Option(help="New owner.")],
    agent: AgentOpt,
    db: DbOpt = None,
) -> None:
    """Hand a ticket you own to another agent.

    Example:  autoreply queue transfer 3 --to bob --agent alice
    """
    _ticket_action(
        db,
        lambda s: s.transfer_ticket(ticket, agent=agent, to_agent=to),
        f"ticket #{ticket} transferred to {to}",
    )


@queue_app.command("resolve")
def queue_resolve(
    ticket: int,
    agent: AgentOpt,
    db: DbOpt = None,
    resolution: Annotated[str | None, typer.Option(help="Default: your last reply.")] = None,
) -> None:
    """Resolve a ticket you own.

    Example:  autoreply queue resolve 3 --agent alice
    """
    _ticket_action(
        db,
        lambda s: s.resolve_ticket(ticket, agent=agent, resolution=resolution),
        f"ticket #{ticket} resolved",
    )


@queue_app.command("promote")
def queue_promote(
    ticket: int,
    agent: AgentOpt,
    db: DbOpt = None,
    question: Annotated[str | None, typer.Option(help="Default: the customer's question.")] = None,
    answer: Annotated[str | None, typer.Option(help="Default: the resolution.")] = None,
    category: Annotated[str | None, typer.Option(help="Default: the ticket's category.")] = None,
) -> None:
    """Propose a resolved ticket's answer as a new FAQ entry (a candidate for review).

    Example:  autoreply queue promote 3 --agent alice --category billing/refunds
    """
    _ticket_action(
        db,
        lambda s: s.promote(
            ticket, agent=agent, question=question, answer=answer, category=category
        ),
        f"ticket #{ticket} promoted to an FAQ candidate",
    )


def _ticket_action(db: str | None, action: Any, done: str) -> None:
    store = open_store(db)
    try:
        result = action(store)
    finally:
        store.close()
    out.print(
        done + (f" (candidate #{result.id})" if type(result).__name__ == "FAQCandidate" else "")
    )
