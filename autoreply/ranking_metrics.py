"""Evaluation metrics on plain numbers: ranks, AUROC, precision–coverage, thresholds, calibration.

Pure functions with no engine and no I/O, so each one is tested on small hand-made inputs.
Conventions: a *rank* is the 1-based position of the first correct entry in a ranking (None
when no correct entry was ranked); a question is *answered* at threshold t when its top-1
confidence is ≥ t; answering an out-of-scope question always counts as wrong.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CurvePoint:
    """Answering every question whose top-1 confidence is ≥ ``threshold``."""

    threshold: float
    precision: float
    """Answered correctly / answered."""
    coverage: float
    """Answered / all questions."""
    answered: int
    correct: int


@dataclass(frozen=True)
class CalibrationBin:
    lower: float
    upper: float
    count: int
    confidence: float
    """Mean confidence in the bin (0 when empty)."""
    accuracy: float
    """Share correct in the bin (0 when empty)."""


@dataclass(frozen=True)
class CategoryScore:
    """One group of questions (a category): how well it is ranked and answered."""

    category: str
    count: int
    in_scope: int
    top1: float | None
    """Top-1 accuracy on its in-scope questions (None: none in scope)."""
    answered: float
    """Share of its questions answered."""
    precision: float | None
    """Share of its answers that were right (None: nothing answered)."""


@dataclass(frozen=True)
class Confusion:
    """In-scope questions expecting one entry whose top-1 was another."""

    expected_id: str
    predicted_id: str
    count: int
    examples: tuple[str, ...]


@dataclass(frozen=True)
class ClusterQuality:
    """How well clustering questions recovers their true topics."""

    questions: int
    topics: int
    clusters: int
    ari: float
    nmi: float
    distance_threshold: float


# -- ranking -----------------------------------------------------------------------------


def first_correct_rank(ranked_ids: Sequence[str], correct: Collection[str]) -> int | None:
    """The 1-based position of the first id in ``correct``; None if none was ranked."""
    for position, entry_id in enumerate(ranked_ids, start=1):
        if entry_id in correct:
            return position
    return None


def recall_at_k(ranks: Sequence[int | None], k: int) -> float:
    """Share of questions whose correct entry is in the top ``k`` (top-1 accuracy at k=1)."""
    if not ranks:
        return 0.0
    return sum(1 for r in ranks if r is not None and r <= k) / len(ranks)


def top1_accuracy(ranks: Sequence[int | None]) -> float:
    """Share of questions whose best-ranked entry is correct."""
    return recall_at_k(ranks, 1)


def mrr_at_k(ranks: Sequence[int | None], k: int = 10) -> float:
    """Mean reciprocal rank, counting a correct entry below position ``k`` (or none) as 0."""
    if not ranks:
        return 0.0
    return sum(1.0 / r for r in ranks if r is not None and r <= k) / len(ranks)


def confusions(
    expected: Sequence[str | None],
    predicted: Sequence[str | None],
    top1_ok: Sequence[bool],
    texts: Sequence[str],
    *,
    top: int = 10,
) -> list[Confusion]:
    """The most frequent (expected → predicted) pairs among in-scope questions answered wrong
    at top-1, most frequent first, with up to 3 example questions each."""
    pairs: dict[tuple[str, str], list[str]] = {}
    for want, got, ok, text in zip(expected, predicted, top1_ok, texts, strict=True):
        if want is not None and got is not None and not ok:
            pairs.setdefault((want, got), []).append(text)
    ordered = sorted(pairs.items(), key=lambda p: (-len(p[1]), p[0]))[:top]
    return [Confusion(want, got, len(ex), tuple(ex[:3])) for (want, got), ex in ordered]


def category_scores(
    categories: Sequence[str],
    in_scope: Sequence[bool],
    top1_ok: Sequence[bool],
    answered: Sequence[bool],
    right: Sequence[bool],
) -> list[CategoryScore]:
    """Per-category counts, top-1 accuracy, answered share and precision; largest first."""
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(categories):
        groups.setdefault(name, []).append(i)
    rows = []
    for name, idx in sorted(groups.items(), key=lambda g: (-len(g[1]), g[0])):
        scoped = [top1_ok[i] for i in idx if in_scope[i]]
        said = sum(answered[i] for i in idx)
        rows.append(
            CategoryScore(
                category=name,
                count=len(idx),
                in_scope=len(scoped),
                top1=sum(scoped) / len(scoped) if scoped else None,
                answered=said / len(idx),
                precision=sum(right[i] for i in idx) / said if said else None,
            )
        )
    return rows


# -- out-of-scope detection --------------------------------------------------------------


def auroc(positive: Sequence[float], negative: Sequence[float]) -> float | None:
    """Probability that a random positive scores above a random negative (ties count half).

    Here positives are in-scope questions and negatives out-of-scope ones, scored by top-1
    confidence. None when either side is empty.
    """
    pos = np.asarray(positive, dtype=np.float64)
    neg = np.asarray(negative, dtype=np.float64)
    if pos.size == 0 or neg.size == 0:
        return None
    scores = np.concatenate([pos, neg])
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(scores.size, dtype=np.float64)
    sorted_scores = scores[order]
    start = 0
    while start < scores.size:  # average rank over each run of tied scores
        end = start
        while end + 1 < scores.size and sorted_scores[end + 1] == sorted_scores[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2 + 1
        start = end + 1
    u = ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2
    return float(u / (pos.size * neg.size))


# -- precision and coverage --------------------------------------------------------------


def precision_coverage(confidence: Sequence[float], correct: Sequence[bool]) -> list[CurvePoint]:
    """One point per distinct confidence, highest threshold (lowest coverage) first."""
    conf = np.asarray(confidence, dtype=np.float64)
    ok = np.asarray(correct, dtype=bool)
    if conf.size != ok.size:
        raise ValueError(f"{conf.size} confidences but {ok.size} outcomes")
    if conf.size == 0:
        return []
    order = np.argsort(-conf, kind="mergesort")
    conf, ok = conf[order], ok[order]
    hits = np.cumsum(ok)
    points = []
    for i in range(conf.size):
        if i + 1 < conf.size and conf[i + 1] == conf[i]:
            continue  # a threshold answers every question tied at it
        answered = i + 1
        points.append(
            CurvePoint(
                threshold=float(conf[i]),
                precision=float(hits[i] / answered),
                coverage=answered / conf.size,
                answered=answered,
                correct=int(hits[i]),
            )
        )
    return points


def precision_at_coverage(curve: Sequence[CurvePoint], coverage: float) -> float | None:
    """Precision when answering the most confident ``coverage`` share of questions.

    That is the point with the highest threshold whose coverage reaches ``coverage``.
    """
    for point in curve:
        if point.coverage >= coverage - 1e-12:
            return point.precision
    return None


def lowest_threshold(curve: Sequence[CurvePoint], precision: float) -> CurvePoint | None:
    """The lowest-threshold (highest-coverage) point whose precision reaches ``precision``."""
    best = None
    for point in curve:
        if point.precision >= precision - 1e-12:
            best = point
    return best


def coverage_at_precision(curve: Sequence[CurvePoint], precision: float) -> float:
    """The largest share of questions that can be answered with at least ``precision``."""
    point = lowest_threshold(curve, precision)
    return point.coverage if point is not None else 0.0


def recommend_thresholds(
    confidence: Sequence[float],
    top1_correct: Sequence[bool],
    in_candidates: Sequence[bool],
    *,
    target_precision: float,
) -> tuple[float | None, float | None]:
    """(answer, clarify) thresholds on top-1 confidence for a target precision.

    Answer: the lowest threshold whose answers are right at least ``target_precision`` of the
    time. Clarify: the lowest threshold at which the right entry is among the offered
    candidates (``in_candidates``) that often; the answer threshold when no threshold gets
    there. (None, None) when even the most confident answers miss the target.
    """
    answer = lowest_threshold(precision_coverage(confidence, top1_correct), target_precision)
    clarify = lowest_threshold(precision_coverage(confidence, in_candidates), target_precision)
    if answer is None:
        return None, None
    if clarify is None:
        return answer.threshold, answer.threshold
    return answer.threshold, min(clarify.threshold, answer.threshold)


# -- calibration -------------------------------------------------------------------------


def calibration_bins(
    confidence: Sequence[float], correct: Sequence[bool], *, bins: int = 10
) -> list[CalibrationBin]:
    """Equal-width bins over 0..1 (the last one includes 1.0): mean confidence vs accuracy."""
    conf = np.clip(np.asarray(confidence, dtype=np.float64), 0.0, 1.0)
    ok = np.asarray(correct, dtype=np.float64)
    which = np.minimum((conf * bins).astype(int), bins - 1)
    result = []
    for b in range(bins):
        mask = which == b
        n = int(mask.sum())
        result.append(
            CalibrationBin(
                lower=b / bins,
                upper=(b + 1) / bins,
                count=n,
                confidence=float(conf[mask].mean()) if n else 0.0,
                accuracy=float(ok[mask].mean()) if n else 0.0,
            )
        )
    return result


def expected_calibration_error(
    confidence: Sequence[float], correct: Sequence[bool], *, bins: int = 10
) -> float | None:
    """Σ (bin share) × |accuracy − mean confidence| over equal-width bins; None if empty."""
    total = len(confidence)
    if total == 0:
        return None
    return sum(
        b.count / total * abs(b.accuracy - b.confidence)
        for b in calibration_bins(confidence, correct, bins=bins)
    )


# -- distributions -----------------------------------------------------------------------


def histogram(values: Sequence[float], *, bins: int = 20) -> list[int]:
    """Counts in equal-width bins over 0..1 (values outside are clipped into the end bins)."""
    conf = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)
    which = np.minimum((conf * bins).astype(int), bins - 1)
    return [int(c) for c in np.bincount(which, minlength=bins)]


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear interpolation; 0 for no values."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else 0.0


# -- clustering --------------------------------------------------------------------------


def cluster_quality(
    labels: Sequence[int], topics: Sequence[str], *, distance_threshold: float
) -> ClusterQuality:
    """Found clusters (``labels``) scored against the true topics (ARI, NMI); the clustering
    itself is autoreply.gap_clustering's, which the service uses too."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    if len(labels) != len(topics):
        raise ValueError(f"{len(labels)} labels but {len(topics)} topics")
    return ClusterQuality(
        questions=len(topics),
        topics=len(set(topics)),
        clusters=len(set(labels)),
        ari=float(adjusted_rand_score(list(topics), list(labels))),
        nmi=float(normalized_mutual_info_score(list(topics), list(labels))),
        distance_threshold=distance_threshold,
    )
