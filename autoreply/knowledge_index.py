"""KnowledgeIndex: every question and variant of the knowledge base, encoded and indexed.

Builds the faiss index over the texts of the enabled entries, fits the Scorer (entry
classifier + confidence model), and ranks entries for a query: candidates come from the
nearest texts and the classifier's best entries; an entry's similarity is that of its
best-matching text, corrected for texts close to many others (``Scorer.adjust``). Given a
cache folder, it is reused as is when nothing changed; when the knowledge base changed, only
texts never encoded before are encoded again (autoreply.index_cache).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autoreply import index_cache
from autoreply.encoder import Encoder
from autoreply.errors import IndexStateError
from autoreply.knowledge import KnowledgeBase
from autoreply.models import FAQEntry
from autoreply.scoring import Scorer, features
from autoreply.text import Synonyms, normalize
from autoreply.vector_index import FaissIndex

log = logging.getLogger(__name__)

DEPTH = 64
"""How many nearest texts are looked at per query."""
HEAD_CANDIDATES = 10
"""How many of the classifier's best entries join the candidates."""


@dataclass(frozen=True)
class EntryMatch:
    """One candidate entry for a query."""

    entry: FAQEntry
    similarity: float
    """The best cosine similarity of the entry's texts."""
    text: str
    """The entry's best-matching text (as written in the knowledge base), after the scorer's
    correction for crowded texts (``Scorer.adjust``): usually the one with that cosine."""
    probability: float
    """P(entry | query) from the classifier (or from similarities without one)."""
    confidence: float
    """Calibrated P(this entry is the right answer)."""


@dataclass(frozen=True)
class BuildInfo:
    """How the index came to be: loaded from cache, built, or updated."""

    status: str  # "loaded" | "built" | "updated" | "memory"
    texts: int
    encoded: int
    seconds: float
    folder: Path | None


def match_text(text: str, synonyms: Synonyms) -> str:
    """The form of a text that is encoded: normalized, synonyms rewritten."""
    return synonyms.apply(normalize(text))


