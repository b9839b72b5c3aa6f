"""run_eval(...) -> EvalReport: how good is the bot on labelled questions, which thresholds to
run, and what it would get wrong.

Labelled questions (JSONL or CSV, read by autoreply.eval_questions) are ranked by the engine
in batches. Ranking quality, out-of-scope detection, calibration, the precision–coverage curve
and the recommended thresholds come from the rankings alone (autoreply.ranking_metrics); the
decision mix comes from running the engine at those thresholds. Anything with
``rank(texts, k=...)`` (a Ranker) can be scored the same way with ``evaluate_ranker``: bench/
does so for its BM25 and MiniLM baselines. ``split=K`` evaluates a knowledge base without
labels by holding out every K-th variant as a question. The report's schema, the regression
gate and the HTML live in autoreply.eval_report.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from autoreply import ranking_metrics as m
from autoreply.encoder import Encoder, Kind, get_encoder
from autoreply.engine import Engine
from autoreply.errors import ConfigError
from autoreply.eval_questions import LabelledQuestion, check_ids, load_questions
from autoreply.eval_report import (
    ConfusedPair,
    Counts,
    DecisionMix,
    EvalReport,
    FoldResult,
    GapClustering,
    Latency,
    Thresholds,
)
from autoreply.gap_clustering import TopicConfig, cluster_quality
from autoreply.knowledge import KnowledgeBase, load_knowledge
from autoreply.knowledge_index import KnowledgeIndex
from autoreply.models import Action, Candidate, Decision
from autoreply.settings import EngineConfig

if TYPE_CHECKING:
    from rich.progress import Progress

RECALL_AT = (1, 3, 5, 10)
BATCH = 128
LATENCY_SAMPLES = 100
OUT_OF_SCOPE = "out-of-scope"
GAP_SWEEP = (0.6, 0.8, 1.0, 1.1, 1.2, 1.3, 1.4, 1.6, 2.0)
"""Ward distance thresholds tried for gap clustering (as autoreply.gap_clustering clusters)."""
GAP_MAX_QUESTIONS = 2000


class Ranker(Protocol):
    """Ranks FAQ entries for texts, best first, each with a 0..1 ``confidence``.

    The Engine is one; bench/quality.py wraps BM25 and sentence-transformers as others.
    """

    def rank(self, texts: Sequence[str], *, k: int = 10) -> list[list[Candidate]]: ...


# -- scoring -----------------------------------------------------------------------------


def _ranks(
    questions: Sequence[LabelledQuestion], rankings: Sequence[Sequence[Candidate]]
) -> list[int | None]:
    if len(questions) != len(rankings):
        raise ValueError(f"{len(questions)} questions but {len(rankings)} rankings")
    return [
        m.first_correct_rank([c.entry_id for c in r], q.correct_ids)
        for q, r in zip(questions, rankings, strict=True)
    ]


def _top1_confidence(rankings: Sequence[Sequence[Candidate]]) -> list[float]:
    return [r[0].confidence if r else 0.0 for r in rankings]


def recommend(
    questions: Sequence[LabelledQuestion],
    rankings: Sequence[Sequence[Candidate]],
    *,
    target_precision: float,
    max_candidates: int = 5,
) -> Thresholds:
    """Answer and clarify thresholds on top-1 confidence that reach the target precision."""
    ranks = _ranks(questions, rankings)
    conf = _top1_confidence(rankings)
    top1_ok = [r == 1 for r in ranks]
    offered = [r is not None and r <= max_candidates for r in ranks]
    answer, clarify = m.recommend_thresholds(
        conf, top1_ok, offered, target_precision=target_precision
    )
    point = m.lowest_threshold(m.precision_coverage(conf, top1_ok), target_precision)
    return Thresholds(
        target_precision=target_precision,
        answer=answer,
        clarify=clarify,
        answer_coverage=point.coverage if point else 0.0,
        answer_precision=point.precision if point else None,
    )


def build_report(
    questions: Sequence[LabelledQuestion],
    rankings: Sequence[Sequence[Candidate]],
    kb: KnowledgeBase,
    /,
    *,
    thresholds: Thresholds,
    k: int = 10,
    decisions: Sequence[Decision] | None = None,
    config: EngineConfig | None = None,
    **fields: Any,
) -> EvalReport:
    """Every metric of one run. Without ``decisions`` a question counts as answered when its
    top-1 confidence reaches the answer threshold; with them, when the engine answered it.
    ``fields`` fill the report's descriptive fields (method, questions, encoder, latency, ...).
    """
    ranks = _ranks(questions, rankings)
    conf = _top1_confidence(rankings)
    top1_ok = [r == 1 for r in ranks]
    scope = [q.in_scope for q in questions]
    inside = [r for r, s in zip(ranks, scope, strict=True) if s]
    curve = m.precision_coverage(conf, top1_ok)
    if decisions is None:
        cut = thresholds.answer
        answered = [cut is not None and c >= cut for c in conf]
        right = [a and ok for a, ok in zip(answered, top1_ok, strict=True)]
        mix = None
    else:
        answered = [d.action is Action.ANSWER for d in decisions]
        right = [
            a and d.entry_id in q.correct_ids
            for a, d, q in zip(answered, decisions, questions, strict=True)
        ]
        mix = _decision_mix(questions, decisions, right, config or EngineConfig())
    oos = [a for a, s in zip(answered, scope, strict=True) if not s]
    series = {
        "in_scope_correct": [c for c, s, ok in zip(conf, scope, top1_ok, strict=True) if s and ok],
        "in_scope_wrong": [
            c for c, s, ok in zip(conf, scope, top1_ok, strict=True) if s and not ok
        ],
        "out_of_scope": [c for c, s in zip(conf, scope, strict=True) if not s],
    }
    fields.setdefault("knowledge", ", ".join(kb.sources) or "(in memory)")
    return EvalReport(
        k=k,
        counts=Counts(
            questions=len(questions),
            in_scope=len(inside),
            out_of_scope=len(questions) - len(inside),
            entries=len(kb.enabled),
        ),
        top1=m.top1_accuracy(inside) if inside else None,
        recall={str(n): m.recall_at_k(inside, n) for n in RECALL_AT if n <= k} if inside else {},
        mrr=m.mrr_at_k(inside, min(k, 10)) if inside else None,
        auroc=m.auroc(
            series["in_scope_correct"] + series["in_scope_wrong"], series["out_of_scope"]
        ),
        precision_at_80=m.precision_at_coverage(curve, 0.8),
        coverage_at_95=m.coverage_at_precision(curve, 0.95),
        ece=m.expected_calibration_error(conf, top1_ok),
        false_answer_rate=(sum(answered) - sum(right)) / max(len(questions), 1),
        oos_answered_rate=sum(oos) / len(oos) if oos else None,
        thresholds=thresholds,
        decisions=mix,
        categories=m.category_scores(
            [_category(q, kb) for q in questions], scope, top1_ok, answered, right
        ),
        confusions=_confusions(questions, rankings, top1_ok, kb),
        curve=_thin(curve, 200),
        histograms={name: m.histogram(values) for name, values in series.items()},
        calibration=m.calibration_bins(conf, top1_ok),
        **fields,
    )


def _decision_mix(
    questions: Sequence[LabelledQuestion],
    decisions: Sequence[Decision],
    right: Sequence[bool],
    config: EngineConfig,
) -> DecisionMix:
    n = max(len(decisions), 1)
    actions = Counter(d.action for d in decisions)
    asked = [
        (d, q) for d, q in zip(decisions, questions, strict=True) if d.action is Action.CLARIFY
    ]
    hits = sum(1 for d, q in asked if q.correct_ids & {c.entry_id for c in d.candidates})
    return DecisionMix(
        answer=actions[Action.ANSWER] / n,
        clarify=actions[Action.CLARIFY] / n,
        escalate=actions[Action.ESCALATE] / n,
        answered_correct=sum(right) / n,
        answered_wrong=(actions[Action.ANSWER] - sum(right)) / n,
        clarify_hit=hits / len(asked) if asked else None,
        reasons=dict(sorted(Counter(d.reason.value for d in decisions).items())),
        config=config.model_dump(mode="json"),
    )


def _category(q: LabelledQuestion, kb: KnowledgeBase) -> str:
    if q.category:
        return q.category
    if q.expected_id is not None and q.expected_id in kb:
        return kb.get(q.expected_id).category
    return OUT_OF_SCOPE


def _confusions(
    questions: Sequence[LabelledQuestion],
    rankings: Sequence[Sequence[Candidate]],
    top1_ok: Sequence[bool],
    kb: KnowledgeBase,
) -> list[ConfusedPair]:
    top = [r[0] if r else None for r in rankings]
    names = {c.entry_id: c.question for c in top if c is not None}
    found = m.confusions(
        [q.expected_id for q in questions],
        [c.entry_id if c else None for c in top],
        top1_ok,
        [q.question for q in questions],
    )
    return [
        ConfusedPair(
            expected_id=c.expected_id,
            expected_question=kb.get(c.expected_id).question,
            predicted_id=c.predicted_id,
            predicted_question=names[c.predicted_id],
            count=c.count,
            examples=list(c.examples),
        )
        for c in found
    ]


def _thin(curve: list[m.CurvePoint], limit: int) -> list[m.CurvePoint]:
    """At most ``limit`` points, evenly spread, keeping both ends."""
    if len(curve) <= limit:
        return curve
    return [curve[i] for i in sorted({int(i) for i in np.linspace(0, len(curve) - 1, limit)})]


def gap_clustering(
    questions: Sequence[LabelledQuestion],
    encode: Callable[[list[str]], np.ndarray],
    *,
    distance_threshold: float,
) -> GapClustering | None:
    """Cluster the questions that have a gap_topic as autoreply.gap_clustering does (Ward on the
    unit vectors); ARI/NMI against the topics at ``distance_threshold``, plus a sweep."""
    gaps = [q for q in questions if q.gap_topic][:GAP_MAX_QUESTIONS]
    if len(gaps) < 2:
        return None
    vectors = encode([q.question for q in gaps])
    topics = [q.gap_topic or "" for q in gaps]
    sweep = []
    for t in sorted({*GAP_SWEEP, distance_threshold}):
        quality = cluster_quality(vectors, topics, threshold=t)
        sweep.append(
            {"threshold": t, "clusters": quality.clusters, "ari": quality.ari, "nmi": quality.nmi}
        )
    chosen = cluster_quality(vectors, topics, threshold=distance_threshold)
    return GapClustering(**dataclasses.asdict(chosen), sweep=sweep)


# -- running -----------------------------------------------------------------------------


@contextmanager
def _progress(enabled: bool) -> Iterator[Progress | None]:
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn())
    counts = (MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, *counts, console=Console(stderr=True), transient=True) as bar:
        yield bar


def rank_all(
    ranker: Ranker, texts: Sequence[str], *, k: int = 10, progress: Progress | None = None
) -> tuple[list[list[Candidate]], float]:
    """Rankings of all texts, in batches, and the throughput in questions per second."""
    task = progress.add_task("ranking questions", total=len(texts)) if progress else None
    rankings: list[list[Candidate]] = []
    start = time.perf_counter()
    for i in range(0, len(texts), BATCH):
        batch = list(texts[i : i + BATCH])
        rankings += ranker.rank(batch, k=k)
        if progress is not None and task is not None:
            progress.advance(task, len(batch))
    seconds = time.perf_counter() - start
    if progress is not None and task is not None:
        progress.remove_task(task)
    return rankings, len(texts) / seconds if seconds > 0 else 0.0


def measure_latency(ranker: Ranker, texts: Sequence[str], *, k: int = 10) -> Latency:
    """p50/p95 of single-question ``rank`` calls over an even sample of at most 100 texts."""
    if not texts:
        return Latency(samples=0, p50_ms=0.0, p95_ms=0.0)
    picks = sorted(
        {int(i) for i in np.linspace(0, len(texts) - 1, min(LATENCY_SAMPLES, len(texts)))}
    )
    ranker.rank([texts[picks[0]]], k=k)  # warm-up: first-call costs are not per-query latency
    times = []
    for i in picks:
        start = time.perf_counter()
        ranker.rank([texts[i]], k=k)
        times.append((time.perf_counter() - start) * 1000)
    return Latency(
        samples=len(times), p50_ms=m.percentile(times, 50), p95_ms=m.percentile(times, 95)
    )


def evaluate_ranker(
    ranker: Ranker,
    kb: KnowledgeBase,
    questions: Sequence[LabelledQuestion],
    /,
    *,
    method: str,
    k: int = 10,
    target_precision: float = 0.9,
    max_candidates: int = 5,
    progress: bool = False,
    **fields: Any,
) -> EvalReport:
    """Score any Ranker on labelled questions: everything but the engine's decision mix."""
    texts = [q.question for q in questions]
    with _progress(progress) as bar:
        rankings, qps = rank_all(ranker, texts, k=k, progress=bar)
    latency = measure_latency(ranker, texts, k=k)
    latency.batch_qps = qps
    thresholds = recommend(
        questions, rankings, target_precision=target_precision, max_candidates=max_candidates
    )
    fields.setdefault("questions", "(in memory)")
    return build_report(
        questions,
        rankings,
        kb,
        thresholds=thresholds,
        k=k,
        method=method,
        latency=latency,
        **fields,
    )


