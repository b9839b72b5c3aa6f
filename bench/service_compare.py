"""bench/service.py on two trees, interleaved in one run: old, new, old, new...

Each run is the tree's own bench/service.py (its server imports that tree's autoreply), so
the comparison is the service as each commit ships it, on the same machine in the same
minutes. Prints and writes, per concurrency, the median of each tree's runs and new/old
ratios (throughput, p50, p99, server CPU per request) and the goal ratios.

Example:  python bench/service_compare.py --old /tmp/wt-old --pairs 2 --requests 600
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def run(tree: Path, requests: int, out: Path) -> dict[str, Any]:
    cmd = [sys.executable, str(tree / "bench" / "service.py"), "--requests", str(requests)]
    subprocess.run([*cmd, "--out", str(out)], check=True, cwd=tree)
    return dict(json.loads(out.read_text()))


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    levels: dict[int, dict[str, float]] = {}
    for level in runs[0]["service"]:
        c = level["concurrency"]
        rows = [next(x for x in r["service"] if x["concurrency"] == c) for r in runs]
        levels[c] = {
            "throughput_per_second": statistics.median(x["throughput_per_second"] for x in rows),
            "p50_ms": statistics.median(x["latency_ms"]["p50"] for x in rows),
            "p99_ms": statistics.median(x["latency_ms"]["p99"] for x in rows),
            "server_cpu_ms": statistics.median(x["cpu_ms_per_request"]["server"] for x in rows),
        }
    goals = {
        k: statistics.median(r["ratios"][k] for r in runs)
        for k in ("c32_throughput_vs_raw_batched32", "c1_p50_vs_single_encode")
    }
    return {"levels": levels, "goal_ratios": goals}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", type=Path, required=True, help="the old tree (a worktree)")
    parser.add_argument("--new", type=Path, default=HERE.parent)
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "service_compare.json")
    args = parser.parse_args(argv)
    runs: dict[str, list[dict[str, Any]]] = {"old": [], "new": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.pairs):
            for name in ("old", "new"):
                tree = args.old if name == "old" else args.new
                runs[name].append(run(tree, args.requests, Path(tmp) / f"{name}{i}.json"))
    old, new = summary(runs["old"]), summary(runs["new"])
    ratios = {
        str(c): {k: round(new["levels"][c][k] / v, 3) for k, v in old["levels"][c].items()}
        for c in old["levels"]
    }
    result = {
        "command": "python bench/service_compare.py " + " ".join(sys.argv[1:]),
        "old": str(args.old),
        "new": str(args.new),
        "pairs": args.pairs,
        "requests": args.requests,
        "median_old": old,
        "median_new": new,
        "new_over_old": ratios,
        "runs": runs,
    }
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps({"new_over_old": ratios, "old": old, "new": new}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
