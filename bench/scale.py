"""Index scale: FaissIndex at 1k, 10k, 100k and 1M synthetic entries of dimension 384.

For each size, the index that kind ``auto`` chooses (``IndexOptions()`` defaults), and from
``--side-by-side`` rows on (default 100k) every kind next to it: flat (exact, the reference),
IVF and HNSW. Per index:

- build time (``FaissIndex.add`` of all rows in one call, as ``KnowledgeIndex.build`` does);
- memory per entry: ``nbytes()`` (the serialized faiss index) / rows, against the raw vector
  (dim × 4 bytes); the growth of this process's resident memory during the build is reported
  next to it (``rss_ratio``, noisier: the allocator keeps some slack in the inverted lists);
- query latency p50/p95/p99, one query per call with k = 64 (``knowledge_index.DEPTH``), as the
  service asks it;
- recall@1 against exact search (faiss ``IndexFlatIP``, batched) on the same queries.

Vectors are synthetic but structured, because uniform random vectors in 384 dimensions are all
nearly orthogonal and every point's nearest neighbour is an accident, so approximate recall on
them says nothing. Three levels, like a knowledge base: topics (one per 2,500 rows, random unit
vectors), entries (one per 50 rows, around a topic, cos ≈ 0.7 to it) and texts (around an
entry, cos ≈ 0.55 to it, ≈ 0.3 between two texts of an entry). Point = normalise(centre +
spread · N(0, I/dim)). Queries, half of each:

- ``paraphrase``: a stored text perturbed (cos ≈ 0.86 to it): the exact answer is that text;
- ``fresh``: a new text of a random entry: the exact answer is whichever of its sibling texts
  happens to be closest, often by a margin of 0.01, the hard case for approximate search.

faiss runs with its default OpenMP threads (``faiss.omp_get_max_threads()``, in the JSON).
Writes bench/results/scale.json after every size.

Usage, from the repository root::

    python bench/scale.py                        # 1k, 10k, 100k, 1M: ~15 minutes on 2 cores
    python bench/scale.py --sizes 1k,10k,100k    # half a minute
    # what bench/results/scale.json holds: the threshold (20k) too, every kind from it on
    python bench/scale.py --sizes 1k,10k,20k,100k,1M --side-by-side 20k
    # harder data (siblings at cos 0.2), the chosen index only: bench/results/scale_hard.json
    python bench/scale.py --sizes 100k,1M --side-by-side 2M --text-spread 2.0 \\
        --out bench/results/scale_hard.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from autoreply.vector_index import FaissIndex, IndexKind, IndexOptions  # noqa: E402

RESULTS = HERE / "results" / "scale.json"
DIM = 384  # the bundled e5 encoder (autoreply.encoder, get_encoder("e5").dim)
DEPTH = 64  # autoreply.knowledge_index.DEPTH: nearest texts asked per query
ROWS_PER_ENTRY = 50
ENTRIES_PER_TOPIC = 50
TOPIC_SPREAD, TEXT_SPREAD, PARAPHRASE_SPREAD = 1.0, 1.5, 0.6
GOAL = {"rows": 1_000_000, "p95_ms": 10.0, "recall_at_1": 0.95, "memory_ratio": 1.5}
CHUNK = 100_000


def parse_size(text: str) -> int:
    text = text.strip().lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text.rstrip("km")) * scale)


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def around(centres: np.ndarray, spread: float, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors near each row of ``centres``, generated in chunks (float32 throughout)."""
    out = np.empty(centres.shape, dtype=np.float32)
    for start in range(0, len(centres), CHUNK):
        c = centres[start : start + CHUNK]
        noise = rng.standard_normal(c.shape, dtype=np.float32) * np.float32(spread / DIM**0.5)
        out[start : start + CHUNK] = unit(c + noise)
    return out