class KnowledgeIndex:
    """The knowledge base's texts in a FaissIndex, with the row → entry mapping."""

    def __init__(
        self,
        kb: KnowledgeBase,
        encoder: Encoder,
        index: FaissIndex,
        texts: Sequence[str],
        scorer: Scorer,
        info: BuildInfo,
    ) -> None:
        self.kb = kb
        self.encoder = encoder
        self.index = index
        self.entries = kb.enabled
        self.texts = list(texts)
        self.scorer = scorer
        self.info = info
        self._vectors = index.vectors()
        labels = index.labels
        order = np.argsort(labels, kind="stable")
        bounds = np.searchsorted(labels[order], np.arange(len(self.entries) + 1))
        self._rows_of = [order[bounds[e] : bounds[e + 1]] for e in range(len(self.entries))]

    # -- building -----------------------------------------------------------------------
    @staticmethod
    def _rows(kb: KnowledgeBase) -> tuple[list[str], list[int], list[str]]:
        texts, labels, originals = [], [], []
        for i, entry in enumerate(kb.enabled):
            seen: set[str] = set()
            for original in entry.texts:
                text = match_text(original, kb.synonyms)
                if text and text not in seen:
                    seen.add(text)
                    texts.append(text)
                    labels.append(i)
                    originals.append(original)
        return texts, labels, originals

    @classmethod
    def build(
        cls,
        kb: KnowledgeBase,
        encoder: Encoder,
        *,
        cache_dir: Path | None = None,
        progress: bool = False,
    ) -> KnowledgeIndex:
        """Build the index, reusing the cache folder when one is given."""
        start = time.perf_counter()
        texts, labels, originals = cls._rows(kb)
        if not texts:
            raise IndexStateError("the knowledge base has no enabled entries to index")
        folder = (
            cache_dir / index_cache.folder_name(encoder.name) if cache_dir is not None else None
        )
        if folder is not None:
            cached = index_cache.load_cached(folder, encoder, kb)
            if cached is not None:
                index, scorer = cached
                info = BuildInfo("loaded", len(texts), 0, time.perf_counter() - start, folder)
                return cls(kb, encoder, index, originals, scorer, info)
        old = index_cache.load_vectors(folder) if folder is not None else {}
        missing = [t for t in dict.fromkeys(texts) if index_cache.text_key(t) not in old]
        if missing:
            new_vectors = encoder.encode(missing, kind="passage")
            old.update(
                {index_cache.text_key(t): v for t, v in zip(missing, new_vectors, strict=True)}
            )
        vectors = np.stack([old[index_cache.text_key(t)] for t in texts]).astype(np.float32)
        index = FaissIndex(encoder.dim)
        label_array = np.asarray(labels)
        index.add(vectors, label_array)
        scorer = Scorer.fit(vectors, label_array, len(kb.enabled), texts=texts)
        status = "memory"
        if folder is not None:
            status = "updated" if len(missing) < len(set(texts)) else "built"
            index_cache.save(folder, index, scorer, encoder, kb, texts, vectors)
        info = BuildInfo(status, len(texts), len(missing), time.perf_counter() - start, folder)
        log.info("index %s", status, extra={"texts": len(texts), "encoded": len(missing)})
        return cls(kb, encoder, index, originals, scorer, info)

    # -- searching ----------------------------------------------------------------------
    def query_forms(self, texts: Sequence[str]) -> list[str]:
        """The matched form of each query (``match_text``): what is encoded, and what the
        scorer's lexical head reads."""
        return [match_text(t, self.kb.synonyms) for t in texts]

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.encoder.encode(self.query_forms(texts), kind="query")

    def rank(
        self, vectors: np.ndarray, *, k: int = 10, texts: Sequence[str] | None = None
    ) -> list[list[EntryMatch]]:
        """For each query vector, the best ``k`` entries by probability, best first.

        ``texts``: the queries' matched forms (``match_text``), one per vector; required when
        the scorer has a lexical head (``search`` passes them)."""
        vectors = np.atleast_2d(vectors)
        hits = self.index.search(vectors, k=DEPTH)
        scorer = self.scorer
        head_proba = scorer.head_proba(vectors, texts)
        results: list[list[EntryMatch]] = []
        for q in range(len(vectors)):
            # entry -> (best adjusted similarity, best cosine, row of the best adjusted text).
            # Hits come best cosine first, so an entry's first hit holds its best cosine.
            best: dict[int, tuple[float, float, int]] = {}
            valid = hits.rows[q] >= 0
            rows_q = hits.rows[q][valid]
            adjusted_q = scorer.adjust(hits.scores[q][valid], rows_q)
            for adj, score, row, label in zip(
                adjusted_q, hits.scores[q][valid], rows_q, hits.labels[q][valid], strict=True
            ):
                e = int(label)
                if e not in best:
                    best[e] = (float(adj), float(score), int(row))
                elif adj > best[e][0]:
                    best[e] = (float(adj), best[e][1], int(row))
            if head_proba is not None:
                for e in np.argsort(-head_proba[q])[:HEAD_CANDIDATES]:
                    if int(e) not in best:
                        rows = self._rows_of[int(e)]
                        sims = self._vectors[rows] @ vectors[q]
                        adjusted = scorer.adjust(sims, rows)
                        j = int(np.argmax(adjusted))
                        best[int(e)] = (float(adjusted[j]), float(sims.max()), int(rows[j]))
            cands = np.fromiter(best, dtype=np.int64, count=len(best))
            adjusted_c = np.array([[best[int(e)][0] for e in cands]])
            if head_proba is not None:
                proba_c = head_proba[q : q + 1, cands]
            else:
                proba_c = scorer.proba(vectors[q : q + 1], adjusted_c)
            cosines_c = np.array([[best[int(e)][1] for e in cands]])
            idx = np.arange(len(cands))
            # Every candidate's features at once: one row of the query per candidate.
            n = len(idx)
            feats = features(np.repeat(proba_c, n, axis=0), np.repeat(cosines_c, n, axis=0), idx)
            conf = scorer.confidence(feats)
            order = np.argsort(-proba_c[0])[:k]
            results.append(
                [
                    EntryMatch(
                        entry=self.entries[int(cands[i])],
                        similarity=best[int(cands[i])][1],
                        text=self.texts[best[int(cands[i])][2]],
                        probability=float(proba_c[0, i]),
                        confidence=float(conf[i]),
                    )
                    for i in order
                ]
            )
        return results

    def search(self, queries: Sequence[str], *, k: int = 10) -> list[list[EntryMatch]]:
        """Encode and rank in one call."""
        forms = self.query_forms(queries)
        return self.rank(self.encoder.encode(forms, kind="query"), k=k, texts=forms)