class _MemoEncoder:
    """Wraps an encoder and remembers knowledge-base vectors: a split's folds re-encode nothing."""

    def __init__(self, inner: Encoder) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self._memo: dict[tuple[str, str], np.ndarray] = {}

    def encode(self, texts: Sequence[str], *, kind: Kind = "query") -> np.ndarray:
        if kind != "passage":  # each query is asked once; and latency must not hit the memo
            return self.inner.encode(texts, kind=kind)
        missing = [t for t in dict.fromkeys(texts) if (kind, t) not in self._memo]
        if missing:
            vectors = self.inner.encode(missing, kind=kind)
            self._memo.update({(kind, t): v for t, v in zip(missing, vectors, strict=True)})
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._memo[(kind, t)] for t in texts])


def holdout_folds(
    kb: KnowledgeBase, folds: int
) -> list[tuple[KnowledgeBase, list[LabelledQuestion]]]:
    """Leave-variants-out folds: fold i holds out every ``folds``-th variant (counting from i)
    of the enabled entries, as questions expecting their entry; its knowledge base lacks them.
    Every entry keeps its question, so none disappears."""
    if folds < 2:
        raise ConfigError(f"a split needs at least 2 folds, got {folds}")
    variants = [(e, v) for e in kb.enabled if len(e.texts) >= 2 for v in e.variants]
    if not variants:
        raise ConfigError("no entry has a variant to hold out: a split needs entries with variants")
    result = []
    for fold in range(folds):
        held = variants[fold::folds]
        removed: dict[str, set[str]] = {}
        for entry, variant in held:
            removed.setdefault(entry.id, set()).add(variant)
        entries = tuple(
            e.model_copy(
                update={"variants": tuple(v for v in e.variants if v not in removed[e.id])}
            )
            if e.id in removed
            else e
            for e in kb.entries
        )
        questions = [
            LabelledQuestion(question=v, expected_id=e.id, category=e.category) for e, v in held
        ]
        result.append((dataclasses.replace(kb, entries=entries), questions))
    return result


