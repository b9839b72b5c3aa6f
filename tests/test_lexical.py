"""The lexical head: character n-grams that tell apart entries the encoder blurs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from autoreply.lexical import MAX_ENTRIES, MAX_FEATURES, LexicalHead, grams
from autoreply.scoring import Scorer, mix

# Eight entries about lights, doors and music; each pair shares everything but one word,
# which is what a vague encoder loses.
ACTIONS = {
    "light_off": ["关灯", "把灯关掉", "帮我关一下灯", "灯关了吧", "关闭卧室的灯"],
    "light_dim": ["调暗灯光", "把灯调暗一点", "灯光暗一些", "灯太亮了调暗", "卧室的灯调暗"],
    "door_lock": ["锁门", "把门锁上", "帮我锁一下门", "门锁好了吗", "锁上前门"],
    "door_open": ["开门", "把门打开", "帮我开一下门", "门打开吧", "打开前门"],
    "music_play": ["放音乐", "播放一首歌", "来点音乐", "放首歌听听", "播放周杰伦"],
    "music_stop": ["停止音乐", "别放歌了", "把音乐停了", "歌停一下", "停止播放"],
    "alarm_set": ["定个闹钟", "设置闹钟", "明早七点叫我", "闹钟定在六点", "帮我设闹钟"],
    "alarm_off": ["关闹钟", "取消闹钟", "把闹钟关了", "不要闹钟了", "删除明天的闹钟"],
}
QUESTIONS = [
    ("客厅的灯关掉", 0),
    ("灯光调暗点", 1),
    ("后门锁上", 2),
    ("后门打开", 3),
    ("播放点音乐", 4),
    ("音乐停了吧", 5),
    ("设个闹钟", 6),
    ("闹钟取消", 7),
]


def kb() -> tuple[list[str], np.ndarray]:
    texts = [t for forms in ACTIONS.values() for t in forms]
    labels = np.repeat(np.arange(len(ACTIONS)), [len(v) for v in ACTIONS.values()])
    return texts, labels


def vague_vectors(n: int, seed: int) -> np.ndarray:
    """What an encoder that cannot read these words gives: the same vector for all of them
    (``seed`` picks which)."""
    v = np.random.default_rng(seed).standard_normal(16)
    return np.tile(v / np.linalg.norm(v), (n, 1)).astype(np.float32)


def test_the_lexical_head_reads_the_word_that_tells_entries_apart() -> None:
    texts, labels = kb()
    head = LexicalHead.fit(texts, labels, len(ACTIONS))
    assert head is not None
    logits = head.logits([q for q, _ in QUESTIONS])
    assert list(logits.argmax(axis=1)) == [e for _, e in QUESTIONS]


def test_the_scorer_uses_it_where_the_encoder_is_vague() -> None:
    """An encoder that gives every text the same vector: with the texts the scorer answers
    by the words; without them it can only guess."""
    texts, labels = kb()
    vectors = vague_vectors(len(texts), 0)
    queries = vague_vectors(len(QUESTIONS), 0)
    truth = np.array([e for _, e in QUESTIONS])
    with_texts = Scorer.fit(vectors, labels, len(ACTIONS), texts=texts)
    assert with_texts.lexical is not None
    proba, _ = with_texts.score_all(queries, vectors, labels, [q for q, _ in QUESTIONS])
    assert list(proba.argmax(axis=1)) == list(truth)
    blind = Scorer.fit(vectors, labels, len(ACTIONS))
    assert blind.lexical is None
    proba, _ = blind.score_all(queries, vectors, labels)
    assert (proba.argmax(axis=1) == truth).mean() <= 2 / 8


def test_a_scorer_with_a_lexical_head_refuses_vectors_without_texts() -> None:
    texts, labels = kb()
    vectors = vague_vectors(len(texts), 0)
    scorer = Scorer.fit(vectors, labels, len(ACTIONS), texts=texts)
    with pytest.raises(ValueError, match="texts"):
        scorer.score_all(vectors[:2], vectors, labels)
    with pytest.raises(ValueError, match="texts: 39 given for 40 vectors"):
        Scorer.fit(vectors, labels, len(ACTIONS), texts=texts[:-1])


def test_unknown_words_leave_the_encoder_heads_ranking_alone() -> None:
    """No known n-gram (another script): flat logits, not the head's prior, so the mix keeps
    the encoder head's order."""
    texts, labels = kb()
    head = LexicalHead.fit(texts, labels, len(ACTIONS))
    assert head is not None
    assert np.ptp(head.intercept) > 0.05  # the prior is not flat: it must not leak in
    unknown = head.logits(["xyz qqq", "", "ほげ"])
    np.testing.assert_array_equal(unknown, np.zeros_like(unknown))
    encoder = np.random.default_rng(3).dirichlet(np.ones(len(ACTIONS)), size=3)
    np.testing.assert_array_equal(
        np.argsort(mix(encoder, unknown), axis=1), np.argsort(encoder, axis=1)
    )
    known = head.logits(["把灯关掉"])
    assert np.ptp(known) > 1.0 and int(known.argmax()) == 0


