"""``autoreply gaps list | topics | suggest | accept | dismiss``, ``changes``, ``undo``, ``report``.

``register(app, gaps_app)`` adds them to the main Typer app and its ``gaps`` group
(autoreply/cli/__init__.py calls it). Heavy modules are imported inside the commands so that
``autoreply --help`` stays fast. The library side of ``gaps accept`` and ``undo`` is
autoreply.faqchange, shared with the console and the admin API.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from autoreply.cli.common import (
    DbOpt,
    JsonOpt,
    KnowledgeOpt,
    err,
    load_settings,
    open_store,
    out,
    print_json,
)

if TYPE_CHECKING:
    from autoreply.service import AutoReply
    from autoreply.settings import Settings

gaps_app = typer.Typer(help="Questions the bot could not answer (FAQ gaps).")


def _open(knowledge: Path | None, db: str | None, *, update: bool = True) -> AutoReply:
    """The bot (knowledge base, index, store), with the gap topics brought up to date."""
    from autoreply.service import AutoReply

    bot = AutoReply.from_settings(load_settings(knowledge, db))
    if update:
        try:
            bot.update_gap_topics()
        except BaseException:
            bot.close()
            raise
    return bot


def gaps_table(gaps: list[Any]) -> None:
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


def gaps_list(
    db: DbOpt = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List logged FAQ gaps (personal data already redacted), newest first.

    Example:  autoreply gaps list --limit 20
    """
    store = open_store(db)
    try:
        gaps = store.list_gaps(limit=limit)
    finally:
        store.close()
    if as_json:
        print_json([g.model_dump(mode="json") for g in gaps])
    else:
        gaps_table(gaps)


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
    with _open(knowledge, db, update=False) as bot:
        run = bot.update_gap_topics(rebuild=rebuild)
        topics = bot.store.gap_topics()[:limit]
    if as_json:
        print_json([t.model_dump(mode="json", exclude={"centroid"}) for t in topics])
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
    from autoreply.gap_suggestions import suggestions

    with _open(knowledge, db) as bot:
        drafts = suggestions(bot.store, kb=bot.kb, limit=limit)
    if as_json:
        print_json([s.model_dump(mode="json") for s in drafts])
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


def gaps_accept(
    topic: Annotated[int, typer.Argument(help="The gap topic id (see 'gaps topics').")],
    into: Annotated[
        Path | None,
        typer.Option(
            "--into", help="FAQ file to add a new entry to [default: accepted.yaml in the folder]"
        ),
    ] = None,
    answer: Annotated[
        str | None, typer.Option(help="The answer (required when the draft has none).")
    ] = None,
    question: Annotated[
        str | None, typer.Option(help="The question, instead of the draft's.")
    ] = None,
    category: Annotated[
        str | None, typer.Option(help="The category, instead of the draft's.")
    ] = None,
    variant: Annotated[
        list[str] | None,
        typer.Option(
            "--variant",
            "-v",
            help="A variant to write (repeat it). Default: the drafted variants that ask what "
            "the question asks (see --dry-run).",
        ),
    ] = None,
    all_variants: Annotated[
        bool, typer.Option("--all-variants", help="Write every drafted variant.")
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Show the entry and the check's verdict; write nothing."),
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Save despite warnings (conflicts); never despite errors."),
    ] = False,
    by: Annotated[
        str | None, typer.Option(help="Who accepts it [default: your user name].")
    ] = None,
    knowledge: KnowledgeOpt = None,
    db: DbOpt = None,
) -> None:
    """Accept a topic's suggestion: a new entry is added to a file of its own (accepted.yaml
    in the knowledge folder, with a comment saying when, by whom and from which topic), or the
    chosen variants are added to the entry that nearly answered, in its file. Nothing else in
    any file changes. The result is checked as 'autoreply check' would first: errors are never
    saved, warnings only with --force. Take it back with 'autoreply undo'.

    Example:  autoreply gaps accept 42 --answer "Use a type G plug." -v "plug type uk" --dry-run
    """
    from autoreply.errors import KnowledgeError
    from autoreply.faqchange import apply, check_draft, core_variants, draft_for_topic
    from autoreply.faqjournal import Journal
    from autoreply.gap_suggestions import suggest

    root = _knowledge_root(load_settings(knowledge, db))
    bot = _open(knowledge, db, update=False)
    store, engine = bot.store, bot.engine
    try:
        if variant is None:
            draft = suggest(store, store.get_gap_topic(topic), kb=engine.kb)
            ticks = core_variants(draft, engine.index)
            variant = [v for v, on in zip(draft.variants, ticks, strict=True) if on or all_variants]
        chosen = draft_for_topic(
            store,
            topic,
            kb=engine.kb,
            knowledge=root,
            variants=variant,
            question=question,
            answer=answer,
            category=category,
            into=into,
            by=by or "",
        )
        if dry_run:
            data, verdict = check_draft(engine.kb, chosen)
            _show_draft(chosen, verdict)
            if not verdict.ok:
                raise typer.Exit(1)
            return
        change = apply(
            engine.kb,
            chosen,
            journal=Journal(root),
            action="accept",
            by=by or "",
            force=force,
            store=store,
        )
    except KnowledgeError as exc:
        err.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(1) from None
    finally:
        bot.close()
    out.print(
        f"wrote entry [cyan]{escape(chosen.entry.id)}[/] into {escape(str(chosen.path))}; "
        f"topic {topic} accepted (change {change.id}: 'autoreply undo' takes it back)"
    )


