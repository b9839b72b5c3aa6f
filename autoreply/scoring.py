"""Scorer: ranks FAQ entries for query vectors and gives each a calibrated confidence.

Three signals are combined:
- an entry classifier (logistic regression over the encoder's vectors of every question and
  variant, fitted when the index is built; the kind of light head dual-encoder intent
  detectors use), giving P(entry | query); an entry with fewer texts than the median entry
  weighs as much as a median one (``linear.lift_weights``), so a new entry is not drowned out
  by older, longer ones;
- a lexical classifier over the texts' character n-grams (``lexical.LexicalHead``), fitted
  beside it when the texts are given; its log-probabilities are mixed into the encoder
  head's (``mix``), so the exact words that tell two close entries apart count;
- nearest-text similarity (an entry's best question or variant).

Without a classifier (entries without variants), entries are ranked by nearest-text
similarity corrected for how crowded each text's neighbourhood is: a text close to many texts
of other entries (a hub) is near almost every question, so half its mean similarity to its
nearest other-entry texts is taken off (CSLS, cross-domain similarity local scaling). The
confidence features keep the plain cosines.

Confidence is P(the top entry is right), from a second logistic model over features of both
signals. It is fitted on the knowledge base itself, without labelled questions: held-out
variants stand in for in-scope questions, and whole held-out entries stand in for
out-of-scope ones (their texts must not be answered with another entry). So thresholds mean
the same on any knowledge base, and no labelled data is needed to start.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autoreply.lexical import WEIGHT as LEXICAL_WEIGHT
from autoreply.lexical import LexicalHead
from autoreply.linear import fit_linear

log = logging.getLogger(__name__)

SCORER_VERSION = 6
HEAD_MAX_ENTRIES = 5000
"""Above this many entries the classifier head is skipped (fit time); nearest text only."""
HEAD_MIN_TEXTS_PER_ENTRY = 2.0
"""Below this many texts (question + variants) per entry on average, the head is skipped: with
one text per entry it learns nothing nearest text does not know, and it ranks worse
(afqmc_dev, 2,150 entries without variants: MRR@10 0.376 with it, 0.397 without)."""
KNN_TEMPERATURE = 0.02
"""Softmax temperature that turns best-text similarities into P(entry) without a head."""
N_FEATURES = 5
DENSITY_NEIGHBOURS = 20
"""How many nearest texts of other entries measure a text's neighbourhood (CSLS's k)."""
DENSITY_MAX_TEXTS = 20_000
"""Above this many texts no correction is made: the measure compares every pair of texts
(an exact search for every text: about 2 s at 20,000 on 2 cores)."""


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=1, keepdims=True))


@dataclass(frozen=True)
class Head:
    """Linear entry classifier: P(entry | v) = softmax(v @ coef.T + intercept)."""

    coef: np.ndarray  # (n_entries, dim)
    intercept: np.ndarray  # (n_entries,)

    @classmethod
    def fit(cls, vectors: np.ndarray, labels: np.ndarray, n_entries: int, *, c: float) -> Head:
        """Fit on standardized vectors (encoder components are tiny, which stalls lbfgs),
        then fold the scaling back into the weights so queries need no scaler."""
        mean = vectors.mean(axis=0)
        scale = vectors.std(axis=0) + 1e-6
        coef, intercept = fit_linear((vectors - mean) / scale, labels, n_entries, c=c)
        trained = np.unique(labels)  # the others keep zero weights and a very low intercept
        coef[trained] /= scale
        intercept[trained] -= coef[trained] @ mean
        return cls(coef, intercept)

    def proba(self, queries: np.ndarray) -> np.ndarray:
        return _softmax(queries @ self.coef.T + self.intercept)


def mix(head_proba: np.ndarray, lexical_logits: np.ndarray) -> np.ndarray:
    """The encoder head's probabilities mixed with the lexical head's logits: a weighted
    product of the two distributions (``lexical.WEIGHT`` for the lexical one), renormalized."""
    lexical_log = np.log(_softmax(lexical_logits) + 1e-12)
    mixed = (1 - LEXICAL_WEIGHT) * np.log(head_proba + 1e-12) + LEXICAL_WEIGHT * lexical_log
    return _softmax(mixed)


def features(proba: np.ndarray, sims: np.ndarray, entry: np.ndarray) -> np.ndarray:
    """Confidence features of candidate ``entry[i]`` for query i.

    ``proba`` (q, n) is P(entry); ``sims`` (q, n) each entry's best-text similarity.
    Features: log P, P minus the best other P, the entry's similarity, the best similarity
    overall, the entry's similarity minus the best other entry's.
    """
    rows = np.arange(len(entry))
    p = proba[rows, entry]
    s = sims[rows, entry]
    other_p = proba.copy()
    other_p[rows, entry] = -np.inf
    other_s = sims.copy()
    other_s[rows, entry] = -np.inf
    best_other_p = other_p.max(axis=1) if proba.shape[1] > 1 else np.zeros(len(entry))
    best_other_s = other_s.max(axis=1) if sims.shape[1] > 1 else np.zeros(len(entry))
    return np.column_stack(
        [np.log(p + 1e-9), p - best_other_p, s, sims.max(axis=1), s - best_other_s]
    )


@dataclass(frozen=True)
class ConfidenceModel:
    """Logistic model of P(correct) over standardized features."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float

    def __call__(self, feats: np.ndarray) -> np.ndarray:
        z = ((feats - self.mean) / self.scale) @ self.weights + self.bias
        return np.asarray(1.0 / (1.0 + np.exp(-z)))

    @classmethod
    def fit(cls, feats: np.ndarray, correct: np.ndarray) -> ConfidenceModel:
        from sklearn.linear_model import LogisticRegression

        mean = feats.mean(axis=0)
        scale = feats.std(axis=0) + 1e-6
        model = LogisticRegression(C=1.0, max_iter=1000)
        model.fit((feats - mean) / scale, correct.astype(int))
        return cls(mean, scale, model.coef_[0].astype(np.float64), float(model.intercept_[0]))

    @classmethod
    def fallback(cls) -> ConfidenceModel:
        """For knowledge bases too small to fit on: trust a clear winner with a close text."""
        weights = np.array([0.0, 6.0, 30.0, 0.0, 10.0])
        mean = np.array([0.0, 0.5, 0.9, 0.0, 0.0])
        return cls(mean, np.ones(N_FEATURES), weights, 0.0)


