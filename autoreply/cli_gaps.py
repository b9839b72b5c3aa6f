"""The ``autoreply gaps topics | suggest | accept | dismiss`` and ``autoreply report`` commands.

``register(app, gaps_app)`` adds them to the main Typer app and its ``gaps`` group
(autoreply/cli.py calls it). Heavy modules are imported inside the commands so that
``autoreply --help`` stays fast. accept_suggestion() is the library side of ``gaps accept``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from autoreply.engine import Engine
    from autoreply.knowledge import KnowledgeBase
    from autoreply.models import FAQEntry
    from autoreply.settings import Settings
    from autoreply.store import Store

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
WRITABLE = (".yaml", ".yml", ".json", ".jsonl")


def _settings(knowledge: Path | None, db: str | None) -> Settings:
    from autoreply.settings import Settings

    return Settings().with_overrides(knowledge=knowledge, db=db)


def _open(knowledge: Path | None, db: str | None, *, update: bool = True) -> tuple[Store, Engine]:
    """The store and the engine, with the gap topics brought up to date."""
    from autoreply.gaps import update_topics
    from autoreply.service import build_engine
    from autoreply.store import open_store

    settings = _settings(knowledge, db)
    engine = build_engine(settings)
    store = open_store(settings.db)
    if update:
        try:
            update_topics(store, engine.index)
        except BaseException:
            store.close()
            raise
    return store, engine


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")


def gaps_topics(
    knowledge: KnowledgeOpt = None,
    db: DbOpt = None,
    limit: Annotated[int, typer.Option(help="How many, largest first.")] = 30,
    rebuild: Annotated[
        bool, typer.Option("--rebuild", help="Forget the topics and cluster every gap afresh.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Group the logged FAQ gaps into topics and list them, largest first. New gaps join the
    topic they are closest to; a topic keeps its id for good. Kind 'new' needs a new FAQ entry,
    'near_miss' variants for the entry it names.

    Example:  autoreply gaps topics --limit 20
    """
    from autoreply.gaps import update_topics
    from autoreply.service import build_engine
    from autoreply.store import open_store

    settings = _settings(knowledge, db)
    engine = build_engine(settings)
    store = open_store(settings.db)
    try:
        run = update_topics(store, engine.index, rebuild=rebuild)
        topics = store.gap_topics()[:limit]
    finally:
        store.close()
    if as_json:
        _print_json([t.model_dump(mode="json", exclude={"centroid"}) for t in topics])
        return
    table = Table("id", "kind", "status", "gaps", "last seen", "category", "question", "keywords")
    for t in topics:
        cells = [
            str(t.id),
            t.kind.value + (f" ({t.entry_id})" if t.entry_id else ""),
            t.status.value,
            str(t.size),
            t.last_seen.strftime("%Y-%m-%d"),
            t.category or "",
            t.representative[:60],
            ", ".join(t.keywords),
        ]
        table.add_row(*(escape(c) for c in cells))  # customer text is not rich markup
    out.print(table)
    out.print(
        f"{run.encoded} new gap(s): {run.assigned} joined a topic, {len(run.created)} new "
        f"topic(s), {run.waiting} waiting for similar questions"
    )


def gaps_suggest(
    knowledge: KnowledgeOpt = None,
    db: DbOpt = None,
    limit: Annotated[int, typer.Option(help="How many, largest topic first.")] = 10,
    as_json: JsonOpt = False,
) -> None:
    """Draft FAQ changes from the open gap topics: a new entry (question, variants, the answer
    agents gave when resolving its tickets, category), or variants for an entry that nearly
    answered. Accept one with 'autoreply gaps accept'.

    Example:  autoreply gaps suggest --limit 5
    """
    from autoreply.gaps import suggestions

    store, engine = _open(knowledge, db)
    try:
        drafts = suggestions(store, kb=engine.kb, limit=limit)
    finally:
        store.close()
    if as_json:
        _print_json([s.model_dump(mode="json") for s in drafts])
        return
    if not drafts:
        out.print("no open gap topics: nothing to suggest")
    for s in drafts:
        what = "new entry" if s.kind.value == "new" else "add variants to"
        title = f"topic {s.topic_id}: {what} [cyan]{escape(s.entry_id)}[/] ({s.gaps} gaps)"
        out.rule(title, align="left")
        out.print(f"question: {s.question}", markup=False, highlight=False)
        for v in s.variants:
            out.print(f"  variant: {v}", markup=False, highlight=False)
        out.print(f"category: {s.category}", markup=False, highlight=False)
        if s.needs_answer:
            out.print("[red]answer: needs an answer[/] (pass --answer to gaps accept)")
        else:
            out.print(f"answer: {s.answer}", markup=False, highlight=False)


