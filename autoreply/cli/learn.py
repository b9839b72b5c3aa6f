"""``autoreply learn list | accept | dismiss``: phrasings learned from answered conversations.

``register(app)`` adds the ``learn`` group to the main Typer app (autoreply/cli.py calls it).
The library side is autoreply.learning, shared with the admin API, the console and the
weekly report.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from autoreply.settings import Settings

out = Console()
err = Console(stderr=True)

learn_app = typer.Typer(
    help="Phrasings learned from answered conversations: candidate variants of FAQ entries."
)

KnowledgeOpt = Annotated[
    Path | None,
    typer.Option(
        "--knowledge", "-k", help="FAQ file or folder [default: ./knowledge, else the bundled demo]"
    ),
]
DbOpt = Annotated[
    str | None, typer.Option("--db", help="Database URL or SQLite file [default: autoreply.db]")
]
ByOpt = Annotated[str | None, typer.Option(help="Who decides [default: your user name].")]
IdsArg = Annotated[list[int], typer.Argument(help="Candidate variant ids (see 'learn list').")]


def _settings(knowledge: Path | None, db: str | None) -> Settings:
    from autoreply.settings import Settings

    return Settings().with_overrides(knowledge=knowledge, db=db)


def learn_list(
    db: DbOpt = None,
    entry: Annotated[str | None, typer.Option(help="Only this entry's.")] = None,
    status: Annotated[str, typer.Option(help="pending, accepted, dismissed or all.")] = "pending",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """List candidate variants: customers' questions shown to belong to an entry (a "did you
    mean" pick, an agent's standard script, a helpful vote, a promote), with their evidence
    per source, most first. A flagged one is closer to another entry or a conflict.

    Example:  autoreply learn list --entry refund
    """
    from autoreply.store import VariantStatus, open_store

    known = [s.value for s in VariantStatus]
    if status != "all" and status not in known:
        err.print(f"[red]unknown status '{escape(status)}'; known: {', '.join(known)}, all[/]")
        raise typer.Exit(2)
    store = open_store(_settings(None, db).db)
    try:
        found = store.learned_variants(
            entry_id=entry, status=None if status == "all" else VariantStatus(status)
        )
    finally:
        store.close()
    if as_json:
        rows = [v.model_dump(mode="json") for v in found]
        sys.stdout.write(json.dumps(rows, ensure_ascii=False, indent=2) + "\n")
        return
    table = Table("id", "entry", "text", "evidence", "status", "flag", "last seen")
    for v in found:
        evidence = ", ".join(f"{k} {n}" for k, n in sorted(v.counts.items()))
        cells = [str(v.id), v.entry_id, v.text, evidence, v.status.value, v.flag or ""]
        table.add_row(*(escape(c) for c in cells), f"{v.last_seen:%Y-%m-%d %H:%M}")
    out.print(table)


def learn_accept(
    ids: IdsArg,
    knowledge: KnowledgeOpt = None,
    db: DbOpt = None,
    by: ByOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Save despite conflict warnings.")] = False,
) -> None:
    """Write candidate variants into their entries, in place (only those entries' lines
    change), after the checks of 'autoreply check'; journalled ('autoreply undo' takes it
    back). Running services reload on their own.

    Example:  autoreply learn accept 12 14
    """
    from autoreply import learning
    from autoreply.errors import AutoreplyError
    from autoreply.faqjournal import whoami
    from autoreply.service import build_engine, resolve_knowledge_path
    from autoreply.store import open_store

    settings = _settings(knowledge, db)
    store = open_store(settings.db)
    try:
        engine = build_engine(settings)

        def reload() -> object:
            index = build_engine(settings).index  # the new knowledge must load
            store.bump_knowledge_version()  # and every service reloads it
            return index

        changes = learning.accept(
            store,
            engine.kb,
            ids,
            knowledge=resolve_knowledge_path(settings.knowledge),
            reload=reload,  # type: ignore[arg-type]
            by=by or whoami(),
            force=force,
        )
    except AutoreplyError as exc:
        err.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(1) from None
    finally:
        store.close()
    for c in changes:
        out.print(
            f"added {len(c.variant_ids or [])} variant(s) to [cyan]{escape(c.entry_id)}[/] in "
            f"{escape(c.file)} (change {c.id}: 'autoreply undo' takes it back)"
        )


def learn_dismiss(ids: IdsArg, db: DbOpt = None, by: ByOpt = None) -> None:
    """Leave candidate variants out of the FAQ (they stay listed as dismissed).

    Example:  autoreply learn dismiss 13
    """
    from autoreply import learning
    from autoreply.errors import AutoreplyError
    from autoreply.faqjournal import whoami
    from autoreply.store import open_store

    store = open_store(_settings(None, db).db)
    try:
        done = learning.dismiss(store, ids, by=by or whoami())
    except AutoreplyError as exc:
        err.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(1) from None
    finally:
        store.close()
    out.print(f"dismissed {len(done)} candidate variant(s)")


def register(app: typer.Typer) -> None:
    """Add ``learn list|accept|dismiss``."""
    learn_app.command("list")(learn_list)
    learn_app.command("accept")(learn_accept)
    learn_app.command("dismiss")(learn_dismiss)
    app.add_typer(learn_app, name="learn")
