"""``autoreply tune``: tune the bundled e5 encoder on the knowledge base's own phrasings."""

from __future__ import annotations

import importlib.util
from typing import Annotated

import typer

from autoreply.cli.common import JsonOpt, KnowledgeOpt, err, load_settings, out, print_json


def tune(
    knowledge: KnowledgeOpt = None,
    epochs: Annotated[
        int, typer.Option("--epochs", min=1, max=50, help="Passes over the texts.")
    ] = 3,
    lr: Annotated[float, typer.Option("--lr", min=1e-7, max=1e-2, help="Learning rate.")] = 1e-4,
    as_json: JsonOpt = False,
) -> None:
    """Tune the bundled e5 model on the knowledge base (pairs of texts of one entry) and save
    it next to the index cache. The engine uses it from its next start, for this version of
    the knowledge base only; AUTOREPLY_ENCODER_TUNED=false turns it off. Needs torch:
    pip install 'autoreply\\[tune]'. Minutes per epoch for a thousand texts on 2 cores.

    Example:  autoreply tune --knowledge knowledge/ --epochs 3
    """
    from autoreply.errors import ConfigError

    if importlib.util.find_spec("torch") is None:
        raise ConfigError("`autoreply tune` needs torch: pip install 'autoreply[tune]'")
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from autoreply.knowledge import load_knowledge
    from autoreply.service import resolve_knowledge_path
    from autoreply.tuning.train import TuneConfig
    from autoreply.tuning.train import tune as run_tune

    settings = load_settings(knowledge)
    if settings.encoder not in ("e5", "e5-qp"):
        err.print(f"note: the encoder is '{settings.encoder}'; only e5 uses a tuned model")
    kb = load_knowledge(resolve_knowledge_path(settings.knowledge))
    bar = Progress(
        TextColumn("tuning e5 · epoch {task.fields[epoch]}/{task.fields[epochs]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.3f}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err,
        disable=as_json,
    )
    with bar:
        task = bar.add_task("tune", total=None, epoch=1, epochs=epochs, loss=float("nan"))

        def report(step: int, steps: int, epoch: int, loss: float) -> None:
            bar.update(task, completed=step, total=steps, epoch=epoch, loss=loss)

        result = run_tune(
            kb, settings.cache_dir, config=TuneConfig(epochs=epochs, lr=lr), progress=report
        )
    data = {
        "path": str(result.path),
        "texts": result.texts,
        "steps": result.steps,
        "seconds": round(result.seconds, 1),
        "loss": [round(result.first_loss, 4), round(result.last_loss, 4)],
    }
    if as_json:
        print_json(data)
        return
    out.print(
        f"tuned on {result.texts} texts in {result.steps} steps ({result.seconds:.0f}s), "
        f"loss {result.first_loss:.3f} → {result.last_loss:.3f}\n→ {result.path}\n"
        "The engine uses it from its next start (or reload) while the knowledge base is "
        "unchanged; AUTOREPLY_ENCODER_TUNED=false turns it off.",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    """Add ``tune``."""
    app.command()(tune)