def accept_suggestion(
    store: Store, topic_id: int, *, into: Path, kb: KnowledgeBase | None, answer: str | None
) -> FAQEntry:
    """Write a topic's suggestion into the FAQ file ``into`` and mark the topic accepted.

    A new entry is appended (KnowledgeError without an answer); a near miss adds its
    variants to the entry in that file. The file is validated first and rewritten atomically."""
    from pydantic import ValidationError

    from autoreply.errors import ConflictError, KnowledgeError
    from autoreply.gaps import suggest
    from autoreply.knowledge import parse_entries, write_entries
    from autoreply.models import FAQEntry
    from autoreply.store import TopicKind, TopicStatus

    if into.suffix.lower() not in WRITABLE:
        raise KnowledgeError(f"{into}: cannot write FAQ entries there; use a .yaml or .jsonl file")
    topic = store.get_gap_topic(topic_id)
    if topic.status is TopicStatus.ACCEPTED:
        raise ConflictError(f"gap topic {topic_id} was accepted already")
    draft = suggest(store, topic, kb=kb)
    entries = parse_entries(into) if into.exists() else []
    text = (answer or draft.answer).strip()
    try:
        if topic.kind is TopicKind.NEAR_MISS:
            found = [i for i, e in enumerate(entries) if e.id == draft.entry_id]
            if not found:
                raise KnowledgeError(
                    f"entry '{draft.entry_id}' is not in {into}; accept into the file that holds it"
                )
            old = entries[found[0]]
            update: dict[str, Any] = {"variants": (*old.variants, *draft.variants)}
            entry = FAQEntry.model_validate(
                old.model_dump() | update | ({"answer": text} if answer else {})
            )
            entries[found[0]] = entry
        else:
            if not text:
                raise KnowledgeError(
                    f"gap topic {topic_id} has no answer yet (no resolved ticket gave one); "
                    'write one: autoreply gaps accept ... --answer "..."'
                )
            taken = {e.id for e in entries} | ({e.id for e in kb.entries} if kb else set())
            entry_id = (
                draft.entry_id if draft.entry_id not in taken else f"{draft.entry_id}-{topic_id}"
            )
            entry = FAQEntry(
                id=entry_id,
                question=draft.question,
                variants=tuple(draft.variants),
                answer=text,
                category=draft.category,
            )
            entries.append(entry)
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(p) for p in problem["loc"])
        raise KnowledgeError(f"the drafted entry is not valid: {where}: {problem['msg']}") from None
    write_entries(into, entries)
    store.set_gap_topic_status(topic_id, TopicStatus.ACCEPTED)
    return entry


def gaps_accept(
    topic: Annotated[int, typer.Argument(help="The gap topic id (see 'gaps topics').")],
    into: Annotated[Path, typer.Option("--into", help="FAQ file to write (.yaml or .jsonl).")],
    answer: Annotated[
        str | None, typer.Option(help="The answer (required when the draft has none).")
    ] = None,
    knowledge: KnowledgeOpt = None,
    db: DbOpt = None,
) -> None:
    """Accept a topic's suggestion into an FAQ file: a new entry is appended, or the new
    variants are added to the entry that nearly answered. The file is rewritten (YAML
    comments are not kept); reload the bot to use it.

    Example:  autoreply gaps accept 42 --into knowledge/faq.yaml --answer "Use a type G plug."
    """
    store, engine = _open(knowledge, db, update=False)
    try:
        entry = accept_suggestion(store, topic, into=into, kb=engine.kb, answer=answer)
    finally:
        store.close()
    out.print(
        f"wrote entry [cyan]{escape(entry.id)}[/] into {escape(str(into))}; topic {topic} accepted"
    )


def gaps_dismiss(
    topic: Annotated[int, typer.Argument(help="The gap topic id.")], db: DbOpt = None
) -> None:
    """Dismiss a topic's suggestion (its gaps keep joining it, it is not suggested again).

    Example:  autoreply gaps dismiss 42
    """
    from autoreply.store import TopicStatus, open_store

    store = open_store(_settings(None, db).db)
    try:
        store.set_gap_topic_status(topic, TopicStatus.DISMISSED)
    finally:
        store.close()
    out.print(f"topic {topic} dismissed")


def report(
    week: Annotated[
        str | None, typer.Option(help="ISO week, e.g. 2026-W47 [default: this week]")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="md, html or csv")] = "md",
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Folder to write into (CSV: a folder or FILE.zip)."),
    ] = None,
    top: Annotated[int, typer.Option(help="How many topics and suggestions.")] = 10,
    knowledge: KnowledgeOpt = None,
    db: DbOpt = None,
) -> None:
    """The weekly product report: volumes and deflection rate, escalations by reason and
    category, top gap topics with trends and examples, hot issues, tickets and response
    times, not-helpful answers, intercepted agent replies and suggested FAQ entries.
    Markdown and HTML print to stdout without --out. Weeks run Monday to Monday in the
    business-hours time zone (AUTOREPLY_HOURS__TIMEZONE).

    Example:  autoreply report --week 2026-W47 --format html --out reports/
    """
    from datetime import UTC, datetime

    from autoreply.insights import parse_week, week_of, weekly_report
    from autoreply.weekly import FORMATS, render, write

    if fmt not in FORMATS:
        raise typer.BadParameter(
            f"'{fmt}' is not one of: {', '.join(FORMATS)}", param_hint="--format"
        )
    if fmt == "csv" and out_dir is None:
        raise typer.BadParameter("CSV is one file per table: give --out DIR or --out FILE.zip")
    tz = _settings(knowledge, db).hours.timezone
    period = parse_week(week, tz=tz) if week else week_of(datetime.now(UTC), tz=tz)
    store, engine = _open(knowledge, db)
    try:
        data = weekly_report(store, period, kb=engine.kb, top=top)
    finally:
        store.close()
    if out_dir is None:
        sys.stdout.write(render(data, fmt))
        return
    for path in write(data, fmt, out_dir):
        out.print(f"wrote {path}", markup=False, highlight=False, soft_wrap=True)


def register(app: typer.Typer, gaps_app: typer.Typer) -> None:
    """Add ``gaps topics|suggest|accept|dismiss`` and ``report`` to the command line."""
    gaps_app.command("topics")(gaps_topics)
    gaps_app.command("suggest")(gaps_suggest)
    gaps_app.command("accept")(gaps_accept)
    gaps_app.command("dismiss")(gaps_dismiss)
    app.command("report")(report)