def _build(
    kb: KnowledgeBase, enc: Encoder, config: EngineConfig, bar: Progress | None
) -> tuple[Engine, float]:
    task = bar.add_task(f"encoding {len(kb.enabled)} entries", total=None) if bar else None
    start = time.perf_counter()
    index = KnowledgeIndex.build(kb, enc)
    seconds = time.perf_counter() - start
    if bar is not None and task is not None:
        bar.remove_task(task)
    return Engine(index, config=config), seconds


def _tuned(config: EngineConfig, thresholds: Thresholds) -> EngineConfig:
    answer = 1.0 if thresholds.answer is None else thresholds.answer
    clarify = answer if thresholds.clarify is None else thresholds.clarify
    data = config.model_dump() | {"answer_threshold": answer, "clarify_threshold": clarify}
    return EngineConfig.model_validate(data)


def _questions(
    questions_or_path: Sequence[LabelledQuestion] | str | Path, kb: KnowledgeBase
) -> tuple[str, list[LabelledQuestion]]:
    if isinstance(questions_or_path, str | Path):
        return str(questions_or_path), load_questions(questions_or_path, kb=kb)
    questions = list(questions_or_path)
    if not questions:
        raise ConfigError("no questions to evaluate")
    check_ids(questions, kb, source="(in memory)")
    return "(in memory)", questions