def text_density(
    vectors: np.ndarray, labels: np.ndarray, *, k: int = DENSITY_NEIGHBOURS
) -> np.ndarray:
    """Each text's mean similarity to its ``k`` nearest texts of other entries.

    Zeros (no correction) when no text belongs to another entry; fewer than ``k`` neighbours
    when some entry has fewer other texts than that.
    """
    import faiss

    n = len(labels)
    out = np.zeros(n, dtype=np.float32)
    if n == 0:
        return out
    largest = int(np.unique(labels, return_counts=True)[1].max())
    kk = min(k, n - largest)
    if kk < 1:
        return out
    # At most ``largest`` of a text's neighbours (itself included) share its entry, so this
    # many nearest texts always hold ``kk`` of other entries.
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    sims, rows = index.search(np.ascontiguousarray(vectors, dtype=np.float32), kk + largest)
    other = labels[rows] != labels[:, None]
    take = other & (np.cumsum(other, axis=1) <= kk)
    return np.asarray((sims * take).sum(axis=1) / kk, dtype=np.float32)


class Scorer:
    """Entry probabilities and calibrated confidences for query vectors.

    ``density`` holds, for each text row (in the order the scorer was fitted on), how crowded
    its neighbourhood is (``text_density``; zeros when there is a classifier, which does the
    ranking); ``adjust`` takes half of it off a similarity, for ranking only.
    """

    def __init__(
        self,
        head: Head | None,
        confidence: ConfidenceModel,
        n_entries: int,
        density: np.ndarray,
        lexical: LexicalHead | None = None,
    ) -> None:
        self.head = head
        self.confidence = confidence
        self.n_entries = n_entries
        self.density = density.astype(np.float32)
        self.lexical = lexical

    def adjust(self, sims: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Similarities to the texts ``rows`` (last axis), corrected for crowded texts."""
        return np.asarray(sims - self.density[rows] / 2)

    def head_proba(self, queries: np.ndarray, texts: Sequence[str] | None) -> np.ndarray | None:
        """P(entry | query) over every entry from the classifiers, None without a head.

        ``texts`` are the queries' matched forms (``match_text``), needed when the scorer has
        a lexical head: the two heads' log-probabilities are mixed (``mix``)."""
        if self.head is None:
            return None
        if self.lexical is None:
            return self.head.proba(queries)
        if texts is None or len(texts) != len(queries):
            raise ValueError("this scorer has a lexical head: pass the queries' texts too")
        return mix(self.head.proba(queries), self.lexical.logits(texts))

    def proba(
        self, queries: np.ndarray, sims: np.ndarray, texts: Sequence[str] | None = None
    ) -> np.ndarray:
        """P(entry | query): the heads', or a softmax over (adjusted) best-text similarities."""
        proba = self.head_proba(queries, texts)
        return _softmax(sims / KNN_TEMPERATURE) if proba is None else proba

    def score_all(
        self,
        queries: np.ndarray,
        vectors: np.ndarray,
        labels: np.ndarray,
        texts: Sequence[str] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(P(entry) for every entry, confidence of the most likely one) for each query,
        against all the texts the scorer was fitted on: what ``KnowledgeIndex.rank`` does
        over its candidates only. ``texts``: the queries' matched forms (see ``head_proba``)."""
        sims, adjusted = best_per_entry(queries, vectors, labels, self.n_entries, self.density)
        proba = self.proba(queries, adjusted, texts)
        return proba, self.confidence(features(proba, sims, proba.argmax(axis=1)))

    # -- fitting ------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        vectors: np.ndarray,
        labels: np.ndarray,
        n_entries: int,
        *,
        texts: Sequence[str] | None = None,
        c: float = 0.3,
        folds: int = 3,
        seed: int = 42,
    ) -> Scorer:
        """Fit the heads on all texts, and the confidence model by cross-validation.

        ``texts`` (the matched form of each row of ``vectors``) add the lexical head beside
        the encoder's; without them the scorer works on vectors alone."""
        if texts is not None and len(texts) != len(labels):
            raise ValueError(f"texts: {len(texts)} given for {len(labels)} vectors, one per row")
        use_head = (
            2 <= n_entries <= HEAD_MAX_ENTRIES
            and len(labels) >= HEAD_MIN_TEXTS_PER_ENTRY * n_entries
        )
        head = Head.fit(vectors, labels, n_entries, c=c) if use_head else None
        lexical = (
            LexicalHead.fit(texts, labels, n_entries) if use_head and texts is not None else None
        )
        use_density = not use_head and len(labels) <= DENSITY_MAX_TEXTS
        try:
            confidence = _fit_confidence(
                vectors,
                labels,
                n_entries,
                c,
                folds,
                seed,
                use_head,
                use_density,
                texts if lexical is not None else None,
            )
        except ValueError as exc:
            log.info("confidence model: using the fallback (%s)", exc)
            confidence = ConfidenceModel.fallback()
        if use_density:
            density = text_density(vectors, labels)
        else:
            density = np.zeros(len(labels), dtype=np.float32)
        return cls(head, confidence, n_entries, density, lexical)

    # -- persistence --------------------------------------------------------------------
    def save(self, path: Path) -> None:
        arrays: dict[str, np.ndarray] = {
            "version": np.array(SCORER_VERSION),
            "n_entries": np.array(self.n_entries),
            "mean": self.confidence.mean,
            "scale": self.confidence.scale,
            "weights": self.confidence.weights,
            "bias": np.array(self.confidence.bias),
            "density": self.density,
        }
        if self.head is not None:
            arrays["coef"] = self.head.coef
            arrays["intercept"] = self.head.intercept
        if self.lexical is not None:
            arrays["lex_vocab"] = self.lexical.vocab
            arrays["lex_idf"] = self.lexical.idf
            arrays["lex_coef"] = self.lexical.coef
            arrays["lex_intercept"] = self.lexical.intercept
        np.savez(path, **arrays)  # type: ignore[arg-type]

    @classmethod
    def load(cls, path: Path) -> Scorer | None:
        """The saved scorer, or None if missing, unreadable or of another version."""
        try:
            with np.load(path) as data:
                if int(data["version"]) != SCORER_VERSION:
                    return None
                head = Head(data["coef"], data["intercept"]) if "coef" in data else None
                lexical = None
                if "lex_vocab" in data:
                    lexical = LexicalHead(
                        data["lex_vocab"], data["lex_idf"], data["lex_coef"], data["lex_intercept"]
                    )
                conf = ConfidenceModel(
                    data["mean"], data["scale"], data["weights"], float(data["bias"])
                )
                return cls(head, conf, int(data["n_entries"]), data["density"], lexical)
        except (OSError, ValueError, KeyError):
            return None


def best_per_entry(
    queries: np.ndarray,
    vectors: np.ndarray,
    labels: np.ndarray,
    n: int,
    density: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(cosines, adjusted), each (q, n): the best cosine of each entry's texts, and its best
    similarity after half of ``density`` (one value per text) is taken off each text's, as
    ``Scorer.adjust`` does (the cosines again without ``density``). -1 for entries without
    texts. One product of the queries with the texts serves both."""
    sims = queries @ vectors.T
    cosines = _max_per_entry(sims, labels, n)
    if density is None:
        return cosines, cosines
    return cosines, _max_per_entry(sims - density / 2, labels, n)


def _max_per_entry(sims: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    out = np.full((len(sims), n), -1.0, dtype=np.float32)
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    starts = np.searchsorted(sorted_labels, np.arange(n))
    ends = np.searchsorted(sorted_labels, np.arange(n), side="right")
    for e in range(n):
        if ends[e] > starts[e]:
            out[:, e] = sims[:, order[starts[e] : ends[e]]].max(axis=1)
    return out


def _fit_confidence(
    vectors: np.ndarray,
    labels: np.ndarray,
    n_entries: int,
    c: float,
    folds: int,
    seed: int,
    use_head: bool,
    use_density: bool,
    texts: Sequence[str] | None,
) -> ConfidenceModel:
    """Cross-validated features: held-out variants (in scope) and held-out entries (out of
    scope, never correct)."""
    if n_entries < 3 or len(labels) < 2 * n_entries:
        raise ValueError("too few entries or variants to fit a confidence model")
    rng = np.random.default_rng(seed)
    rows = np.arange(len(labels))
    feats, correct = [], []
    for fold in range(folds):
        out_entries = rng.choice(n_entries, size=max(1, n_entries // 10), replace=False)
        held_entry = np.isin(labels, out_entries)
        held_text = np.zeros(len(labels), dtype=bool)
        for e in range(n_entries):
            if e in out_entries:
                continue
            mine = rows[labels == e]
            if len(mine) >= 2:
                take = mine[fold::folds][: max(1, len(mine) // folds)]
                held_text[take] = True
        train = ~held_entry & ~held_text
        test = held_entry | held_text
        if not test.any() or len(np.unique(labels[train])) < 2:
            continue
        q = vectors[test]
        truth = np.where(held_entry[test], -1, labels[test])
        density = text_density(vectors[train], labels[train]) if use_density else None
        sims, adjusted = best_per_entry(q, vectors[train], labels[train], n_entries, density)
        if use_head:
            head = Head.fit(vectors[train], labels[train], n_entries, c=c)
            proba = head.proba(q)
            if texts is not None:
                lexical = LexicalHead.fit([texts[i] for i in rows[train]], labels[train], n_entries)
                if lexical is not None:
                    proba = mix(proba, lexical.logits([texts[i] for i in rows[test]]))
        else:
            proba = _softmax(adjusted / KNN_TEMPERATURE)
        top = proba.argmax(axis=1)
        feats.append(features(proba, sims, top))
        correct.append(top == truth)
    if not feats:
        raise ValueError("no held-out examples")
    y = np.concatenate(correct)
    if y.all() or not y.any():
        raise ValueError("held-out examples are all right or all wrong")
    return ConfidenceModel.fit(np.vstack(feats), y)