def _knowledge_root(settings: Settings) -> Path:
    from autoreply.errors import ConflictError
    from autoreply.faqchange import writable_root
    from autoreply.service import resolve_knowledge_path

    try:
        return writable_root(resolve_knowledge_path(settings.knowledge))
    except ConflictError as exc:
        err.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(1) from None


def _show_draft(draft: Any, verdict: Any) -> None:
    entry = draft.entry
    what = f"replace entry '{draft.replaces}'" if draft.replaces else "add a new entry"
    out.print(f"would {what} in {draft.path}", markup=False, highlight=False)
    for name in ("id", "question", "answer", "category"):
        out.print(f"  {name}: {getattr(entry, name)}", markup=False, highlight=False)
    for v in entry.variants:
        out.print(f"  variant: {v}", markup=False, highlight=False)
    for line in verdict.errors:
        err.print(f"error: {line}", markup=False, highlight=False)
    for line in verdict.warnings:
        err.print(f"warning: {line}", markup=False, highlight=False)
    out.print("check: ok" if verdict.ok else "check: see above", markup=False, highlight=False)


def changes(
    knowledge: KnowledgeOpt = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """List the changes written into the knowledge files (accepts and edits from the CLI,
    console and API), newest first: when, who, what, which file, and whether undone.

    Example:  autoreply changes --limit 5
    """
    from autoreply.faqjournal import Journal

    journal = Journal(_knowledge_root(load_settings(knowledge)))
    found = journal.changes()[:limit]
    if as_json:
        print_json([c.__dict__ for c in found])
        return
    table = Table("id", "when", "who", "what", "entry", "file", "undone")
    for c in found:
        cells = [str(c.id), c.at, c.by, c.action, c.entry_id, c.file, c.undone_at or ""]
        table.add_row(*(escape(x) for x in cells))
    out.print(table)


def undo(
    knowledge: KnowledgeOpt = None,
    db: DbOpt = None,
    by: Annotated[str | None, typer.Option(help="Who undoes it [default: your user name].")] = None,
) -> None:
    """Take back the newest change still in effect (see 'autoreply changes'): its file gets
    back the exact bytes it had before, an accepted gap topic is open again. Refused if the
    file was changed since. Reload the bot afterwards.

    Example:  autoreply undo
    """
    from autoreply.errors import ConflictError
    from autoreply.faqjournal import Journal

    store = open_store(db)
    try:
        change = Journal(_knowledge_root(load_settings(knowledge, db))).undo(
            by=by or "", store=store
        )
    except ConflictError as exc:
        err.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(1) from None
    finally:
        store.close()
    out.print(
        f"undid change {change.id} ({change.action} '{escape(change.entry_id)}'): "
        f"{escape(change.file)} is as it was before"
    )


def gaps_dismiss(
    topic: Annotated[int, typer.Argument(help="The gap topic id.")], db: DbOpt = None
) -> None:
    """Dismiss a topic's suggestion (its gaps keep joining it, it is not suggested again).

    Example:  autoreply gaps dismiss 42
    """
    from autoreply.store import TopicStatus

    store = open_store(db)
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

    from autoreply.weekly_data import parse_week, week_of, weekly_report
    from autoreply.weekly_render import FORMATS, render, write

    if fmt not in FORMATS:
        raise typer.BadParameter(
            f"'{fmt}' is not one of: {', '.join(FORMATS)}", param_hint="--format"
        )
    if fmt == "csv" and out_dir is None:
        raise typer.BadParameter("CSV is one file per table: give --out DIR or --out FILE.zip")
    tz = load_settings(knowledge, db).hours.timezone
    period = parse_week(week, tz=tz) if week else week_of(datetime.now(UTC), tz=tz)
    with _open(knowledge, db) as bot:
        data = weekly_report(bot.store, period, kb=bot.kb, top=top)
    if out_dir is None:
        sys.stdout.write(render(data, fmt))
        return
    for path in write(data, fmt, out_dir):
        out.print(f"wrote {path}", markup=False, highlight=False, soft_wrap=True)


def register(app: typer.Typer, gaps_app: typer.Typer) -> None:
    """Add ``gaps list|topics|suggest|accept|dismiss``, ``changes``, ``undo`` and ``report``."""
    gaps_app.command("list")(gaps_list)
    gaps_app.command("topics")(gaps_topics)
    gaps_app.command("suggest")(gaps_suggest)
    gaps_app.command("accept")(gaps_accept)
    gaps_app.command("dismiss")(gaps_dismiss)
    app.command("report")(report)
    app.command("changes")(changes)
    app.command("undo")(undo)
