"""``autoreply config``: every setting with its environment variable, default and meaning.

Every word of every setting reaches the reader, in a terminal of any width and in a pipe:
cells are plain text (a description may contain ``[default: every core]`` or
``'autoreply[use]'``, which rich would otherwise take for markup), and when the table would
have to cut or fold a word to fit, the settings are listed one after the other instead.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import Annotated

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from autoreply.cli.common import out

INDENT = "    "


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
    print_settings(rows, out)


def print_settings(rows: Sequence[tuple[str, str, str]], console: Console) -> None:
    """A table when every word fits whole in its column at the console's width, else one
    block per setting: ``VARIABLE = default`` and the meaning below it, wrapped between
    words only."""
    table = Table("variable", "default", "meaning")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    # A column is never narrower than its longest word in the minimum measurement: if the
    # table fits at that, rich wraps between words and nothing is cut.
    unlimited = console.options.update_width(1_000_000)
    if console.is_terminal and Measurement.get(console, unlimited, table).minimum <= console.width:
        console.print(table)
        return
    width = max(console.width, 40)
    for env, default, description in rows:
        console.print(f"{env} = {default}", markup=False, highlight=False, soft_wrap=True)
        lines = textwrap.wrap(
            description,
            width=width,
            initial_indent=INDENT,
            subsequent_indent=INDENT,
            break_long_words=False,
            break_on_hyphens=False,
        )
        for line in lines:
            console.print(line, markup=False, highlight=False, soft_wrap=True)
        console.print()


def register(app: typer.Typer) -> None:
    """Add ``config``."""
    app.command()(config)
