"""New entries: are the questions of an entry with only a few texts answered?

An accepted gap topic starts as an entry with a handful of texts next to entries with twenty.
This replays that without the service: for each intent a gap set holds out of its FAQ
(clinc150_gap by default), an entry is made from ``k`` of its test questions (seeded), and the
rest of its questions are asked, beside a sample of in-scope questions and every out-of-scope
one. The scorer is fitted as the engine fits it (``Scorer.fit`` on the encoder's vectors and
the matched form of every text, so with the lexical head), once with the classifiers'
weights as shipped (``linear.lift_weights``) and once unweighted (every text weighs 1 in
both classifiers, as before issue 19), and each question is decided as the engine decides at
the default thresholds (answer at confidence ≥ 0.6 unless the runner-up is close).

Results per set in ``bench/results/new_entries.json`` (a run replaces its set's). Per ``k``
and seed: the new entries' questions answered right and wrong, how many held-out
intents are answered right at least 80% of the time, the original entries' questions answered
right and wrong, out-of-scope questions answered, and OOS AUROC of the confidence.

Usage, from the repository root::

    python bench/new_entries.py                       # ~3 minutes on 2 cores
    python bench/new_entries.py --set ../shared/data/massive_zh_cn_gap --k 3,6,10
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from autoreply import linear, scoring  # noqa: E402
from autoreply.encoder import get_encoder  # noqa: E402
from autoreply.eval_questions import load_questions  # noqa: E402
from autoreply.knowledge import load_knowledge  # noqa: E402
from autoreply.knowledge_index import KnowledgeIndex  # noqa: E402
from autoreply.settings import EngineConfig  # noqa: E402

RIGHT_ENOUGH = 0.8


def decide(
    scorer: scoring.Scorer,
    queries: np.ndarray,
    forms: list[str],
    vectors: np.ndarray,
    labels: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(top entry, confidence, answered) per query, as the engine decides by default."""
    config = EngineConfig()
    proba, confidence = scorer.score_all(queries, vectors, labels, forms)
    ordered = np.sort(proba, axis=1)
    close = ordered[:, -2] >= config.runner_up_ratio * ordered[:, -1]
    answered = (confidence >= config.answer_threshold) & ~close
    return proba.argmax(axis=1), confidence, answered


def auroc(in_scope: np.ndarray, score: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    if in_scope.all() or not in_scope.any():
        return None
    return round(float(roc_auc_score(in_scope, score)), 4)


def one_run(
    faq: np.ndarray,
    faq_labels: np.ndarray,
    faq_forms: list[str],
    n_entries: int,
    questions: list[tuple[str | None, str | None]],
    vectors: np.ndarray,
    forms: list[str],
    entry_of: dict[str, int],
    *,
    k: int,
    seed: int,
    in_scope: int,
) -> dict[str, Any]:
    rng = random.Random(seed)
    held = sorted({gap for _, gap in questions if gap})
    rows: dict[str, list[int]] = defaultdict(list)
    for i, (_, gap) in enumerate(questions):
        if gap:
            rows[gap].append(i)
    new_rows, new_labels, asked, truth, kind = [], [], [], [], []
    for n, gap in enumerate(held):
        mine = rows[gap][:]
        rng.shuffle(mine)
        new_rows += mine[:k]
        new_labels += [n_entries + n] * len(mine[:k])
        asked += mine[k:]
        truth += [n_entries + n] * len(mine[k:])
        kind += [gap] * len(mine[k:])
    inside = [i for i, (expected, _) in enumerate(questions) if expected is not None]
    outside = [i for i, (expected, gap) in enumerate(questions) if expected is None and not gap]
    for i in rng.sample(inside, min(in_scope, len(inside))):
        asked.append(i)
        truth.append(entry_of[str(questions[i][0])])
        kind.append("in_scope")
    asked += outside
    truth += [-1] * len(outside)
    kind += ["out_of_scope"] * len(outside)
    texts = np.vstack([faq, vectors[new_rows]]).astype(np.float32)
    text_forms = faq_forms + [forms[i] for i in new_rows]
    labels = np.concatenate([faq_labels, np.asarray(new_labels, dtype=np.int64)])
    n_all = n_entries + len(held)
    queries = vectors[asked]
    query_forms = [forms[i] for i in asked]
    truth_a, kind_a = np.asarray(truth), np.asarray(kind)
    out: dict[str, Any] = {"k": k, "seed": seed}
    shipped = linear.lift_weights
    for name, weights in (("unweighted", None), ("lifted", shipped)):
        linear.lift_weights = weights or (lambda labels: np.ones(len(labels)))  # type: ignore[assignment]
        try:
            scorer = scoring.Scorer.fit(texts, labels, n_all, texts=text_forms)
        finally:
            linear.lift_weights = shipped
        top, confidence, answered = decide(scorer, queries, query_forms, texts, labels)
        right = answered & (top == truth_a)
        wrong = answered & (top != truth_a)
        new = np.isin(kind_a, held)
        per_intent = [float(right[kind_a == g].mean()) for g in held if (kind_a == g).any()]
        mine = kind_a == "in_scope"
        oos = kind_a == "out_of_scope"
        known = mine | oos
        out[name] = {
            "new_answered_right": round(float(right[new].mean()), 4),
            "new_answered_wrong": round(float(wrong[new].mean()), 4),
            "held_out_right_80": sum(s >= RIGHT_ENOUGH for s in per_intent),
            "original_answered_right": round(float(right[mine].mean()), 4),
            "original_answered_wrong": round(float(wrong[mine].mean()), 4),
            "out_of_scope_answered": round(float(answered[oos].mean()), 4) if oos.any() else None,
            "oos_auroc": auroc(mine[known], confidence[known]),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--set", type=Path, default=REPO.parent / "shared" / "data" / "clinc150_gap"
    )
    parser.add_argument("--k", default="3,6,10", help="texts per new entry (comma-separated)")
    parser.add_argument("--seeds", default="1,2", help="comma-separated")
    parser.add_argument("--in-scope", type=int, default=1500)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "new_entries.json")
    args = parser.parse_args()
    kb = load_knowledge(args.set / "faq.jsonl")
    index = KnowledgeIndex.build(kb, get_encoder())
    faq = index.index.vectors()
    faq_labels = np.asarray(index.index.labels, dtype=np.int64)
    entry_of = {e.id: i for i, e in enumerate(index.entries)}
    labelled = load_questions(args.set / "test.jsonl")
    questions = [(q.expected_id, q.gap_topic) for q in labelled]
    forms = index.query_forms([q.question for q in labelled])
    vectors = index.encoder.encode(forms, kind="query")
    faq_forms = index.query_forms(index.texts)
    runs = []
    for k in (int(x) for x in args.k.split(",")):
        for seed in (int(x) for x in args.seeds.split(",")):
            run = one_run(
                faq,
                faq_labels,
                faq_forms,
                len(index.entries),
                questions,
                vectors,
                forms,
                entry_of,
                k=k,
                seed=seed,
                in_scope=args.in_scope,
            )
            print(json.dumps(run), flush=True)
            runs.append(run)
    result = {
        "date": datetime.now(UTC).date().isoformat(),
        "set": args.set.name,
        "encoder": index.encoder.name,
        "runs": runs,
    }
    previous = json.loads(args.out.read_text("utf-8")) if args.out.exists() else {}
    by_set = {r["set"]: r for r in previous.get("sets", [])} | {args.set.name: result}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"sets": list(by_set.values())}, indent=2) + "\n", "utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
