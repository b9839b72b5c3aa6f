"""Memory probe: which request kind grows a replica's memory, and does it level off?

One process, no network: the service app (``create_app()``, SQLite in a temp dir, the bundled
demo knowledge) driven in-process through starlette's TestClient, one request kind at a time,
``--batches`` batches of ``--per-batch`` requests. After each batch it prints:

- ``rss``: VmRSS of the process (MB), what the soak measures;
- ``heap``/``free``: glibc's view (mallinfo2): bytes in use by malloc and bytes malloc holds
  free (in all arenas); ``free`` that RSS keeps is allocator retention, not a leak;
- ``py``/``py_peak``: with ``--tracemalloc``, Python's (and numpy's) allocations traced now and
  at their peak during the batch (MB);
- ``gaps``: FAQ gaps in the store (what gap topics cluster);
- ``trimmed``: RSS after ``malloc_trim(0)`` (with ``--trim report``: measured, then trimmed,
  so the next batch starts trimmed; ``--trim never``: not called).

Kinds: message (a new customer each time, half of them continuing a conversation), reload
(POST /v1/admin/reload), report (GET /v1/insights/report), gaps (GET /v1/insights/gaps),
conversation, metrics, queue (GET /v1/tickets), mix (the soak's mix, roughly).
Before the batches, ``--seed-messages`` customer messages give the gaps and the report
something to cluster (gaps pile up as in the soak: ``message`` batches add more).

Example:  python bench/memprobe.py --kind reload --batches 10 --per-batch 20 --encoder hashing
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import itertools
import json
import random
import sqlite3
import sys
import tempfile
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from autoreply.app import create_app
from autoreply.knowledge import bundled_knowledge_dir
from autoreply.settings import HoursConfig, ServerConfig, Settings
from autoreply.store import AgentRole, new_token, open_store

REPO = Path(__file__).resolve().parent.parent
QUESTIONS = [
    json.loads(line)["question"]
    for line in (REPO / "eval" / "demo_questions.jsonl").read_text(encoding="utf-8").splitlines()
    if line.strip()
]
KINDS = ["message", "reload", "report", "gaps", "conversation", "metrics", "queue", "mix"]


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
_mallinfo2 = getattr(_libc, "mallinfo2", None)
if _mallinfo2 is not None:
    _mallinfo2.restype = _Mallinfo2


def arenas() -> list[tuple[float, float]]:
    """(MB in use, MB free) of each malloc arena, from malloc_info()'s XML."""
    import re

    _libc.fopen.restype = ctypes.c_void_p
    _libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    _libc.fclose.argtypes = [ctypes.c_void_p]
    _libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    with tempfile.NamedTemporaryFile(suffix=".xml") as out:
        f = _libc.fopen(out.name.encode(), b"w")
        _libc.malloc_info(0, f)
        _libc.fclose(f)
        xml = Path(out.name).read_text()
    rows = []
    for heap in re.findall(r"<heap nr=.*?</heap>", xml, re.S):
        free = sum(
            int(x)
            for x in re.findall(r'<total type="(?:fast|rest)" count="\d+" size="(\d+)"', heap)
        )
        size = re.search(r'<system type="current" size="(\d+)"', heap)
        total = int(size.group(1)) if size else 0
        rows.append((round((total - free) / 2**20, 1), round(free / 2**20, 1)))
    return rows


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def heap_mb() -> tuple[float, float]:
    """(bytes malloc has handed out, bytes it holds free) in MB, over all arenas."""
    if _mallinfo2 is None:
        return (0.0, 0.0)
    m = _mallinfo2()
    return ((m.uordblks + m.hblkhd) / 2**20, m.fordblks / 2**20)


