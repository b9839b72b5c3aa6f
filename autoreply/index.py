"""FaissIndex: inner-product search over unit vectors. Vectors and integer labels only.

Each row carries an integer label (the caller's meaning: here, the FAQ entry a text belongs to).
Exact search (IndexFlatIP) is used below ``hnsw_above`` rows; above it an HNSW graph keeps
search fast on very large knowledge bases.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from autoreply.errors import IndexStateError


@dataclass(frozen=True)
class Hits:
    """Search results for a batch of queries: rows (query, k), best first."""

    scores: np.ndarray  # float32 (n_queries, k); -inf where fewer than k rows exist
    rows: np.ndarray  # int64 (n_queries, k); -1 where fewer than k rows exist
    labels: np.ndarray  # int64 (n_queries, k); -1 where fewer than k rows exist


class FaissIndex:
    """Vectors (unit L2 norm) with one integer label per row."""

    def __init__(self, dim: int, *, hnsw_above: int = 200_000, hnsw_m: int = 32) -> None:
        self.dim = dim
        self.hnsw_above = hnsw_above
        self.hnsw_m = hnsw_m
        self._index: faiss.Index = faiss.IndexFlatIP(dim)
        self._labels = np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return int(self._index.ntotal)

    @property
    def kind(self) -> str:
        return "hnsw" if isinstance(self._index, faiss.IndexHNSWFlat) else "flat"

    @property
    def labels(self) -> np.ndarray:
        return self._labels

    def add(self, vectors: np.ndarray, labels: np.ndarray) -> None:
        """Append rows. ``vectors`` float32 (n, dim), ``labels`` int (n,)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        labels = np.asarray(labels, dtype=np.int64)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise IndexStateError(
                f"vectors have shape {vectors.shape}; this index takes (n, {self.dim})"
            )
        if len(labels) != len(vectors):
            raise IndexStateError(f"{len(vectors)} vectors but {len(labels)} labels")
        total = len(self) + len(vectors)
        if total > self.hnsw_above and self.kind == "flat":
            self._to_hnsw()
        self._index.add(vectors)
        self._labels = np.concatenate([self._labels, labels])

    def _to_hnsw(self) -> None:
        old = self._index
        index = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        index.hnsw.efSearch = 128
        if old.ntotal:
            index.add(old.reconstruct_n(0, old.ntotal))
        self._index = index

    def search(self, queries: np.ndarray, *, k: int = 50) -> Hits:
        """The k nearest rows for each query (inner product, higher is closer)."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if queries.shape[1] != self.dim:
            raise IndexStateError(
                f"query vectors have dimension {queries.shape[1]}; the index has {self.dim}: "
                "rebuild the index with the current encoder (autoreply index build)"
            )
        k = max(1, min(k, max(len(self), 1)))
        scores, rows = self._index.search(queries, k)
        labels = np.where(rows >= 0, self._labels[np.clip(rows, 0, None)], -1)
        return Hits(scores=scores, rows=rows.astype(np.int64), labels=labels.astype(np.int64))

    def vectors(self) -> np.ndarray:
        """All stored vectors (n, dim)."""
        if not len(self):
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.asarray(self._index.reconstruct_n(0, len(self)), dtype=np.float32)

    def save(self, folder: Path) -> None:
        """Write ``index.faiss`` and ``labels.npy`` into ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self._index, str(folder / "index.faiss"))
        np.save(folder / "labels.npy", self._labels)
        (folder / "index.json").write_text(
            json.dumps({"dim": self.dim, "rows": len(self), "kind": self.kind}), encoding="utf-8"
        )

    @classmethod
    def load(cls, folder: Path) -> FaissIndex:
        try:
            meta = json.loads((folder / "index.json").read_text(encoding="utf-8"))
            raw = faiss.read_index(str(folder / "index.faiss"))
            labels = np.load(folder / "labels.npy")
        except (OSError, ValueError, RuntimeError) as exc:
            raise IndexStateError(
                f"cannot read the index in {folder} ({exc}): delete the folder or run "
                "'autoreply index build' to rebuild it"
            ) from exc
        if raw.ntotal != len(labels) or raw.d != meta.get("dim"):
            raise IndexStateError(
                f"the index in {folder} is inconsistent: rebuild it with 'autoreply index build'"
            )
        index = cls(int(meta["dim"]))
        index._index = raw
        index._labels = labels.astype(np.int64)
        return index