def _fold(
    i: int, questions: Sequence[LabelledQuestion], ranked: list[list[Candidate]]
) -> FoldResult:
    ranks = _ranks(questions, ranked)
    top1, mrr = m.top1_accuracy(ranks), m.mrr_at_k(ranks, 10)
    return FoldResult(fold=i, questions=len(questions), top1=top1, mrr=mrr)


def run_eval(
    kb_or_path: KnowledgeBase | str | Path,
    questions_or_path: Sequence[LabelledQuestion] | str | Path | None = None,
    *,
    encoder: Encoder | str | None = None,
    engine_config: EngineConfig | None = None,
    target_precision: float = 0.9,
    k: int = 10,
    split: int | None = None,
    progress: bool = False,
    gap_distance_threshold: float = TopicConfig.ward_threshold,
) -> EvalReport:
    """Evaluate the engine on labelled questions, or with ``split=K`` on held-out variants.

    Builds a fresh in-memory index (its build time is reported), ranks every question, measures
    ranking, out-of-scope detection, calibration and latency, recommends answer and clarify
    thresholds for ``target_precision`` and runs the engine's decisions at those thresholds
    (other settings from ``engine_config``). ``encoder``: an Encoder or a spec ("e5" default).
    ``gap_distance_threshold``: where gap clustering cuts (Ward distance; 1.2 suits e5).
    """
    if not 0 < target_precision <= 1:
        raise ConfigError(f"target precision must be above 0 and at most 1, got {target_precision}")
    if not 1 <= k <= 100:
        raise ConfigError(f"k must be between 1 and 100, got {k}")
    if (split is None) == (questions_or_path is None):
        raise ConfigError("give labelled questions or a split K to hold out variants (not both)")
    kb = kb_or_path if isinstance(kb_or_path, KnowledgeBase) else load_knowledge(kb_or_path)
    enc = get_encoder(encoder or "e5") if encoder is None or isinstance(encoder, str) else encoder
    config = engine_config or EngineConfig()
    # Questions are read and checked (or folds made) before the slow index build.
    if questions_or_path is not None:
        source, questions = _questions(questions_or_path, kb)
        parts = [(kb, questions)]
    else:
        enc = _MemoEncoder(enc)
        source = f"split:{split} (leave variants out)"
        parts = [(part, qs) for part, qs in holdout_folds(kb, split or 0) if qs]
        questions = [q for _, qs in parts for q in qs]
    with _progress(progress) as bar:
        engine, build_seconds = _build(kb, enc, config, bar)
        rankers = [engine] if split is None else [_build(p, enc, config, bar)[0] for p, _ in parts]
        rankings: list[list[Candidate]] = []
        folds, seconds = [], 0.0
        for i, (ranker, (_, qs)) in enumerate(zip(rankers, parts, strict=True)):
            start = time.perf_counter()
            ranked, _ = rank_all(ranker, [q.question for q in qs], k=k, progress=bar)
            seconds += time.perf_counter() - start
            rankings += ranked
            folds.append(_fold(i, qs, ranked))
        thresholds = recommend(
            questions,
            rankings,
            target_precision=target_precision,
            max_candidates=config.max_candidates,
        )
        tuned = _tuned(config, thresholds)
        task = bar.add_task("deciding at the recommended thresholds", total=None) if bar else None
        decisions = [
            d
            for ranker, (_, qs) in zip(rankers, parts, strict=True)
            for d in Engine(ranker.index, config=tuned).decide_many([q.question for q in qs])
        ]
        if bar is not None and task is not None:
            bar.remove_task(task)
        texts = [q.question for q in questions]
        latency = measure_latency(engine, texts, k=k)
        latency.batch_qps = len(texts) / seconds if seconds else None
        gaps = gap_clustering(
            questions, engine.index.encode_queries, distance_threshold=gap_distance_threshold
        )
    return build_report(
        questions,
        rankings,
        kb,
        thresholds=thresholds,
        k=k,
        decisions=decisions,
        config=tuned,
        method="engine",
        questions=source,
        encoder=enc.name,
        split=split,
        latency=latency,
        index_build_seconds=build_seconds,
        gap_clustering=gaps,
        folds=folds if split is not None else [],
    )
