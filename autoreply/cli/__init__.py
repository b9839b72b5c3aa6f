"""The ``autoreply`` command line. Thin: every command calls the library and prints.

Errors are one line on stderr with exit code 1 (2 for usage errors), never a traceback.
Heavy modules are imported inside commands so that ``autoreply --help`` and ``ask`` start fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from autoreply.cli.eval import register as register_eval
from autoreply.cli.gaps import register as register_gaps
from autoreply.cli.learn import register as register_learn
from autoreply.cli.server import register as register_service

if TYPE_CHECKING:
    from autoreply.models import Reply, Ticket
    from autoreply.service import AutoReply
    from autoreply.settings import Settings

app = typer.Typer(
    help="autoreply: FAQ auto-reply for customer service. Answers what it knows, hands the "
    "rest to a person, logs what nobody has answered yet.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
queue_app = typer.Typer(help="Work the human queue: list, claim, reply, resolve, promote.")
gaps_app = typer.Typer(help="Questions the bot could not answer (FAQ gaps).")
index_app = typer.Typer(help="Build the vector index ahead of time.")
app.add_typer(queue_app, name="queue")
app.add_typer(gaps_app, name="gaps")
app.add_typer(index_app, name="index")

out = Console()
err = Console(stderr=True)

KnowledgeOpt = Annotated[
    Path | None,
    typer.Option(
        "--knowledge", "-k", help="FAQ file or folder [default: ./knowledge, else the bundled demo]"
    ),
]
DbOpt = Annotated[
    str | None, typer.Option("--db", help="Database URL or SQLite file [default: autoreply.db]")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
AgentOpt = Annotated[str, typer.Option("--agent", "-a", help="Your agent name.")]


def _settings(knowledge: Path | None = None, db: str | None = None) -> Settings:
    from autoreply.settings import Settings

    return Settings().with_overrides(knowledge=knowledge, db=db)


def _bot(knowledge: Path | None, db: str | None) -> AutoReply:
    from autoreply.service import AutoReply

    return AutoReply.from_settings(_settings(knowledge, db))


def _store(db: str | None) -> Any:
    from autoreply.store import open_store

    return open_store(_settings(db=db).db)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")


def _show_reply(reply: Reply, *, top: int = 3) -> None:
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


# -- conversation ---------------------------------------------------------------------------
@app.command()
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

    with _bot(knowledge, db) as bot:
        reply = bot.handle(Message(text=text, user_id=user, channel=channel, metadata={"vip": vip}))
    if as_json:
        _print_json(reply.model_dump(mode="json"))
    else:
        _show_reply(reply)


@app.command()
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
    with _bot(knowledge, db) as bot:
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
            _show_reply(reply, top=0)


@app.command()
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
        settings = _settings(bundled_knowledge_dir() / "demo", url)
        out.print(f"[dim]knowledge base: {settings.knowledge}   database: {url}[/]")
        with AutoReply.from_settings(settings) as bot:
            out.print(
                f"[dim]index: {bot.engine.index.info.status}, "
                f"{len(bot.kb.enabled)} entries, {bot.engine.index.info.texts} texts[/]\n"
            )
            for user, text in script:
                out.rule(f"[bold]{user}[/]: {text}", align="left")
                _show_reply(bot.handle(text, user_id=user, channel="demo"))
                out.print()
            counts = bot.store.counts()
            _queue_table(bot.store.list_tickets())
            _gaps_table(bot.store.list_gaps(limit=20))
        out.print(
            f"queue: {counts['tickets_open']} open, {counts['tickets_claimed']} claimed; "
            f"gaps logged: {counts['gaps']}; messages: {counts['messages']}"
        )


# -- knowledge ------------------------------------------------------------------------------
@app.command()
def check(
    path: Annotated[Path | None, typer.Argument(help="FAQ file or folder.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Validate a knowledge base: every problem with file:line and field, and conflicts
    (two entries sharing a question). Exit code 1 if anything is wrong.

    Example:  autoreply check knowledge/
    """
    from autoreply.errors import KnowledgeInvalid
    from autoreply.knowledge import load_knowledge
    from autoreply.service import resolve_knowledge_path

    target = resolve_knowledge_path(path or _settings().knowledge)
    try:
        kb = load_knowledge(target)
    except KnowledgeInvalid as exc:
        if as_json:
            _print_json({"ok": False, "problems": [p.to_dict() for p in exc.problems]})
        else:
            for problem in exc.problems:
                err.print(problem.render(), markup=False, highlight=False)
            err.print(f"[red]{len(exc.problems)} problem(s)[/]")
        raise typer.Exit(1) from None
    conflicts = [c.render() for c in kb.conflicts]
    if as_json:
        _print_json(
            {
                "ok": not conflicts,
                "entries": len(kb.entries),
                "enabled": len(kb.enabled),
                "categories": kb.categories(),
                "conflicts": conflicts,
                "files": list(kb.sources),
            }
        )
    else:
        for line in conflicts:
            err.print(f"conflict: {line}", markup=False, highlight=False)
        texts = sum(len(e.texts) for e in kb.enabled)
        out.print(
            f"{target}: {len(kb.entries)} entries ({len(kb.enabled)} enabled, {texts} texts) "
            f"in {len(kb.sources)} file(s), {len(kb.categories())} categories, "
            f"{len(conflicts)} conflict(s)"
        )
    if conflicts:
        raise typer.Exit(1)


