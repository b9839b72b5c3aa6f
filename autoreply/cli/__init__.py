"""The ``autoreply`` command line. Thin: every command calls the library and prints.

Errors are one line on stderr with exit code 1 (2 for usage errors), never a traceback.
Heavy modules are imported inside commands so that ``autoreply --help`` and ``ask`` start fast.

    common.py        the shared options (--knowledge, --db, --json, --agent), consoles, settings
    conversation.py  ask, chat, demo
    knowledge.py     check, index build
    config.py        config
    queue.py         queue list | claim | reply | transfer | resolve | promote
    gaps.py          gaps list | topics | suggest | accept | dismiss, changes, undo, report
    learn.py         learn list | accept | dismiss
    eval.py          eval
    tune.py          tune (the e5 encoder on the knowledge base; the tune extra)
    server.py        serve, agents ..., vip ...
"""

from __future__ import annotations

import sys

import typer

from autoreply.cli import config, conversation, eval, gaps, knowledge, learn, queue, server, tune
from autoreply.cli.common import err

app = typer.Typer(
    help="autoreply: FAQ auto-reply for customer service. Answers what it knows, hands the "
    "rest to a person, logs what nobody has answered yet.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# The order here is the order of `autoreply --help`.
app.add_typer(queue.queue_app, name="queue")
app.add_typer(gaps.gaps_app, name="gaps")
app.add_typer(knowledge.index_app, name="index")
conversation.register(app)
knowledge.register(app)
config.register(app)
eval.register(app)
tune.register(app)
server.register(app)
gaps.register(app, gaps.gaps_app)
learn.register(app)

__all__ = ["app", "main"]


def main() -> None:
    """Entry point: run the app, turning autoreply errors into one line and exit code 1."""
    from rich.markup import escape

    from autoreply.errors import AutoreplyError

    try:
        app()
    except AutoreplyError as exc:
        # escape: "pip install 'autoreply[tune]'" is not a markup tag
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(1)
