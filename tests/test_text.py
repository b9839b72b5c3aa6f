"""Normalization is for matching only; phrase lists and synonyms work on normalized text."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autoreply.errors import FAQFormatError
from autoreply.text import PhraseList, Synonyms, normalize, tokenize


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("怎麼修改密碼", "怎么修改密码"),
        ("怎么修改密码？", "怎么修改密码"),
        ("怎么修改密码?", "怎么修改密码"),
        ("ＡＢＣ　ｄｅｆ！", "abc def"),
        ("How do I RESET my password??", "how do i reset my password"),
        ("refund   please 🙂", "refund please"),
        ("發票怎麼開", "发票怎么开"),
        ("  tabs\tand\nnewlines  ", "tabs and newlines"),
    ],
)
def test_equivalent_forms_normalize_alike(a: str, b: str) -> None:
    """Traditional/simplified, width, case, spacing, emoji and end punctuation fold away."""
    assert normalize(a) == normalize(b)


def test_inner_punctuation_kept() -> None:
    assert normalize("can't log in") == "can't log in"


@given(st.text())
def test_normalize_is_idempotent(text: str) -> None:
    once = normalize(text)
    assert normalize(once) == once


def test_tokenize_mixed_scripts() -> None:
    assert tokenize("How do I reset my password?") == ["how", "do", "i", "reset", "my", "password"]
    tokens = tokenize("怎麼申請退款")
    assert "退款" in tokens and "申请" in tokens


def test_synonyms_rewrite_to_first_term() -> None:
    syn = Synonyms.from_groups([["退款", "退钱", "退费"], ["log in", "login", "sign in"]])
    assert syn.apply(normalize("我想退錢")) == "我想退款"
    assert syn.apply("how to sign in") == "how to log in"
    # whole words only for Latin script
    assert syn.apply("designing") == "designing"


def test_synonym_file_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "synonyms.txt"
    path.write_text("# comment\n退款 = 退钱\nlonely\n", encoding="utf-8")
    with pytest.raises(FAQFormatError, match=r"synonyms.txt:3"):
        Synonyms.load(path)


def test_phrase_list_matches_normalized_substrings(tmp_path: Path) -> None:
    path = tmp_path / "human.txt"
    path.write_text("# people\n转人工\ntalk to a human\n", encoding="utf-8")
    phrases = PhraseList.load(path)
    assert phrases.find("我要轉人工！") == "转人工"
    assert phrases.find("Can I TALK TO A HUMAN please") == "talk to a human"
    assert phrases.find("how do humans talk") is None