def synthetic(
    rows: int, queries: int, seed: int, *, text_spread: float = TEXT_SPREAD
) -> tuple[np.ndarray, np.ndarray]:
    """Rows (rows, DIM) and queries (queries, DIM): first half paraphrases, then fresh texts."""
    rng = np.random.default_rng(seed)
    n_entries = max(1, rows // ROWS_PER_ENTRY)
    n_topics = max(1, n_entries // ENTRIES_PER_TOPIC)
    topics = unit(rng.standard_normal((n_topics, DIM), dtype=np.float32))
    entries = around(topics[rng.integers(n_topics, size=n_entries)], TOPIC_SPREAD, rng)
    # Every entry gets rows; the rest at random, so entries differ in size like FAQ entries.
    owner = np.concatenate([np.arange(n_entries), rng.integers(n_entries, size=rows - n_entries)])
    vectors = around(entries[owner], text_spread, rng)
    half = queries // 2
    paraphrases = around(vectors[rng.integers(rows, size=half)], PARAPHRASE_SPREAD, rng)
    fresh = around(entries[rng.integers(n_entries, size=queries - half)], text_spread, rng)
    return vectors, np.concatenate([paraphrases, fresh])


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 3)


def exact_top1(vectors: np.ndarray, queries: np.ndarray) -> np.ndarray:
    flat = faiss.IndexFlatIP(DIM)
    flat.add(vectors)
    _, rows = flat.search(queries, 1)
    return rows[:, 0]


def measure(
    kind: IndexKind,
    vectors: np.ndarray,
    queries: np.ndarray,
    exact: np.ndarray,
    *,
    latency_queries: int,
) -> dict[str, Any]:
    gc.collect()
    before = rss_bytes()
    index = FaissIndex(DIM, options=IndexOptions(kind=kind))
    start = time.perf_counter()
    index.add(vectors, np.arange(len(vectors)))
    build = time.perf_counter() - start
    gc.collect()
    rss = rss_bytes() - before
    rows, raw = len(vectors), DIM * 4
    nbytes = index.nbytes()

    for q in queries[:20]:  # warm up caches and OpenMP threads
        index.search(q[None, :], k=DEPTH)
    times = []
    for q in queries[:latency_queries]:
        t = time.perf_counter()
        index.search(q[None, :], k=DEPTH)
        times.append((time.perf_counter() - t) * 1000)
    found = index.search(queries, k=1).rows[:, 0]
    hit = found == exact
    half = len(queries) // 2
    result = {
        "rows": rows,
        "kind": index.kind.value,
        "asked": kind.value,
        "params": index.params,
        "build_s": round(build, 2),
        "bytes_per_entry": round(nbytes / rows, 1),
        "raw_bytes_per_entry": raw,
        "memory_ratio": round(nbytes / rows / raw, 3),
        "rss_ratio": round(rss / rows / raw, 3),
        "latency_queries": len(times),
        "p50_ms": pct(times, 50),
        "p95_ms": pct(times, 95),
        "p99_ms": pct(times, 99),
        "recall_queries": len(queries),
        "recall_at_1": round(float(hit.mean()), 4),
        "recall_paraphrase": round(float(hit[:half].mean()), 4),
        "recall_fresh": round(float(hit[half:].mean()), 4),
    }
    del index
    gc.collect()
    return result


def goal_check(results: list[dict[str, Any]]) -> dict[str, Any] | None:
    chosen = [r for r in results if r["rows"] == GOAL["rows"] and r["asked"] == "auto"]
    if not chosen:
        return None
    r = chosen[0]
    return {
        "kind": r["kind"],
        "p95_ms": r["p95_ms"],
        "recall_at_1": r["recall_at_1"],
        "memory_ratio": r["memory_ratio"],
        "met": r["p95_ms"] < GOAL["p95_ms"]
        and r["recall_at_1"] >= GOAL["recall_at_1"]
        and r["memory_ratio"] <= GOAL["memory_ratio"],
    }


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| rows | index | params | build s | bytes/entry | × raw | p50 ms | p95 ms | recall@1 "
        "| paraphrase | fresh |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        name = r["kind"] + (" (auto)" if r["asked"] == "auto" else "")
        params = ", ".join(f"{k}={v}" for k, v in r["params"].items()) or "–"
        lines.append(
            f"| {r['rows']:,} | {name} | {params} | {r['build_s']} | {r['bytes_per_entry']:,} "
            f"| {r['memory_ratio']} | {r['p50_ms']} | {r['p95_ms']} | {r['recall_at_1']} "
            f"| {r['recall_paraphrase']} | {r['recall_fresh']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1k,10k,100k,1M", help="comma-separated row counts")
    parser.add_argument("--queries", type=int, default=1000, help="queries per size")
    parser.add_argument(
        "--flat-latency-queries",
        type=int,
        default=200,
        help="single-query calls timed for flat at 100k rows and more (it is slow there)",
    )
    parser.add_argument(
        "--side-by-side", type=parse_size, default=100_000, help="rows from which all kinds run"
    )
    parser.add_argument(
        "--text-spread",
        type=float,
        default=TEXT_SPREAD,
        help="texts around their entry: 1.5 (cos 0.3 between siblings); 2.0 is harder (0.2)",
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    report: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "faiss": faiss.__version__,
            "faiss_threads": faiss.omp_get_max_threads(),
        },
        "dim": DIM,
        "k": DEPTH,
        "data": {
            "rows_per_entry": ROWS_PER_ENTRY,
            "entries_per_topic": ENTRIES_PER_TOPIC,
            "spreads": {
                "topic": TOPIC_SPREAD,
                "text": args.text_spread,
                "paraphrase": PARAPHRASE_SPREAD,
            },
            "seed": args.seed,
        },
        "defaults": {
            k: (v.value if isinstance(v, IndexKind) else v) for k, v in vars(IndexOptions()).items()
        },
        "goal": GOAL,
        "results": [],
    }
    results: list[dict[str, Any]] = report["results"]
    for rows in sizes:
        t = time.perf_counter()
        vectors, queries = synthetic(rows, args.queries, args.seed, text_spread=args.text_spread)
        exact = exact_top1(vectors, queries)
        print(f"{rows:,} rows: data and exact answers in {time.perf_counter() - t:.1f} s")
        kinds = [IndexKind.AUTO]
        if rows >= args.side_by_side:
            chosen = IndexOptions().kind_for(rows)
            kinds += [k for k in (IndexKind.FLAT, IndexKind.IVF, IndexKind.HNSW) if k != chosen]
        for kind in kinds:
            slow_flat = IndexOptions(kind=kind).kind_for(rows) is IndexKind.FLAT and rows >= 100_000
            n_latency = args.flat_latency_queries if slow_flat else args.queries
            r = measure(kind, vectors, queries, exact, latency_queries=n_latency)
            results.append(r)
            print(
                f"  {r['kind']:<5} ({r['asked']}) build {r['build_s']} s, "
                f"×{r['memory_ratio']} raw, p50 {r['p50_ms']} ms, p95 {r['p95_ms']} ms, "
                f"recall@1 {r['recall_at_1']}",
                flush=True,
            )
        del vectors, queries
        report["goal_check"] = goal_check(results)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print()
    print(table(results))
    if report.get("goal_check"):
        print("\ngoal at 1M:", report["goal_check"])


if __name__ == "__main__":
    main()