class Driver:
    def __init__(self, client: TestClient, tokens: dict[str, str], rng: random.Random) -> None:
        self.client, self.tokens, self.rng = client, tokens, rng
        self.ids = itertools.count(1)
        self.convs: list[tuple[str, str, str]] = []  # (user, conversation id, token)

    def agent(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens['ann']}"}

    def message(self) -> None:
        n = next(self.ids)
        if self.convs and self.rng.random() < 0.5:
            user, _, token = self.rng.choice(self.convs)
            headers = {"X-Conversation-Token": token}
        else:
            user, headers = f"probe-{n}", {}
        body = {"user_id": user, "message_id": f"pm-{n}", "text": self.rng.choice(QUESTIONS)}
        r = self.client.post("/v1/messages", json=body, headers=headers)
        r.raise_for_status()
        reply = r.json()
        if reply.get("conversation_token"):
            self.convs.append((user, reply["conversation_id"], reply["conversation_token"]))
            del self.convs[:-500]

    def reload(self) -> None:
        admin = {"Authorization": f"Bearer {self.tokens['root']}"}
        self.client.post("/v1/admin/reload", headers=admin).raise_for_status()

    def report(self) -> None:
        fmt = self.rng.choice(["json", "md"])
        r = self.client.get("/v1/insights/report", params={"format": fmt}, headers=self.agent())
        r.raise_for_status()

    def gaps(self) -> None:
        self.client.get("/v1/insights/gaps", headers=self.agent()).raise_for_status()

    def conversation(self) -> None:
        if not self.convs:
            return self.message()
        _, conv, token = self.rng.choice(self.convs)
        headers = {"X-Conversation-Token": token}
        self.client.get(f"/v1/conversations/{conv}", headers=headers).raise_for_status()

    def metrics(self) -> None:
        self.client.get("/metrics").raise_for_status()
        self.client.get("/readyz").raise_for_status()

    def queue(self) -> None:
        r = self.client.get("/v1/tickets", params={"limit": 50}, headers=self.agent())
        r.raise_for_status()

    def mix(self) -> None:
        kind = self.rng.choices(
            ["message", "conversation", "queue", "metrics", "gaps", "report", "reload"],
            [50, 8, 15, 5, 0.5, 0.3, 0.1],
        )[0]
        getattr(self, kind)()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", choices=KINDS, default="message")
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--per-batch", type=int, default=50)
    parser.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="KIND:EVERY",
        help="also one request of KIND after every EVERY of --kind (e.g. gaps:20)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="client threads sending at once (the app's worker threads then overlap)",
    )
    parser.add_argument("--encoder", default="hashing", help="hashing (fast) or e5")
    parser.add_argument("--seed-messages", type=int, default=200)
    parser.add_argument(
        "--trim",
        choices=["never", "report"],
        default="report",
        help="report: after each batch, measure RSS, call malloc_trim(0), measure again",
    )
    parser.add_argument("--tracemalloc", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)

    also = [(k, int(n)) for k, n in (a.split(":") for a in args.also)]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="memprobe-") as tmp:
        db = f"sqlite:///{tmp}/probe.db"
        tokens = {name: new_token() for name in ("ann", "root")}
        store = open_store(db)
        store.add_agent("ann", role=AgentRole.AGENT, token=tokens["ann"])
        store.add_agent("root", role=AgentRole.ADMIN, token=tokens["root"])
        store.close()
        settings = Settings(
            db=db,
            knowledge=bundled_knowledge_dir(),
            cache_dir=Path(tmp) / "cache",
            encoder=args.encoder,
            encoder_threads=1,
            server=ServerConfig(
                rate_per_user=1e6, burst_per_user=10**6, rate_per_ip=1e6, burst_per_ip=10**6
            ),
            hours=HoursConfig(weekly={}),
        )
        app = create_app(settings, knowledge_poll_seconds=None)
        rng = random.Random(7)
        # Client threads live as long as the run, like the soak's clients (another process).
        with TestClient(app) as client, ThreadPoolExecutor(args.concurrency) as clients:
            d = Driver(client, tokens, rng)
            for _ in range(args.seed_messages):
                d.message()
            for warm in ("gaps", "report", "reload", "metrics", "conversation", "queue"):
                getattr(d, warm)()  # lazy loads (jieba, sklearn, templates) before measuring
            if args.tracemalloc:
                tracemalloc.start(1)
            gc.collect()
            if args.trim == "report":
                _libc.malloc_trim(0)
            heap, free = heap_mb()
            base = {"batch": 0, "rss": round(rss_mb(), 1), "heap": round(heap, 1)}
            rows.append({**base, "free": round(free, 1)})
            extra = " ".join(f"+{k} every {n}" for k, n in also)
            print(
                f"{args.kind} x{args.per_batch} {extra} encoder={args.encoder} trim={args.trim} "
                f"concurrency={args.concurrency}"
            )
            print(json.dumps(rows[-1]), flush=True)
            for b in range(1, args.batches + 1):
                t0 = time.perf_counter()

                def one(i: int) -> None:
                    getattr(d, args.kind)()
                    for kind, every in also:
                        if i % every == 0:
                            getattr(d, kind)()

                if args.concurrency == 1:
                    for i in range(1, args.per_batch + 1):
                        one(i)
                else:
                    list(clients.map(one, range(1, args.per_batch + 1)))
                seconds = time.perf_counter() - t0
                gc.collect()
                heap, free = heap_mb()
                row: dict[str, Any] = {
                    "batch": b,
                    "rss": round(rss_mb(), 1),
                    "heap": round(heap, 1),
                    "free": round(free, 1),
                    "s": round(seconds, 1),
                }
                if args.tracemalloc:
                    current, peak = tracemalloc.get_traced_memory()
                    row["py"], row["py_peak"] = round(current / 2**20, 2), round(peak / 2**20, 1)
                    tracemalloc.reset_peak()
                with sqlite3.connect(f"{tmp}/probe.db") as conn:
                    row["gaps"] = conn.execute("SELECT count(*) FROM gaps").fetchone()[0]
                row["threads"] = len(list(Path("/proc/self/task").iterdir()))
                row["arenas"] = arenas()
                if args.trim == "report":
                    _libc.malloc_trim(0)
                    row["trimmed"] = round(rss_mb(), 1)
                rows.append(row)
                print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": None}, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
