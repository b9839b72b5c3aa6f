"""The knowledge base: ``autoreply check`` and ``autoreply index build``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from autoreply.cli.common import JsonOpt, KnowledgeOpt, err, load_settings, out, print_json

index_app = typer.Typer(help="Build the vector index ahead of time.")


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

    target = resolve_knowledge_path(path or load_settings().knowledge)
    try:
        kb = load_knowledge(target)
    except KnowledgeInvalid as exc:
        if as_json:
            print_json({"ok": False, "problems": [p.to_dict() for p in exc.problems]})
        else:
            for problem in exc.problems:
                err.print(problem.render(), markup=False, highlight=False)
            err.print(f"[red]{len(exc.problems)} problem(s)[/]")
        raise typer.Exit(1) from None
    conflicts = [c.render() for c in kb.conflicts]
    if as_json:
        print_json(
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

    settings = load_settings(knowledge)
    info = build_engine(settings).index.info
    data = {
        "status": info.status,
        "texts": info.texts,
        "encoded": info.encoded,
        "seconds": round(info.seconds, 3),
        "folder": str(info.folder),
    }
    if as_json:
        print_json(data)
    else:
        out.print(
            f"index {info.status}: {info.texts} texts, {info.encoded} encoded, "
            f"{info.seconds:.2f}s → {info.folder}"
        )


def register(app: typer.Typer) -> None:
    """Add ``check``; the ``index`` group is added with the other groups."""
    app.command()(check)
