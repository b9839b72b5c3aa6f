"""FaissIndex: inner-product search over unit vectors. Vectors and integer labels only.

Each row carries an integer label (the caller's meaning: here, the FAQ entry a text belongs to).
Which faiss index holds the rows depends on their number (``IndexOptions``, kind ``auto``):

- below ``exact_below`` rows (default 20,000): exact search, ``IndexFlatIP``. Recall is 1 by
  definition; a single query scans every row, which costs 0.1 to 0.15 ms per 1,000 rows of
  dimension 384 (2.6 ms p95 at 20,000, 16 ms at 100,000). Every ordinary FAQ stays here (the
  demo has 82 entries).
- from ``exact_below`` rows on: ``IndexIVFFlat``, an inverted file over full float32 vectors.
  ``nlist`` k-means lists (default: the power of two nearest ``4 * sqrt(rows)``, at most
  ``rows / 39``), ``nprobe`` lists scanned per query (default ``max(16, nlist / 32)``, about 3%
  of the rows). It stores the raw vectors plus 16 bytes of id and direct map per row, and the
  centroids: 1.02 to 1.04× the raw vectors, serialized. At 1M rows: p95 2.6 ms per query,
  recall@1 1.0 against exact search on clustered synthetic vectors, 3 minutes to build on 2
  cores.
- ``kind="hnsw"`` on request: a graph of about ``8 * M`` bytes more per row (1.18× raw), three
  times slower to build and, on the same vectors at 1M rows, recall@1 0.91 at ``ef_search``
  128. Numbers: ``bench/scale.py``, ``bench/results/scale.json``.

The choice is made when rows are added; a flat index that grows past the threshold is rebuilt as
the approximate one (trained on all its rows). An IVF or HNSW index then takes further rows as
they come: IVF keeps the lists it was trained with, so build a new index (as
``KnowledgeIndex.build`` does) after the rows have grown several times over. The kind is saved
next to the index, and a load that finds another kind says to rebuild.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import faiss
import numpy as np

from autoreply.errors import ConfigError, IndexStateError

EXACT_BELOW = 20_000
"""Rows below which kind ``auto`` keeps exact search (see the module docstring)."""
MIN_POINTS_PER_LIST = 39
"""faiss k-means wants at least this many training points per centroid."""
TRAIN_POINTS_PER_LIST = 64
"""IVF training samples at most this many rows per list (k-means time, not recall)."""


class IndexKind(StrEnum):
    """The faiss index kinds FaissIndex can hold; ``auto`` picks one by size."""

    AUTO = "auto"
    FLAT = "flat"
    IVF = "ivf"
    HNSW = "hnsw"


@dataclass(frozen=True)
class IndexOptions:
    """Which index to build and how to search it. Zero means "choose from the row count"."""

    kind: IndexKind = IndexKind.AUTO
    exact_below: int = EXACT_BELOW
    """``auto``: exact search below this many rows, IVF from it on."""
    nlist: int = 0
    """IVF lists (k-means centroids); 0: the power of two nearest 4·sqrt(rows)."""
    nprobe: int = 0
    """IVF lists scanned per query; 0: max(16, nlist / 32)."""
    hnsw_m: int = 32
    """HNSW neighbours per node (graph memory ≈ 8·M bytes per row)."""
    ef_search: int = 128
    """HNSW candidate list while searching (higher: better recall, slower)."""
    ef_construction: int = 80
    """HNSW candidate list while building."""

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "kind", IndexKind(self.kind))
        except ValueError:
            known = ", ".join(k.value for k in IndexKind)
            raise ConfigError(f"index option kind is {self.kind!r}; known: {known}") from None
        for name, low in (
            ("exact_below", 1),
            ("nlist", 0),
            ("nprobe", 0),
            ("hnsw_m", 2),
            ("ef_search", 1),
            ("ef_construction", 1),
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(
                    f"index option {name} is {value!r}: it must be an integer ≥ {low}"
                )
        if self.nlist and self.nprobe > self.nlist:
            raise ConfigError(
                f"index option nprobe ({self.nprobe}) is more than nlist ({self.nlist}): "
                "lower nprobe (nprobe = nlist is exact search, only slower)"
            )

    def kind_for(self, rows: int) -> IndexKind:
        """The concrete kind for an index of ``rows`` rows."""
        if self.kind is not IndexKind.AUTO:
            return self.kind
        return IndexKind.FLAT if rows < self.exact_below else IndexKind.IVF

    def nlist_for(self, rows: int) -> int:
        """IVF lists for ``rows`` training rows (raises when an explicit nlist cannot fit)."""
        if self.nlist:
            if self.nlist > rows:
                raise ConfigError(
                    f"index option nlist ({self.nlist}) is more than the rows to index "
                    f"({rows}): lower nlist or set it to 0 (chosen from the row count)"
                )
            return self.nlist
        wanted = int(2 ** round(math.log2(max(1.0, 4 * math.sqrt(rows)))))
        return max(1, min(wanted, rows // MIN_POINTS_PER_LIST))

    def nprobe_for(self, nlist: int) -> int:
        """IVF lists scanned per query for an index of ``nlist`` lists."""
        if self.nprobe:
            return min(self.nprobe, nlist)
        return min(nlist, max(16, nlist // 32))


@dataclass(frozen=True)
class Hits:
    """Search results for a batch of queries: rows (query, k), best first."""

    scores: np.ndarray  # float32 (n_queries, k); -inf where fewer than k rows exist
    rows: np.ndarray  # int64 (n_queries, k); -1 where fewer than k rows exist
    labels: np.ndarray  # int64 (n_queries, k); -1 where fewer than k rows exist


class FaissIndex:
    """Vectors (unit L2 norm) with one integer label per row."""

    def __init__(self, dim: int, *, options: IndexOptions | None = None) -> None:
        self.dim = dim
        self.options = options or IndexOptions()
        self._index: faiss.Index = faiss.IndexFlatIP(dim)
        self._labels = np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return int(self._index.ntotal)

    @property
    def kind(self) -> IndexKind:
        """The kind of the faiss index now holding the rows."""
        return _kind_of(self._index)

    @property
    def params(self) -> dict[str, int]:
        """The parameters of the index now holding the rows (for manifests and benchmarks)."""
        if isinstance(self._index, faiss.IndexIVFFlat):
            return {"nlist": int(self._index.nlist), "nprobe": int(self._index.nprobe)}
        if isinstance(self._index, faiss.IndexHNSWFlat):
            hnsw = self._index.hnsw
            m = int(hnsw.nb_neighbors(1))  # type: ignore[attr-defined]  # not in faiss's stubs
            return {
                "m": m,
                "ef_search": int(hnsw.efSearch),
                "ef_construction": int(hnsw.efConstruction),
            }
        return {}

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
        if not len(vectors):
            return
        wanted = self.options.kind_for(len(self) + len(vectors))
        if self.kind is IndexKind.FLAT and wanted is not IndexKind.FLAT:
            # Grown past the threshold (or an approximate kind asked for): rebuild from all rows.
            if len(self):
                vectors = np.concatenate([self.vectors(), vectors])
            self._index = self._build(wanted, vectors)
        else:
            self._index.add(vectors)  # an IVF index keeps its lists and direct map up to date
        self._labels = np.concatenate([self._labels, labels])

    def _build(self, kind: IndexKind, vectors: np.ndarray) -> faiss.Index:
        opts = self.options
        if kind is IndexKind.HNSW:
            index = faiss.IndexHNSWFlat(self.dim, opts.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = opts.ef_construction
            index.hnsw.efSearch = opts.ef_search
            index.add(vectors)
            return index
        nlist = opts.nlist_for(len(vectors))
        quantizer = faiss.IndexFlatIP(self.dim)
        ivf = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        sample = vectors
        cap = nlist * TRAIN_POINTS_PER_LIST
        if len(vectors) > cap:
            pick = np.random.default_rng(0).choice(len(vectors), cap, replace=False)
            sample = vectors[np.sort(pick)]
        ivf.train(sample)
        ivf.nprobe = opts.nprobe_for(nlist)
        ivf.add(vectors)
        ivf.make_direct_map()  # reconstruct() by row, for vectors()
        return ivf

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

    def nbytes(self) -> int:
        """Size of the serialized faiss index (vectors, ids, lists or graph), labels excluded.

        Counted while writing to a callback, so a large index is not copied to measure it.
        """
        total = 0

        def count(chunk: bytes) -> int:
            nonlocal total
            total += len(chunk)
            return len(chunk)

        writer = faiss.PyCallbackIOWriter(count)  # type: ignore[attr-defined]  # not in stubs
        faiss.write_index(self._index, writer)
        del writer  # flushes the last chunk
        return total

    def save(self, folder: Path) -> None:
        """Write ``index.faiss``, ``labels.npy`` and ``index.json`` (kind, parameters)."""
        folder.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self._index, str(folder / "index.faiss"))
        np.save(folder / "labels.npy", self._labels)
        meta = {"dim": self.dim, "rows": len(self), "kind": self.kind.value, "params": self.params}
        (folder / "index.json").write_text(json.dumps(meta), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path, *, options: IndexOptions | None = None) -> FaissIndex:
        """Read an index written by ``save``. The search settings of ``options`` (``nprobe``
        when not 0, ``ef_search``) replace the saved ones; the kind stays what was built."""
        try:
            meta = json.loads((folder / "index.json").read_text(encoding="utf-8"))
            raw = faiss.read_index(str(folder / "index.faiss"))
            labels = np.load(folder / "labels.npy")
        except (OSError, ValueError, RuntimeError) as exc:
            raise IndexStateError(
                f"cannot read the index in {folder} ({exc}): delete the folder or run "
                "'autoreply index build' to rebuild it"
            ) from exc
        if (
            not isinstance(meta, dict)
            or raw.d != meta.get("dim")
            or raw.ntotal != len(labels)
            or _kind_of(raw) != meta.get("kind", IndexKind.FLAT.value)
        ):
            raise IndexStateError(
                f"the index in {folder} is inconsistent: rebuild it with 'autoreply index build'"
            )
        index = cls(int(raw.d), options=options)
        index._index = raw
        index._labels = labels.astype(np.int64)
        if options is not None and isinstance(raw, faiss.IndexIVFFlat) and options.nprobe:
            raw.nprobe = options.nprobe_for(int(raw.nlist))
        if options is not None and isinstance(raw, faiss.IndexHNSWFlat):
            raw.hnsw.efSearch = options.ef_search
        return index


def _kind_of(index: faiss.Index) -> IndexKind:
    if isinstance(index, faiss.IndexHNSWFlat):
        return IndexKind.HNSW
    if isinstance(index, faiss.IndexIVFFlat):
        return IndexKind.IVF
    return IndexKind.FLAT
