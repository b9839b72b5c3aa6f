"""Scorer: when the entry classifier is used, and what its confidences mean."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from autoreply.encoder import Encoder
from autoreply.knowledge import load_knowledge
from autoreply.knowledge_index import KnowledgeIndex
from autoreply.linear import lift_weights
from autoreply.scoring import (
    HEAD_MIN_TEXTS_PER_ENTRY,
    Scorer,
    best_per_entry,
    text_density,
)


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
    proba, _ = scorer.score_all(queries, vectors, labels)
    assert list(proba.argmax(axis=1)) == [3, 17]


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
    proba, confidence = scorer.score_all(queries, vectors, labels)
    correct = proba.argmax(axis=1) == truth
    assert 0.6 < correct.mean() < 0.98  # neither trivial nor hopeless
    assert confidence[correct].mean() > confidence[~correct].mean() + 0.2
    assert confidence.mean() <= correct.mean() + 0.02


def test_entries_under_the_median_size_weigh_as_much_as_a_median_one() -> None:
    labels = np.array([0] * 20 + [1] * 20 + [2] * 30 + [3] * 5)
    weights = lift_weights(labels)
    assert weights.sum() == pytest.approx(len(labels))  # the regularization keeps its strength
    assert weights[labels == 3].sum() == pytest.approx(weights[labels == 0].sum())
    assert len(set(weights[labels != 3].round(12))) == 1  # the others keep their proportions
    assert set(lift_weights(np.repeat(np.arange(4), 7))) == {1.0}
    gapped = lift_weights(np.array([0, 0, 2, 2, 2, 5]))  # entries without texts are skipped
    assert gapped.sum() == pytest.approx(6.0) and gapped[0] == gapped[5] / 2


def test_a_new_entry_with_few_texts_gets_its_own_questions(monkeypatch) -> None:
    """An accepted gap topic starts with a couple of texts beside entries with eight. Over
    eight layouts, its own questions must go to it far more often than when every text
    weighs the same, without the other entries answering more wrongly."""
    import autoreply.linear as linear

    def shares(seed: int) -> tuple[float, float]:
        vectors, labels, queries, truth = topical(seed)
        keep = (labels != 0) | (np.cumsum(labels == 0) <= 2)  # entry 0 keeps 2 of its 8
        vectors, labels = vectors[keep], labels[keep]
        proba, confidence = Scorer.fit(vectors, labels, 25).score_all(queries, vectors, labels)
        right = proba.argmax(axis=1) == truth
        new = truth == 0
        return float(right[new].mean()), float((~right & (confidence >= 0.6))[~new].mean())

    seeds = range(8)
    weighted = [shares(seed) for seed in seeds]
    monkeypatch.setattr(linear, "lift_weights", lambda labels: np.ones(len(labels)))
    unweighted = [shares(seed) for seed in seeds]
    new_weighted = np.mean([w[0] for w in weighted])
    assert new_weighted >= 0.4
    assert new_weighted >= np.mean([u[0] for u in unweighted]) + 0.25
    assert np.mean([w[1] for w in weighted]) <= np.mean([u[1] for u in unweighted]) + 0.01


def test_density_is_the_mean_similarity_to_other_entries_nearest_texts() -> None:
    vectors = np.array([[1, 0, 0], [1, 0, 0], [0.8, 0.6, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    labels = np.array([0, 0, 1, 2, 3])
    density = text_density(vectors, labels, k=2)
    # Row 0: its own entry's twin (row 1) does not count; nearest others are rows 2 and 3.
    assert density[0] == pytest.approx((0.8 + 0.0) / 2)
    assert density[2] == pytest.approx((0.8 + 0.8) / 2)  # rows 0 and 1, both entry 0
    # A single entry has no other texts: no correction at all.
    assert not text_density(vectors[:2], labels[:2]).any()


def test_a_text_near_every_entry_does_not_take_their_questions() -> None:
    """One text per entry (no classifier), and one generic text close to all of them (a hub,
    such as "I have a question about my account"). A question a little closer to the hub
    than to its own entry still gets its own entry: the hub's crowded neighbourhood counts
    against it."""
    rng = np.random.default_rng(3)
    specific = rng.standard_normal((20, 64))
    specific /= np.linalg.norm(specific, axis=1, keepdims=True)
    hub = specific.mean(axis=0)
    hub /= np.linalg.norm(hub)
    vectors = np.vstack([specific, hub]).astype(np.float32)
    labels = np.arange(21)
    scorer = Scorer.fit(vectors, labels, 21)
    assert scorer.density[20] > scorer.density[:20].max()
    queries = 0.48 * specific + 0.52 * hub
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    raw = queries @ vectors.T
    assert (raw.argmax(axis=1) == 20).all()  # plain cosine: the hub wins every one
    proba, _ = scorer.score_all(queries.astype(np.float32), vectors, labels)
    assert list(proba.argmax(axis=1)) == list(range(20))


@pytest.mark.parametrize("per_entry", [1, 4])
def test_the_scorer_comes_back_from_disk_unchanged(tmp_path, per_entry: int) -> None:
    vectors, labels, _ = clustered(25, per_entry, seed=7)
    queries = clustered(25, 2, seed=8)[0]
    scorer = Scorer.fit(vectors, labels, 25)
    scorer.save(tmp_path / "scorer.npz")
    loaded = Scorer.load(tmp_path / "scorer.npz")
    assert loaded is not None
    np.testing.assert_array_equal(loaded.density, scorer.density)
    for a, b in zip(
        loaded.score_all(queries, vectors, labels),
        scorer.score_all(queries, vectors, labels),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-6)


@pytest.mark.parametrize("variants", [0, 3])
def test_the_index_ranks_as_the_scorer_does_over_every_text(
    tmp_path: Path, hashing: Encoder, variants: int
) -> None:
    """KnowledgeIndex.rank looks only at candidates (nearest texts, the classifier's best);
    its top entry, cosine and confidence are those of the scorer over every text."""
    words = [
        "refund",
        "password",
        "invoice",
        "delivery",
        "coupon",
        "account",
        "address",
        "parcel",
        "card",
        "member",
    ]
    entries = [
        {
            "id": f"e{i}",
            "question": f"how do I change my {a} {b}",
            "variants": [f"{a} {b} help {v}" for v in range(variants)],
            "answer": f"answer {i}",
            "category": "general",
        }
        for i, (a, b) in enumerate((a, b) for a in words for b in words[:4] if a != b)
    ]
    (tmp_path / "faq.yaml").write_text(yaml.safe_dump({"entries": entries}), encoding="utf-8")
    index = KnowledgeIndex.build(load_knowledge(tmp_path), hashing)
    questions = ["change my card password", "refund for a parcel", "member address", "coupon"]
    vectors = index.encode_queries(questions)
    forms = index.query_forms(questions)
    texts, labels = index.index.vectors(), index.index.labels
    proba, confidence = index.scorer.score_all(vectors, texts, labels, forms)
    cosines, _ = best_per_entry(vectors, texts, labels, len(index.entries))
    for q, matches in enumerate(index.rank(vectors, texts=forms)):
        top = matches[0]
        assert top.entry is index.entries[int(proba[q].argmax())]
        assert top.similarity == pytest.approx(float(cosines[q, proba[q].argmax()]), abs=1e-5)
        assert top.confidence == pytest.approx(float(confidence[q]), abs=1e-5)
        assert top.probability == pytest.approx(float(proba[q].max()), abs=1e-5)
