"""Talking to the bot: ``autoreply ask``, ``chat`` and ``demo``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from autoreply.cli.common import (
    DbOpt,
    JsonOpt,
    KnowledgeOpt,
    load_settings,
    open_bot,
    out,
    print_json,
)

if TYPE_CHECKING:
    from autoreply.models import Reply


def show_reply(reply: Reply, *, top: int = 3) -> None:
    colour = {"answer": "green", "clarify": "yellow", "escalate": "red"}[reply.decision.value]
    out.print(
        f"[bold {colour}]{reply.decision.value}[/] ({reply.reason.value}) "
        f"confidence {reply.confidence:.2f}"
        + (f"  entry [cyan]{reply.entry_id}[/]" if reply.entry_id else "")
        + (f"  ticket #{reply.ticket_id}" if reply.ticket_id else "")
        + (f"  gap #{reply.gap_id}" if reply.gap_id else "")
    )
    out.print(reply.text, markup=False, highlight=False)
    if reply.candidates and top:
        table = Table("#", "entry", "question", "confidence", box=None, pad_edge=False)
        for i, c in enumerate(reply.candidates[:top], 1):
            table.add_row(str(i), c.entry_id, c.question, f"{c.confidence:.2f}")
        out.print(table)


def ask(
    text: Annotated[str, typer.Argument(help="The customer's question.")],
    knowledge: KnowledgeOpt = None,
    db: DbOpt = None,
    user: Annotated[str, typer.Option(help="Customer id.")] = "cli-user",
    channel: Annotated[str, typer.Option(help="Channel name.")] = "cli",
    vip: Annotated[bool, typer.Option("--vip", help="Treat the customer as VIP.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Ask one question: prints the decision, the answer, the confidence and the top 3.

    Example:  autoreply ask "怎麼退款"
    """
    from autoreply.models import Message

    with open_bot(knowledge, db) as bot:
        reply = bot.handle(Message(text=text, user_id=user, channel=channel, metadata={"vip": vip}))
    if as_json:
        print_json(reply.model_dump(mode="json"))
    else:
        show_reply(reply)


def chat(
    knowledge: KnowledgeOpt = None,
    db: DbOpt = None,
    user: Annotated[str, typer.Option(help="Customer id.")] = "cli-user",
) -> None:
    """Talk to the bot interactively (one conversation). Reply with a number to pick a
    "did you mean" option. Ctrl-D or /quit ends.

    Example:  autoreply chat --knowledge knowledge/
    """
    import uuid

    from autoreply.models import Message

    conversation = f"chat-{uuid.uuid4().hex[:8]}"
    last_options: list[str] = []
    with open_bot(knowledge, db) as bot:
        out.print(f"[dim]conversation {conversation}; /quit to leave[/]")
        while True:
            try:
                text = input("you> ")
            except (EOFError, KeyboardInterrupt):
                out.print()
                break
            if text.strip() in ("/quit", "/exit"):
                break
            metadata: dict[str, Any] = {}
            if text.strip().isdigit() and 0 < int(text) <= len(last_options):
                metadata["picked"] = last_options[int(text) - 1]
            reply = bot.handle(
                Message(
                    text=text,
                    user_id=user,
                    conversation_id=conversation,
                    channel="cli",
                    metadata=metadata,
                )
            )
            last_options = (
                [c.entry_id for c in reply.candidates] if reply.decision.value == "clarify" else []
            )
            show_reply(reply, top=0)


def demo(
    db: Annotated[
        str | None, typer.Option("--db", help="Database [default: a fresh temporary one]")
    ] = None,
) -> None:
    """Run a scripted conversation on the bundled demo knowledge base: an answer, a
    clarification, an escalation into the queue and a logged gap; then the queue and gaps.

    Example:  autoreply demo
    """
    import tempfile

    from autoreply.cli.gaps import gaps_table
    from autoreply.cli.queue import queue_table
    from autoreply.knowledge import bundled_knowledge_dir
    from autoreply.service import AutoReply

    script = [
        ("alice", "怎麼退款？"),
        ("bob", "How do I reset my password?"),
        ("carol", "password"),
        ("dave", "我要转人工"),
        ("erin", "你们的火箭几点发射"),
        ("frank", "This is a scam!!! I want to complain"),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        url = db or str(Path(tmp) / "demo.db")
        settings = load_settings(bundled_knowledge_dir() / "demo", url)
        out.print(f"[dim]knowledge base: {settings.knowledge}   database: {url}[/]")
        with AutoReply.from_settings(settings) as bot:
            out.print(
                f"[dim]index: {bot.engine.index.info.status}, "
                f"{len(bot.kb.enabled)} entries, {bot.engine.index.info.texts} texts[/]\n"
            )
            for user, text in script:
                out.rule(f"[bold]{user}[/]: {text}", align="left")
                show_reply(bot.handle(text, user_id=user, channel="demo"))
                out.print()
            counts = bot.store.counts()
            queue_table(bot.store.list_tickets())
            gaps_table(bot.store.list_gaps(limit=20))
        out.print(
            f"queue: {counts['tickets_open']} open, {counts['tickets_claimed']} claimed; "
            f"gaps logged: {counts['gaps']}; messages: {counts['messages']}"
        )


def register(app: typer.Typer) -> None:
    """Add ``ask``, ``chat`` and ``demo``."""
    app.command()(ask)
    app.command()(chat)
    app.command()(demo)
