"""``autoreply config``: every setting with its environment variable, default and meaning."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from autoreply.cli.common import out


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


def register(app: typer.Typer) -> None:
    """Add ``config``."""
    app.command()(config)