@index_app.command("build")
def index_build(knowledge: KnowledgeOpt = None, as_json: JsonOpt = False) -> None:
    """Encode the knowledge base and save the index in the cache folder (reused by every
    later command while the knowledge base and encoder stay the same).

    Example:  autoreply index build --knowledge knowledge/
    """
    from autoreply.service import build_engine

    settings = _settings(knowledge)
    info = build_engine(settings).index.info
    data = {
        "status": info.status,
        "texts": info.texts,
        "encoded": info.encoded,
        "seconds": round(info.seconds, 3),
        "folder": str(info.folder),
    }
    if as_json:
        _print_json(data)
    else:
        out.print(
            f"index {info.status}: {info.texts} texts, {info.encoded} encoded, "
            f"{info.seconds:.2f}s → {info.folder}"
        )


# -- queue ----------------------------------------------------------------------------------
def _queue_table(tickets: list[Ticket]) -> None:
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

    st = _enum(TicketStatus, status, "--status")
    pr = _enum(Priority, priority, "--priority")
    store = _store(db)
    try:
        tickets = store.list_tickets(status=st, owner=mine, priority=pr, category=category)
    finally:
        store.close()
    if as_json:
        _print_json([t.model_dump(mode="json") for t in tickets])
    else:
        _queue_table(tickets)


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
    store = _store(db)
    try:
        result = action(store)
    finally:
        store.close()
    out.print(
        done + (f" (candidate #{result.id})" if type(result).__name__ == "FAQCandidate" else "")
    )


def _enum(kind: Any, value: str | None, option: str) -> Any:
    if value is None:
        return None
    try:
        return kind(value)
    except ValueError:
        known = ", ".join(m.value for m in kind)
        raise typer.BadParameter(f"'{value}' is not one of: {known}", param_hint=option) from None


# -- gaps -----------------------------------------------------------------------------------
def _gaps_table(gaps: list[Any]) -> None:
    table = Table("#", "when", "reason", "question", "nearest entry", "score", title="FAQ gaps")
    for g in gaps:
        table.add_row(
            str(g.id),
            g.created_at.strftime("%Y-%m-%d %H:%M"),
            g.reason.value,
            g.question[:70],
            g.best_entry_id or "",
            f"{g.best_score:.2f}" if g.best_score is not None else "",
        )
    out.print(table)


@gaps_app.command("list")
def gaps_list(
    db: DbOpt = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List logged FAQ gaps (personal data already redacted), newest first.

    Example:  autoreply gaps list --limit 20
    """
    store = _store(db)
    try:
        gaps = store.list_gaps(limit=limit)
    finally:
        store.close()
    if as_json:
        _print_json([g.model_dump(mode="json") for g in gaps])
    else:
        _gaps_table(gaps)


@app.command()
def config(
    markdown: Annotated[bool, typer.Option("--markdown", help="Print a Markdown table.")] = False,
) -> None:
    """List every setting with its environment variable, default and meaning. Settings come
    from keyword arguments, AUTOREPLY_* variables, then autoreply.toml (or $AUTOREPLY_CONFIG).

    Example:  autoreply config --markdown
    """
    from autoreply.settings import settings_rows

    rows = settings_rows()
    if markdown:
        out.print("| variable | default | meaning |\n|---|---|---|", markup=False)
        for env, default, description in rows:
            cell = default.replace("|", "\\|")
            out.print(f"| `{env}` | `{cell}` | {description} |", markup=False, soft_wrap=True)
        return
    table = Table("variable", "default", "meaning")
    for row in rows:
        table.add_row(*row)
    out.print(table)


register_eval(app)
register_service(app)
register_gaps(app, gaps_app)
register_learn(app)


def main() -> None:
    """Entry point: run the app, turning autoreply errors into one line and exit code 1."""
    from autoreply.errors import AutoreplyError

    try:
        app()
    except AutoreplyError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        sys.exit(1)
