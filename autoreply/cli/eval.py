"""The ``autoreply eval`` command and the terminal summary of an evaluation report.

``register(app)`` adds the command to the main Typer app (``autoreply.cli`` calls it).
Heavy modules are imported inside the command so that ``autoreply --help`` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from autoreply.cli.common import err, out

if TYPE_CHECKING:
    from autoreply.eval_report import EvalReport
    from autoreply.ranking_metrics import CategoryScore


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def print_summary(report: EvalReport, console: Console | None = None) -> None:
    """Headline metrics, thresholds, decisions, weakest categories and confusions, in rich."""
    from autoreply.eval_report import headline

    con = console or out
    table = Table(title=f"autoreply eval: {report.questions}", show_header=False, box=None)
    for label, value in headline(report):
        table.add_row(label, value)
    if d := report.decisions:
        mix = f"answer {_pct(d.answer)} · clarify {_pct(d.clarify)} · escalate {_pct(d.escalate)}"
        table.add_row("decisions", f"{mix} (wrong answers {_pct(d.answered_wrong)})")
    if lat := report.latency:
        table.add_row("latency", f"p50 {lat.p50_ms:.1f} ms · p95 {lat.p95_ms:.1f} ms")
    if report.index_build_seconds is not None:
        table.add_row("index build", f"{report.index_build_seconds:.2f} s")
    if g := report.gap_clustering:
        table.add_row(
            "gap clustering",
            f"ARI {g.ari:.3f} · NMI {g.nmi:.3f} · {g.clusters} clusters for {g.topics} topics",
        )
    con.print(table)
    target = report.thresholds.target_precision

    def weakness(c: CategoryScore) -> tuple[float, float]:
        return (1.0 if c.top1 is None else c.top1, 1.0 if c.precision is None else c.precision)

    weak = sorted((c for c in report.categories if weakness(c) < (1.0, target)), key=weakness)
    if weak:
        title = "weakest categories"
        cats = Table("category", "questions", "top-1", "answered", "precision", title=title)
        for c in weak[:8]:
            cats.add_row(
                c.category, str(c.count), _fmt(c.top1), _pct(c.answered), _fmt(c.precision)
            )
        con.print(cats)
    if report.confusions:
        pairs = Table("expected", "got instead", "times", title="most confused entries")
        for p in report.confusions[:5]:
            pairs.add_row(p.expected_id, p.predicted_id, str(p.count))
        con.print(pairs)


def eval_command(
    knowledge: Annotated[
        Path, typer.Option("--knowledge", "-k", help="FAQ file or folder to evaluate.")
    ],
    questions: Annotated[
        Path | None,
        typer.Option(
            "--questions", "-q", help="Labelled questions (.jsonl or .csv): question, expected_id."
        ),
    ] = None,
    encoder: Annotated[
        str | None, typer.Option(help="e5, hashing or st:MODEL [default: settings, e5]")
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write report.json and report.html here.")
    ] = None,
    target_precision: Annotated[
        float, typer.Option(help="Precision the recommended thresholds must reach.")
    ] = 0.9,
    split: Annotated[
        int | None,
        typer.Option(help="No labels: hold out variants in K folds and use them as questions."),
    ] = None,
    baseline: Annotated[
        Path | None, typer.Option(help="Earlier report.json: exit 1 if a metric fell.")
    ] = None,
    max_drop: Annotated[
        float, typer.Option(help="How much a gated metric may worsen against --baseline.")
    ] = 0.01,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Measure the bot on labelled questions: accuracy, out-of-scope detection, the thresholds
    to run for a target precision, decisions, confusions and speed. With --baseline, a
    regression gate: exit code 1 and one line per metric that fell by more than --max-drop.

    Example:  autoreply eval -k knowledge/ -q eval/demo_questions.jsonl --out eval-report
    """
    from autoreply.eval_report import compare, load_report, write_report
    from autoreply.evaluation import run_eval
    from autoreply.settings import Settings

    if questions is None and split is None:
        raise typer.BadParameter("give --questions FILE, or --split K to hold out variants")
    old = load_report(baseline) if baseline is not None else None  # fail before a long run
    settings = Settings()
    report = run_eval(
        knowledge,
        questions,
        encoder=encoder or settings.encoder,
        engine_config=settings.engine,
        target_precision=target_precision,
        split=split,
        progress=not as_json,
    )
    if as_json:
        sys.stdout.write(report.model_dump_json(indent=2) + "\n")
    else:
        print_summary(report)
    if out_dir is not None:
        json_path, html_path = write_report(report, out_dir)
        (err if as_json else out).print(
            f"wrote {json_path} and {html_path}", highlight=False, soft_wrap=True
        )
    if old is not None:
        failures = compare(report, old, max_drop)
        for line in failures:
            err.print(f"[red]regression:[/] {line}", highlight=False, soft_wrap=True)
        if failures:
            raise typer.Exit(1)
        (err if as_json else out).print(f"no metric fell by more than {max_drop:g}")


def register(app: typer.Typer) -> None:
    """Add the ``eval`` command to the autoreply command line."""
    app.command("eval")(eval_command)