def test_cross_validated_confidence_learns_from_the_lexical_head() -> None:
    """The confidence model is fitted on held-out texts scored by both heads: where only the
    words tell entries apart, in-scope questions get confident answers and unrelated ones
    do not. (Scoring held-out texts without the lexical head, or with the wrong texts, leaves
    the confidence model nothing to learn from.)"""
    texts, labels = kb()
    vectors = vague_vectors(len(texts), 0)
    scorer = Scorer.fit(vectors, labels, len(ACTIONS), texts=texts)
    inside = [q for q, _ in QUESTIONS]
    outside = ["今天天气怎么样", "讲个笑话", "火箭什么时候发射", "股票涨了吗"]
    forms = inside + outside
    queries = vague_vectors(len(forms), 0)
    _, confidence = scorer.score_all(queries, vectors, labels, forms)
    assert confidence[: len(inside)].min() > confidence[len(inside) :].max()
    assert confidence[: len(inside)].mean() > 0.5


def test_the_vocabulary_is_bounded_and_needs_two_texts() -> None:
    rng = np.random.default_rng(0)
    alphabet = [chr(0x4E00 + i) for i in range(400)]
    texts = ["".join(rng.choice(alphabet, size=8)) for _ in range(6000)]
    labels = np.arange(len(texts)) % 30
    head = LexicalHead.fit(texts, labels, 30)
    assert head is not None
    assert len(head.vocab) == MAX_FEATURES  # the cap binds: many more n-grams are shared
    assert head.coef.shape == (30, MAX_FEATURES)
    # Nothing shared by two texts: nothing to learn.
    assert LexicalHead.fit(["甲乙", "丙丁"], np.array([0, 1]), 2) is None
    # Too many entries for the fit's memory: skipped.
    many = np.arange(MAX_ENTRIES + 1)
    assert LexicalHead.fit(["甲乙"] * len(many), many, len(many)) is None


def test_the_lexical_head_comes_back_from_disk_unchanged(tmp_path: Path) -> None:
    texts, labels = kb()
    vectors = vague_vectors(len(texts), 0)
    queries = vague_vectors(len(QUESTIONS), 1)
    forms = [q for q, _ in QUESTIONS]
    scorer = Scorer.fit(vectors, labels, len(ACTIONS), texts=texts)
    scorer.save(tmp_path / "scorer.npz")
    loaded = Scorer.load(tmp_path / "scorer.npz")
    assert loaded is not None and loaded.lexical is not None
    assert list(loaded.lexical.vocab) == list(scorer.lexical.vocab)  # type: ignore[union-attr]
    for a, b in zip(
        loaded.score_all(queries, vectors, labels, forms),
        scorer.score_all(queries, vectors, labels, forms),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-6)


@given(st.text(alphabet=st.characters(blacklist_characters="\x00"), max_size=40))
def test_grams_count_every_unigram_and_bigram_of_each_padded_word(text: str) -> None:
    counted = grams(text)
    words = text.split()
    # every character, and every bigram of the word padded with one space each side
    assert sum(counted.values()) == sum(len(w) + (len(w) + 1) for w in words)
    assert all(1 <= len(g) <= 2 for g in counted)
    for w in words:
        assert counted[f" {w[0]}"] >= 1 and counted[f"{w[-1]} "] >= 1


@given(st.text(alphabet=st.sampled_from(["a", "\x00", " ", "退"]), max_size=20))
def test_every_gram_survives_a_numpy_string_array(text: str) -> None:
    """The vocabulary is stored as a numpy string array, which drops trailing NULs."""
    for g in grams(text):
        assert np.array([g])[0] == g
