"""Tune the bundled e5 model on a knowledge base's own phrasings, and write the result.

Loss: symmetric in-batch contrastive (multiple negatives ranking, MNRL). Every text of an
entry with two or more texts is an anchor once per epoch, paired with another text of the
same entry; a batch holds at most one pair per entry, so the other pairs of the batch are
its negatives. Both directions (anchor → partner, partner → anchor) are scored, with cosine
similarities scaled by 20. AdamW, linear warm-up over the first 10% of steps, then linear
decay. Only what packs back exactly trains (``E5Model.trainable``).

Texts are the forms the engine encodes (``normalize()``, then synonyms), with the same
"query: " prefix the default symmetric encoder gives both sides.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from autoreply.errors import ConfigError
from autoreply.knowledge import KnowledgeBase
from autoreply.knowledge_index import match_text
from autoreply.tuning import cache
from autoreply.tuning.modelfile import read_model, write_model

log = logging.getLogger(__name__)

Pair = tuple[str, str]
Progress = Callable[[int, int, int, float], None]
"""``(step, steps, epoch, loss)`` after every step."""


@dataclass(frozen=True)
class TuneConfig:
    """How long and how fast to tune; defaults picked on held-out variants (bench/README)."""

    epochs: int = 3
    lr: float = 1e-4
    batch: int = 32
    scale: float = 20.0
    warmup: float = 0.1
    seed: int = 0


@dataclass(frozen=True)
class TuneResult:
    path: Path
    texts: int
    steps: int
    seconds: float
    first_loss: float
    last_loss: float


def entry_texts(kb: KnowledgeBase) -> list[list[str]]:
    """Each enabled entry's distinct texts, in the form the engine encodes them."""
    groups = []
    for entry in kb.enabled:
        forms = dict.fromkeys(match_text(t, kb.synonyms) for t in entry.texts)
        groups.append([f for f in forms if f])
    return groups


def epoch_batches(
    groups: Sequence[Sequence[str]], batch: int, rng: random.Random
) -> list[list[Pair]]:
    """One epoch of pair batches; no entry twice in a batch (its pairs would be negatives)."""
    anchors = [
        (g, i) for g, texts in enumerate(groups) if len(texts) >= 2 for i in range(len(texts))
    ]
    rng.shuffle(anchors)
    open_batches: list[tuple[set[int], list[Pair]]] = []
    done: list[list[Pair]] = []
    for g, i in anchors:
        texts = groups[g]
        j = rng.randrange(len(texts) - 1)
        pair = (texts[i], texts[j if j < i else j + 1])
        for owners, pairs in open_batches:
            if g not in owners:
                owners.add(g)
                pairs.append(pair)
                if len(pairs) == batch:
                    done.append(pairs)
                    open_batches.remove((owners, pairs))
                break
        else:
            open_batches.append(({g}, [pair]))
    done.extend(pairs for _, pairs in open_batches if len(pairs) >= 2)
    rng.shuffle(done)
    return done


def train(
    model: object,
    groups: Sequence[Sequence[str]],
    config: TuneConfig,
    *,
    progress: Progress | None = None,
    on_epoch: Callable[[int], None] | None = None,
) -> list[float]:
    """Tune ``model`` (an ``E5Model``) in place; the loss of every step. ``on_epoch(n)`` is
    called after each epoch (the bench measures there)."""
    import torch
    from torch.nn import functional as F

    from autoreply.tuning.torch_model import E5Model

    assert isinstance(model, E5Model)
    rng = random.Random(config.seed)
    torch.manual_seed(config.seed)
    epochs = [epoch_batches(groups, config.batch, rng) for _ in range(config.epochs)]
    steps = sum(len(e) for e in epochs)
    if steps == 0:
        raise ConfigError(
            "nothing to tune on: no entry has two texts (add variants to the questions)"
        )
    optimizer = torch.optim.AdamW(model.trainable(), lr=config.lr, weight_decay=0.0)
    warm = max(1, int(steps * config.warmup))

    def factor(step: int) -> float:
        return (step + 1) / warm if step < warm else max(0.0, (steps - step) / (steps - warm))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    tokenized: dict[str, object] = {}
    losses: list[float] = []
    model.train()
    step = 0
    for epoch, batches in enumerate(epochs, 1):
        for pairs in batches:
            texts = [a for a, _ in pairs] + [b for _, b in pairs]
            for t in texts:
                if t not in tokenized:
                    tokenized[t] = model.tokenizer.windows(t, query=True)
            vectors = model.embed_windows([tokenized[t] for t in texts])  # type: ignore[misc]
            n = len(pairs)
            sims = vectors[:n] @ vectors[n:].T * config.scale
            target = torch.arange(n)
            loss = (F.cross_entropy(sims, target) + F.cross_entropy(sims.T, target)) / 2
            optimizer.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            schedule.step()
            step += 1
            losses.append(loss.item())
            if progress is not None:
                progress(step, steps, epoch, losses[-1])
        if on_epoch is not None:
            model.eval()
            on_epoch(epoch)
            model.train()
    model.eval()
    return losses


def tune(
    kb: KnowledgeBase,
    cache_dir: Path,
    *,
    config: TuneConfig | None = None,
    progress: Progress | None = None,
    base: Path | None = None,
) -> TuneResult:
    """Tune the base model on ``kb`` and write it where the engine looks for it
    (``cache.tuned_path``); older tuned files for the same cache are removed."""
    from autoreply.tuning.torch_model import E5Model

    config = config or TuneConfig()
    base = base or cache.base_model_path()
    start = time.perf_counter()
    groups = entry_texts(kb)
    model_file = read_model(base)
    model = E5Model(model_file)
    losses = train(model, groups, config, progress=progress)
    target = cache.tuned_path(cache_dir, kb.fingerprint, cache.file_checksum(base))
    write_model(model.pack(model_file), target)
    cache.remove_others(target)
    seconds = time.perf_counter() - start
    log.info("encoder tuned", extra={"path": str(target), "steps": len(losses)})
    return TuneResult(
        target, sum(len(g) for g in groups), len(losses), seconds, losses[0], losses[-1]
    )
