"""Text normalization for matching only (answers are always returned as written).

normalize(): Unicode NFKC (full-width → half-width), traditional → simplified Chinese (OpenCC),
case folding, whitespace collapsed; optional synonym rewriting. Also the tokenizer used for
lexical matching (jieba words for Chinese, words for Latin scripts) and phrase matching.
Pure functions; OpenCC and jieba load lazily, once per process.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from autoreply.errors import FAQFormatError

_SPACE = re.compile(r"\s+")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_WORD = re.compile(r"[0-9a-z]+(?:'[a-z]+)?|[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
# Punctuation and symbols (incl. emoji) carry no meaning for FAQ matching.
_EDGE_NOISE = re.compile(r"^[\W_]+|[\W_]+$")
_lock = threading.Lock()


@lru_cache(maxsize=1)
def _opencc() -> Any:
    import opencc

    return opencc.OpenCC("t2s")


@lru_cache(maxsize=1)
def _jieba() -> Any:
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return jieba


def has_han(text: str) -> bool:
    """True if the text contains a Chinese character."""
    return _HAN.search(text) is not None


def to_simplified(text: str) -> str:
    """Fold traditional Chinese to simplified; other scripts pass through."""
    if not has_han(text):
        return text
    with _lock:  # the OpenCC converter is not documented as thread-safe
        return str(_opencc().convert(text))


def _strip_symbols(text: str) -> str:
    # Drop emoji and other symbols (category S*) and control characters; keep letters,
    # digits, punctuation and spaces so that meaning-bearing text survives.
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if cat[0] == "S" or cat in ("Cc", "Cf", "Co", "Cs"):
            out.append(" ")
        else:
            out.append(ch)
    return "".join(out)


@lru_cache(maxsize=65536)
def normalize(text: str) -> str:
    """The form used for matching: NFKC, simplified Chinese, casefolded, no emoji, single
    spaces, no punctuation at either end.

    >>> normalize("怎麼修改密碼？ ")
    '怎么修改密码'
    >>> normalize("  How do I   RESET my password?? 🙂")
    'how do i reset my password'
    """
    text = unicodedata.normalize("NFKC", text)
    text = _strip_symbols(text)
    text = to_simplified(text)
    text = text.casefold()
    text = _SPACE.sub(" ", text).strip()
    text = _EDGE_NOISE.sub("", text)
    return text


def tokenize(text: str) -> list[str]:
    """Lexical tokens of normalized text: jieba words for Chinese runs, words elsewhere."""
    text = normalize(text)
    if not has_han(text):
        return _WORD.findall(text)
    tokens: list[str] = []
    for piece in _jieba().lcut(text):
        piece = piece.strip()
        if piece and not _EDGE_NOISE.fullmatch(piece):
            tokens.extend(_WORD.findall(piece) if not has_han(piece) else [piece])
    return tokens


@dataclass(frozen=True)
class Synonyms:
    """Synonym groups: every other term of a group is rewritten to the group's first term.

    Chinese terms are replaced as substrings; Latin-script terms as whole words.
    """

    groups: tuple[tuple[str, ...], ...] = ()
    _pattern: re.Pattern[str] | None = field(default=None, compare=False, repr=False)
    _canon: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_groups(cls, groups: Iterable[Sequence[str]]) -> Synonyms:
        norm_groups = []
        canon: dict[str, str] = {}
        for group in groups:
            terms = tuple(normalize(t) for t in group if normalize(t))
            if len(terms) < 2:
                continue
            norm_groups.append(terms)
            for term in terms[1:]:
                canon[term] = terms[0]
        pattern = None
        if canon:
            alts = []
            for term in sorted(canon, key=len, reverse=True):
                escaped = re.escape(term)
                alts.append(escaped if has_han(term) else rf"(?<![0-9a-z]){escaped}(?![0-9a-z])")
            pattern = re.compile("|".join(alts))
        return cls(tuple(norm_groups), pattern, canon)

    @classmethod
    def load(cls, path: str | Path) -> Synonyms:
        """Read ``a = b = c`` lines (``#`` comments); a bad line is an FAQFormatError."""
        path = Path(path)
        groups = []
        for line_no, line in enumerate(read_lines(path), start=1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            terms = [t.strip() for t in line.split("=")]
            if len(terms) < 2 or not all(terms):
                raise FAQFormatError(
                    path,
                    line=line_no,
                    problem="a synonym line needs two or more terms separated by ' = '",
                    hint="write it as: 退款 = 退钱 = 退费",
                )
            groups.append(terms)
        return cls.from_groups(groups)

    def apply(self, normalized: str) -> str:
        """Rewrite synonyms to their canonical term in already-normalized text."""
        if self._pattern is None:
            return normalized
        return self._pattern.sub(lambda m: self._canon[m.group(0)], normalized)


def read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file (BOM allowed); an FAQFormatError if it is not UTF-8."""
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        raise FAQFormatError(
            path,
            problem=f"is not valid UTF-8 (byte {exc.start})",
            hint="save the file as UTF-8",
        ) from exc
    except OSError as exc:
        raise FAQFormatError(path, problem=f"cannot be read ({exc.strerror})") from exc


@dataclass(frozen=True)
class PhraseList:
    """Phrases matched as substrings of normalized text (e.g. 转人工, talk to a human)."""

    name: str
    phrases: tuple[str, ...] = ()

    @classmethod
    def load(cls, path: str | Path) -> PhraseList:
        path = Path(path)
        phrases = []
        for line in read_lines(path):
            line = line.strip()
            if line and not line.startswith("#"):
                phrase = normalize(line)
                if phrase:
                    phrases.append(phrase)
        return cls(path.stem, tuple(dict.fromkeys(phrases)))

    def find(self, text: str) -> str | None:
        """The first phrase contained in ``text`` (normalized here), or None.

        Latin-script phrases must match on word boundaries ("agent" is not in "agents'").
        """
        norm = normalize(text)
        for phrase in self.phrases:
            if has_han(phrase):
                if phrase in norm:
                    return phrase
            elif re.search(rf"(?<![0-9a-z]){re.escape(phrase)}(?![0-9a-z])", norm):
                return phrase
        return None
