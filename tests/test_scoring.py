"""Scorer: when the entry classifier is used, and what its confidences mean."""

from __future__ import annotations

import numpy as np
import pytest

from autoreply.scoring import HEAD_MIN_TEXTS_PER_ENTRY, Scorer, best_per_entry, features


def clustered(
    entries: int, per_entry: int, *, dim: int = 32, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit vectors: ``per_entry`` texts around each of ``entries`` random centres."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((entries, dim))
    labels = np.repeat(np.arange(entries), per_entry)
    vectors = centres[labels] + 0.35 * rng.standard_normal((len(labels), dim))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32), labels, centres


def test_the_head_needs_texts_beyond_one_per_entry() -> None:
    """One text per entry (afqmc-like): nearest text only; with variants: the classifier."""
    one, labels_one, _ = clustered(40, 1)
    assert Scorer.fit(one, labels_one, 40).head is None
    many, labels_many, _ = clustered(40, int(HEAD_MIN_TEXTS_PER_ENTRY) + 1)
    assert Scorer.fit(many, labels_many, 40).head is not None


def test_without_a_head_the_nearest_text_wins() -> None:
    vectors, labels, _ = clustered(30, 1, seed=1)
    scorer = Scorer.fit(vectors, labels, 30)
    queries = vectors[[3, 17]] + 0.01
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    sims = best_per_entry(queries, vectors, labels, 30)
    assert list(scorer.proba(queries, sims).argmax(axis=1)) == [3, 17]


def topical(seed: int, *, dim: int = 32) -> tuple[np.ndarray, ...]:
    """25 entries in 5 topics (neighbours look alike), 8 texts each, and 600 new questions
    spread like the texts: (vectors, labels, queries, truth)."""
    rng = np.random.default_rng(seed)
    topics = rng.standard_normal((5, dim))
    centres = np.repeat(topics, 5, axis=0) + 0.2 * rng.standard_normal((25, dim))
    labels = np.repeat(np.arange(25), 8)
    truth = rng.integers(0, 25, size=600)

    def around(rows: np.ndarray) -> np.ndarray:
        points = centres[rows] + 0.3 * rng.standard_normal((len(rows), dim))
        return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)

    return around(labels), labels, around(truth), truth


@pytest.mark.parametrize("seed", [2, 5])
def test_confidence_ranks_right_answers_first_and_never_overclaims(seed: int) -> None:
    """Fitted on the knowledge base alone (no labelled questions), confidence puts right
    top answers above wrong ones, and its mean does not exceed the accuracy it claims:
    where it errs, it errs towards asking a person."""
    vectors, labels, queries, truth = topical(seed)
    scorer = Scorer.fit(vectors, labels, 25)
    sims = best_per_entry(queries, vectors, labels, 25)
    proba = scorer.proba(queries, sims)
    top = proba.argmax(axis=1)
    confidence = scorer.confidence(features(proba, sims, top))
    correct = top == truth
    assert 0.6 < correct.mean() < 0.98  # neither trivial nor hopeless
    assert confidence[correct].mean() > confidence[~correct].mean() + 0.2
    assert confidence.mean() <= correct.mean() + 0.02
