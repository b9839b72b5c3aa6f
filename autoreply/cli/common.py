"""What every command shares: the common options, the consoles, settings and the store.

An option such as ``--knowledge`` or ``--db`` is defined here once, so it reads the same in
every command's ``--help``. Heavy modules are imported inside the helpers so that
``autoreply --help`` stays fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

if TYPE_CHECKING:
    from autoreply.service import AutoReply
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
AgentOpt = Annotated[str, typer.Option("--agent", "-a", help="Your agent name.")]


def load_settings(knowledge: Path | None = None, db: str | None = None) -> Settings:
    """Settings from the environment and autoreply.toml, with the command's options on top."""
    from autoreply.settings import Settings

    return Settings().with_overrides(knowledge=knowledge, db=db)


def open_bot(knowledge: Path | None, db: str | None) -> AutoReply:
    """The knowledge base, its index and the store, wired together."""
    from autoreply.service import AutoReply

    return AutoReply.from_settings(load_settings(knowledge, db))


def open_store(db: str | None) -> Store:
    """The store alone (no knowledge base, no encoder): for the queue, agents and VIPs."""
    from autoreply.store import open_store as open_url

    return open_url(load_settings(db=db).db)


def print_json(data: Any) -> None:
    """Print ``data`` as indented JSON on stdout, for scripts."""
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")


def enum_option(kind: Any, value: str | None, option: str) -> Any:
    """``value`` as a member of the enum ``kind``, or a usage error listing the valid ones."""
    if value is None:
        return None
    try:
        return kind(value)
    except ValueError:
        known = ", ".join(m.value for m in kind)
        raise typer.BadParameter(f"'{value}' is not one of: {known}", param_hint=option) from None
