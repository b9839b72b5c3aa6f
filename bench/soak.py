"""Soak: two replicas on one PostgreSQL under a fixed rate of mixed traffic, for a bounded time.

- A throwaway PostgreSQL cluster (tests/pg.py: initdb + pg_ctl in a temp dir, 127.0.0.1 only),
  one database, four agents and one admin with API tokens created through the store.
- Two replicas: real uvicorn processes (``create_app()`` from ``AUTOREPLY_*`` settings) on
  127.0.0.1, the bundled demo knowledge, the default ``e5`` encoder (``--encoder hashing``
  for a quick run), rate limits raised so the load generator is never throttled, and
  ``AUTOREPLY_ENCODER_THREADS`` = cores / 2 (``--encoder-threads``), as the README's
  deployment guide says for several replicas on one host.
- An open-loop load generator (httpx.AsyncClient, one event loop): ``--rate`` requests per
  second in total, spread at random over both replicas, whatever the latency. The mix:
  customer questions from eval/demo_questions.jsonl (Chinese and English: answers,
  clarifications and picks, escalations, gaps), requests for a person, complaints, retries of
  an acknowledged message on the other replica, one new message sent to both replicas at once,
  feedback, conversation reads; agents listing the queue, claiming one ticket from both
  replicas at once (the loser's 409 is expected and counted apart from errors), reading,
  replying (now and then with a prohibited phrase: 422 expected), resolving; gap topics and
  weekly-report reads. On top, like a load balancer and Prometheus would: /readyz and /metrics
  on each replica every 5 s, and an admin reload on replica 0 every ``--reload-seconds``.
- RSS (VmRSS) and CPU time of each replica every ``--sample-seconds``.
- At the end, the lost-message check against the store: every customer message acknowledged
  with 200 is stored exactly once with the bot reply the acknowledgement named, and every agent
  reply acknowledged with 201 is stored once in its conversation.

The first ``--warmup`` seconds run the same traffic but are left out of the latency, error and
memory figures (the lost-message check covers them). Ctrl-C stops the traffic early; the check
and the report still run (``"interrupted": true``); replicas and cluster are always stopped.

Writes bench/results/soak.json.

Example:  python bench/soak.py --minutes 10 --rate 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# The throwaway cluster is the tests' own helper (tests/pg.py), imported rather than copied.
sys.path.insert(0, str(REPO / "tests"))
import pg  # type: ignore[import-not-found]  # noqa: E402

from autoreply import csat  # noqa: E402
from autoreply.knowledge import bundled_knowledge_dir  # noqa: E402
from autoreply.models import Reason, Role  # noqa: E402
from autoreply.store import AgentRole, new_token, open_store  # noqa: E402

QUESTIONS = REPO / "eval" / "demo_questions.jsonl"
RESULTS = HERE / "results" / "soak.json"
SERVE = """
import sys, uvicorn
from autoreply.app import create_app
uvicorn.run(create_app(), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""
AGENTS = ["ann", "bo", "cy", "di"]
ADMIN = "root"
HUMAN = ["转人工", "我要人工客服", "有活人吗", "I want to talk to a human", "live agent please"]
COMPLAINT = ["你们就是骗子，投诉！", "太差了，我要差评", "This is a scam, I want to complain"]
REPLY = "您好，我来处理您的问题（soak {n}）"  # unique, so the check finds each one
PROHIBITED_REPLY = "你有病吧，自己看说明"
PERIOD_OPS = 5.0  # /readyz and /metrics on each replica this often (seconds)

# Operation -> weight in the mix. Two-request operations (``*_race``) count twice toward --rate.
MIX: dict[str, float] = {
    "message": 40,
    "message_human": 4,
    "message_complaint": 2,
    "message_retry": 3,
    "message_race": 2,
    "feedback": 5,
    "conversation": 4,
    "queue_list": 7,
    "claim_race": 10,
    "ticket_detail": 2,
    "agent_reply": 9,
    "reply_prohibited": 0.5,
    "resolve": 9,
    "insights_gaps": 0.5,
    "insights_report": 0.3,
}
COST = {"message_race": 2, "claim_race": 2}
EXPECTED: dict[str, tuple[int, ...]] = {
    "agent_reply": (201,),
    "feedback": (201,),
    "reply_prohibited": (422,),
}
CONFLICT_OK = {"message_race", "claim_race"}  # 409 is the designed answer to the race's loser
HEAVY_KINDS = {"insights_gaps", "insights_report", "admin_reload"}
"""Requests that cluster gaps, build the report or reload: the suspects for slow neighbours."""


# -- processes --------------------------------------------------------------------------------
@dataclass
class Replica:
    index: int
    url: str
    proc: subprocess.Popen[bytes]
    log: Path


def prefill_gaps(db: str, count: int, seed: int) -> int:
    """Log ``count`` gaps before the replicas start, so the soak measures a full gap window
    (``TopicConfig.max_batch``) instead of one that fills while it runs. The questions are the
    demo questions with a few of their words swapped among each other and a serial number, so
    they cluster like real traffic does (near copies of a few themes, and a long tail)."""
    rng = random.Random(seed)
    questions = [
        json.loads(line)["question"]
        for line in QUESTIONS.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    words = [w for q in questions for w in q.split()]
    store = open_store(db)
    try:
        for n in range(count):
            base = rng.choice(questions).split()
            for _ in range(rng.randint(0, 3)):
                base[rng.randrange(len(base))] = rng.choice(words)
            text = f"{' '.join(base)} #{n}"
            store.add_gap(
                question=text,
                normalized=text.lower(),
                reason=Reason.LOW_CONFIDENCE,
                channel="api",
                conversation_id=f"prefill-{n}",
                user_id=f"prefill-{n % 500}",
            )
    finally:
        store.close()
    return count


def start_replicas(
    db: str, workdir: Path, encoder: str, count: int = 2, threads: int = 0
) -> list[Replica]:
    """``count`` uvicorn processes on one database; returns once all answer /readyz.
    ``threads``: each replica's AUTOREPLY_ENCODER_THREADS (0: not set, every core)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("AUTOREPLY_")}
    replicas: list[Replica] = []
    try:
        for i in range(count):
            env = {
                **base,
                "AUTOREPLY_DB": db,
                "AUTOREPLY_ENCODER": encoder,
                "AUTOREPLY_KNOWLEDGE": str(bundled_knowledge_dir()),
                "AUTOREPLY_CACHE_DIR": str(workdir / f"cache{i}"),
                "AUTOREPLY_HOURS__WEEKLY": "{}",
                "AUTOREPLY_SERVER__RATE_PER_USER": "1000000",
                "AUTOREPLY_SERVER__BURST_PER_USER": "1000000",
                "AUTOREPLY_SERVER__RATE_PER_IP": "1000000",
                "AUTOREPLY_SERVER__BURST_PER_IP": "1000000",
            }
            if threads:
                env["AUTOREPLY_ENCODER_THREADS"] = str(threads)
            port = pg.free_port()
            log = workdir / f"replica{i}.log"
            with log.open("wb") as out:
                # Own session: a Ctrl-C in the terminal reaches this script only, which then
                # finishes the check before stopping the replicas itself.
                proc = subprocess.Popen(
                    [sys.executable, "-c", SERVE, str(port)],
                    env=env,
                    cwd=workdir,  # no stray autoreply.toml
                    stdout=out,
                    stderr=out,
                    start_new_session=True,
                )
            replicas.append(Replica(i, f"http://127.0.0.1:{port}", proc, log))
        deadline = time.monotonic() + 600
        for r in replicas:
            while True:
                if r.proc.poll() is not None:
                    tail = r.log.read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"replica {r.index} exited:\n{tail}")
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"{r.url}/readyz", timeout=5).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"replica {r.index} not ready in 600 s; see {r.log}")
                time.sleep(0.5)
    except BaseException:
        stop_replicas(replicas)
        raise
    return replicas


def stop_replicas(replicas: list[Replica]) -> dict[str, dict[str, Any]]:
    """SIGTERM (uvicorn's graceful shutdown), SIGKILL after 30 s. uvicorn re-raises the
    signal once it has shut down, so a clean stop exits with -15 and ``killed`` false."""
    started = time.monotonic()
    for r in replicas:
        if r.proc.poll() is None:
            r.proc.terminate()
    out: dict[str, dict[str, Any]] = {}
    for r in replicas:
        killed = False
        try:
            code = r.proc.wait(max(1.0, 30 - (time.monotonic() - started)))
        except subprocess.TimeoutExpired:
            r.proc.kill()
            code, killed = r.proc.wait(10), True
        seconds = round(time.monotonic() - started, 1)
        out[f"replica{r.index}"] = {"exit_code": code, "killed": killed, "seconds": seconds}
    return out


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Sampler(threading.Thread):
    """Every ``every`` seconds: (seconds since start, RSS MB, CPU s) of each replica."""

    def __init__(self, replicas: list[Replica], every: float) -> None:
        super().__init__(daemon=True, name="rss-sampler")
        self.replicas, self.every = replicas, every
        self.samples: dict[int, list[tuple[float, float, float]]] = {r.index: [] for r in replicas}
        self.start_time = time.monotonic()
        self.done = threading.Event()

    def sample(self) -> None:
        now = time.monotonic() - self.start_time
        for r in self.replicas:
            with contextlib.suppress(OSError):
                self.samples[r.index].append((now, rss_mb(r.proc.pid), cpu_seconds(r.proc.pid)))

    def run(self) -> None:
        while not self.done.wait(self.every):
            self.sample()

    def report(self, since: float) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for index, all_samples in self.samples.items():
            rows = [s for s in all_samples if s[0] >= since] or all_samples[-1:]
            if not rows:
                continue
            (t0, start, cpu0), (t1, end, cpu1) = rows[0], rows[-1]
            hours = (t1 - t0) / 3600
            out[f"replica{index}"] = {
                "samples": len(rows),
                "start_mb": round(start, 1),
                "end_mb": round(end, 1),
                "max_mb": round(max(s[1] for s in rows), 1),
                "growth_mb": round(end - start, 1),
                "growth_pct": round((end - start) / start * 100, 1) if start else None,
                "slope_mb_per_hour": round(slope([(s[0], s[1]) for s in rows]) * 3600, 1)
                if hours > 0
                else None,
                "cpu_utilisation": round((cpu1 - cpu0) / (t1 - t0), 3) if t1 > t0 else None,
                "series": [[round(s[0]), round(s[1], 1)] for s in rows[:: max(1, len(rows) // 60)]],
            }
        return out


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x (0 with fewer than two points)."""
    if len(points) < 2:
        return 0.0
    mx = sum(p[0] for p in points) / len(points)
    my = sum(p[1] for p in points) / len(points)
    var = sum((p[0] - mx) ** 2 for p in points)
    return sum((p[0] - mx) * (p[1] - my) for p in points) / var if var else 0.0


# -- bookkeeping -------------------------------------------------------------------------------
def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))], 1)


def summary(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"count": 0}
    return {
        "count": len(values),
        "p50": pct(values, 50),
        "p95": pct(values, 95),
        "p99": pct(values, 99),
        "max": round(max(values), 1),
    }


@dataclass
class Stats:
    """Requests of one phase (warm-up or soak): latencies, outcomes, error samples."""

    latencies: dict[str, list[float]] = field(default_factory=dict)
    statuses: Counter[tuple[str, str]] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    conflicts: Counter[str] = field(default_factory=Counter)
    samples: list[dict[str, Any]] = field(default_factory=list)
    timeline: list[tuple[float, str, int, float]] = field(default_factory=list)
    """(start in monotonic seconds, kind, replica, ms) of every request."""

    def record(
        self,
        kind: str,
        replica: int,
        status: int | str,
        ms: float,
        body: str | None,
        started: float = 0.0,
    ) -> str:
        """Count one request; returns its outcome: ok, conflict or error."""
        self.latencies.setdefault(kind, []).append(ms)
        self.timeline.append((started, kind, replica, ms))
        self.statuses[(kind, str(status))] += 1
        if status in EXPECTED.get(kind, (200,)):
            return "ok"
        if status == 409 and kind in CONFLICT_OK:
            self.conflicts[kind] += 1
            return "conflict"
        if isinstance(status, str):
            category = "transport"
        elif status >= 500:
            category = "5xx"
        elif status >= 400:
            category = "unexpected_4xx"
        else:
            category = "unexpected_status"
        self.errors[category] += 1
        if len(self.samples) < 30:
            sample = {"kind": kind, "replica": replica, "status": status, "ms": round(ms, 1)}
            self.samples.append({**sample, "body": (body or "")[:300]})
        return "error"

    def total(self) -> int:
        return sum(len(v) for v in self.latencies.values())

    def report(self, seconds: float) -> dict[str, Any]:
        n = self.total()
        by_kind: dict[str, Any] = {}
        for kind in sorted(self.latencies):
            by_status = {s: c for (k, s), c in sorted(self.statuses.items()) if k == kind}
            by_kind[kind] = {**summary(self.latencies[kind]), "status": by_status}
        errors = sum(self.errors.values())
        return {
            "requests": n,
            "seconds": round(seconds, 1),
            "requests_per_second": round(n / seconds, 2) if seconds else None,
            "errors": errors,
            "error_rate": round(errors / n, 5) if n else None,
            "errors_by_type": dict(self.errors),
            "expected_conflicts_409": dict(self.conflicts),
            "latency_ms": summary([v for vs in self.latencies.values() for v in vs]),
            "by_kind": by_kind,
            "error_samples": self.samples,
            "slow": self.slow(),
        }

    def slow(self, over_ms: float = 1000, after_s: float = 3.0) -> dict[str, Any]:
        """Requests over ``over_ms``: how many started while, or within ``after_s`` after,
        a heavy request (gap clustering, weekly report, reload) ran on the same replica."""
        heavy = [
            (t, t + ms / 1000 + after_s, r)
            for t, kind, r, ms in self.timeline
            if kind in HEAVY_KINDS
        ]
        slow = [x for x in self.timeline if x[3] > over_ms and x[1] not in HEAVY_KINDS]
        near = sum(any(r == hr and a <= t <= b for a, b, hr in heavy) for t, _, r, _ in slow)
        first = min((x[0] for x in self.timeline), default=0.0)
        worst = sorted(slow, key=lambda x: -x[3])[:20]
        return {
            "over_ms": over_ms,
            "requests": len(slow),
            "near_heavy_request": near,
            "heavy_kinds": sorted(HEAVY_KINDS),
            "worst": [
                {"at_s": round(t - first, 1), "kind": k, "replica": r, "ms": round(ms, 1)}
                for t, k, r, ms in worst
            ],
        }


@dataclass
class Customer:
    user: str
    left: int
    busy: bool = False
    clarify: list[tuple[str, str]] = field(default_factory=list)  # (entry id, question)
    token: str | None = None  # the conversation token the first reply returned


@dataclass
class TicketState:
    id: int
    owner: str | None = None
    replies: int = 0
    busy: bool = False


@dataclass
class Ack:
    conversation: str
    reply_id: int
    body: dict[str, Any]
    replica: int


# -- the load ----------------------------------------------------------------------------------
class Load:
    """The traffic generator: open-loop, ``rate`` requests per second in total."""

    def __init__(
        self, replicas: list[Replica], tokens: dict[str, str], *, rate: float, seed: int
    ) -> None:
        self.replicas = replicas
        self.tokens = tokens
        self.rate = rate
        self.rng = random.Random(seed)
        self.questions = [
            json.loads(line)["question"]
            for line in QUESTIONS.read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
        self.stats = Stats()
        self.clients: list[httpx.AsyncClient] = []
        self.customers: list[Customer] = []
        self.next_user = self.next_message = self.next_reply = 0
        self.acks: dict[str, Ack] = {}  # external message id -> acknowledgement
        self.recent: deque[str] = deque(maxlen=2000)  # acked external ids (for retries)
        self.answers: deque[tuple[int, str]] = deque(maxlen=2000)  # (bot message id, conv)
        self.conv_tokens: dict[str, str] = {}  # conversation id -> its customer token
        self.conversations: deque[str] = deque(maxlen=2000)
        self.tickets: dict[int, TicketState] = {}
        self.resolved: set[int] = set()
        self.claims: dict[int, str] = {}  # ticket -> the agent whose claim got the 200
        self.agent_acks: list[dict[str, Any]] = []
        self.anomalies: Counter[str] = Counter()
        self.anomaly_samples: list[dict[str, Any]] = []
        self.shed = 0
        self.inflight: set[asyncio.Task[None]] = set()
        self.stop = asyncio.Event()
        self.interrupted = False
        for _ in range(200):
            self.customers.append(self.new_customer())

    def new_customer(self) -> Customer:
        self.next_user += 1
        return Customer(user=f"soak-{self.next_user}", left=self.rng.randint(3, 12))

    def auth(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"}

    def anomaly(self, name: str, **detail: Any) -> None:
        self.anomalies[name] += 1
        if len(self.anomaly_samples) < 30:
            self.anomaly_samples.append({"anomaly": name, **detail})

    async def call(
        self, kind: str, replica: int, method: str, path: str, **kwargs: Any
    ) -> tuple[str, httpx.Response | None]:
        start = time.perf_counter()
        response: httpx.Response | None
        try:
            response = await self.clients[replica].request(method, path, **kwargs)
            status: int | str = response.status_code
        except httpx.HTTPError as exc:
            response, status = None, type(exc).__name__
        ms = (time.perf_counter() - start) * 1000
        body = response.text if response is not None else None
        return self.stats.record(kind, replica, status, ms, body, start), response

    def replica(self) -> int:
        return self.rng.randrange(len(self.replicas))

    # -- customers ------------------------------------------------------------------------
    def free_customer(self) -> Customer | None:
        for _ in range(20):
            c = self.rng.choice(self.customers)
            if not c.busy:
                return c
        return None

    def message_body(self, c: Customer, kind: str) -> dict[str, Any]:
        self.next_message += 1
        body: dict[str, Any] = {"user_id": c.user, "message_id": f"sm-{self.next_message}"}
        if kind == "message_human":
            body["text"] = self.rng.choice(HUMAN)
        elif kind == "message_complaint":
            body["text"] = self.rng.choice(COMPLAINT)
        elif c.clarify and self.rng.random() < 0.5:
            entry_id, question = self.rng.choice(c.clarify)
            body["text"], body["metadata"] = question, {"picked": entry_id}
        else:
            body["text"] = self.rng.choice(self.questions)
        return body

    def acked(self, c: Customer, body: dict[str, Any], reply: dict[str, Any], replica: int) -> None:
        conv = reply["conversation_id"]
        if reply.get("conversation_token"):  # as a web widget keeps it
            c.token = self.conv_tokens[conv] = reply["conversation_token"]
        self.acks[body["message_id"]] = Ack(conv, reply["message_id"], body, replica)
        self.recent.append(body["message_id"])
        self.conversations.append(conv)
        if reply["decision"] == "answer" and reply["message_id"] is not None:
            self.answers.append((reply["message_id"], conv))
        c.clarify = (
            [(x["entry_id"], x["question"]) for x in reply.get("candidates", [])]
            if reply["decision"] == "clarify"
            else []
        )
        ticket_id = reply.get("ticket_id")
        if ticket_id is not None and ticket_id not in self.resolved:
            self.tickets.setdefault(ticket_id, TicketState(ticket_id))
        c.left -= 1
        if c.left <= 0:  # this customer leaves; a new one arrives
            self.customers[self.customers.index(c)] = self.new_customer()

    @staticmethod
    def token(c: Customer) -> dict[str, str]:
        return {"X-Conversation-Token": c.token} if c.token else {}

    async def message(self, kind: str, c: Customer) -> None:
        body = self.message_body(c, kind)
        replica = self.replica()
        try:
            outcome, response = await self.call(
                kind, replica, "POST", "/v1/messages", json=body, headers=self.token(c)
            )
            if outcome == "ok" and response is not None:
                self.acked(c, body, response.json(), replica)
        finally:
            c.busy = False

    async def message_race(self, c: Customer) -> None:
        """One new message sent to every replica at the same moment."""
        body = self.message_body(c, "message")
        try:
            results = await asyncio.gather(
                *(
                    self.call(
                        "message_race",
                        r.index,
                        "POST",
                        "/v1/messages",
                        json=body,
                        headers=self.token(c),
                    )
                    for r in self.replicas
                )
            )
            replies = [
                (i, resp.json()) for i, (o, resp) in enumerate(results) if o == "ok" and resp
            ]
            if not replies:
                if all(o == "conflict" for o, _ in results):
                    self.anomaly("race_no_200", message_id=body["message_id"])
                return
            ids = {reply["message_id"] for _, reply in replies}
            if len(ids) > 1:
                self.anomaly("race_two_replies", message_id=body["message_id"], ids=sorted(ids))
            firsts = [reply for _, reply in replies if not reply["duplicate"]]
            if len(firsts) > 1:
                self.anomaly("race_handled_twice", message_id=body["message_id"])
            # The reply that started the conversation carries its token: keep that one.
            index, chosen = next(
                ((i, r) for i, r in replies if r.get("conversation_token")), replies[0]
            )
            self.acked(c, body, chosen, index)
        finally:
            c.busy = False

    async def message_retry(self, external_id: str) -> None:
        """An acknowledged message again, on the other replica: the first reply comes back."""
        ack = self.acks[external_id]
        replica = (ack.replica + 1) % len(self.replicas)
        outcome, response = await self.call(
            "message_retry", replica, "POST", "/v1/messages", json=ack.body
        )
        if outcome == "ok" and response is not None:
            reply = response.json()
            if not reply["duplicate"] or reply["message_id"] != ack.reply_id:
                self.anomaly(
                    "retry_not_deduplicated",
                    message_id=external_id,
                    duplicate=reply["duplicate"],
                    reply_id=[ack.reply_id, reply["message_id"]],
                )

    # -- agents ---------------------------------------------------------------------------
    def pick_ticket(self, *, claimed: bool, replied: bool = False) -> TicketState | None:
        pool = [
            t
            for t in self.tickets.values()
            if not t.busy and (t.owner is not None) == claimed and (not replied or t.replies > 0)
        ]
        if not pool:
            return None
        t = self.rng.choice(pool[:200]) if claimed else min(pool, key=lambda t: t.id)
        t.busy = True
        return t

    async def queue_list(self) -> None:
        agent = self.rng.choice(AGENTS)
        outcome, response = await self.call(
            "queue_list",
            self.replica(),
            "GET",
            "/v1/tickets",
            params={"status": "open", "limit": 50},
            headers=self.auth(agent),
        )
        if outcome == "ok" and response is not None:
            for view in response.json():
                if view["id"] not in self.resolved:
                    self.tickets.setdefault(view["id"], TicketState(view["id"]))

    async def claim_race(self, t: TicketState) -> None:
        """Two agents claim one open ticket at once, one through each replica."""
        agents = self.rng.sample(AGENTS, len(self.replicas))
        try:
            results = await asyncio.gather(
                *(
                    self.call(
                        "claim_race",
                        r.index,
                        "POST",
                        f"/v1/tickets/{t.id}/claim",
                        headers=self.auth(agent),
                    )
                    for r, agent in zip(self.replicas, agents, strict=True)
                )
            )
            winners = [agent for agent, (o, _) in zip(agents, results, strict=True) if o == "ok"]
            if len(winners) == 1:
                t.owner = self.claims[t.id] = winners[0]
            elif len(winners) > 1:
                self.anomaly("claim_two_owners", ticket_id=t.id, agents=winners)
            elif all(o == "conflict" for o, _ in results):
                self.anomaly("claim_no_winner", ticket_id=t.id)
        finally:
            t.busy = False

    async def agent_reply(self, t: TicketState, *, prohibited: bool = False) -> None:
        assert t.owner is not None
        self.next_reply += 1
        text = PROHIBITED_REPLY if prohibited else REPLY.format(n=self.next_reply)
        kind = "reply_prohibited" if prohibited else "agent_reply"
        try:
            outcome, response = await self.call(
                kind,
                self.replica(),
                "POST",
                f"/v1/tickets/{t.id}/reply",
                json={"text": text},
                headers=self.auth(t.owner),
            )
            if outcome == "ok" and response is not None and not prohibited:
                message = response.json()["message"]
                self.agent_acks.append(
                    {
                        "id": message["id"],
                        "ticket_id": t.id,
                        "conversation": message["conversation_id"],
                        "text": text,
                    }
                )
                t.replies += 1
        finally:
            t.busy = False

    async def resolve(self, t: TicketState) -> None:
        assert t.owner is not None
        try:
            outcome, _ = await self.call(
                "resolve",
                self.replica(),
                "POST",
                f"/v1/tickets/{t.id}/resolve",
                json={},
                headers=self.auth(t.owner),
            )
            if outcome == "ok":
                self.resolved.add(t.id)
                del self.tickets[t.id]
        finally:
            t.busy = False

    # -- scheduling -----------------------------------------------------------------------
    def plan(self, kind: str) -> tuple[str, Any]:
        """The coroutine for one operation of ``kind`` (or a stand-in when it has no target:
        a fresh question for customer operations, a queue listing for agent ones)."""
        rng = self.rng
        if kind in ("message", "message_human", "message_complaint", "message_race"):
            c = self.free_customer()
            if c is None:
                self.anomaly("all_customers_busy")
                return "queue_list", self.queue_list()
            c.busy = True
            if kind == "message_race":
                return kind, self.message_race(c)
            return kind, self.message(kind, c)
        if kind == "message_retry" and self.recent:
            return kind, self.message_retry(rng.choice(self.recent))
        if kind == "feedback" and self.answers:
            message_id, conv = rng.choice(self.answers)
            body = {"message_id": message_id, "helpful": rng.random() < 0.7}
            headers = {"X-Conversation-Token": self.conv_tokens.get(conv, "")}
            return kind, self.call(
                kind, self.replica(), "POST", "/v1/feedback", json=body, headers=headers
            )
        if kind == "conversation" and self.conversations:
            conv = rng.choice(self.conversations)
            headers = {"X-Conversation-Token": self.conv_tokens.get(conv, "")}
            path = f"/v1/conversations/{conv}"
            return kind, self.call(kind, self.replica(), "GET", path, headers=headers)
        if kind == "claim_race":
            t = self.pick_ticket(claimed=False)
            if t is not None:
                return kind, self.claim_race(t)
        if kind == "ticket_detail" and (self.tickets or self.resolved):
            ticket_id = rng.choice([*self.tickets, *list(self.resolved)[-200:]])
            headers = self.auth(rng.choice(AGENTS))
            path = f"/v1/tickets/{ticket_id}"
            return kind, self.call(kind, self.replica(), "GET", path, headers=headers)
        if kind in ("agent_reply", "reply_prohibited"):
            t = self.pick_ticket(claimed=True)
            if t is not None:
                return kind, self.agent_reply(t, prohibited=kind == "reply_prohibited")
        if kind == "resolve":
            t = self.pick_ticket(claimed=True, replied=True)
            if t is not None:
                return kind, self.resolve(t)
        if kind == "insights_gaps":
            headers = self.auth(rng.choice(AGENTS))
            return kind, self.call(
                kind, self.replica(), "GET", "/v1/insights/gaps", headers=headers
            )
        if kind == "insights_report":
            headers = self.auth(rng.choice(AGENTS))
            params = {"format": rng.choice(["json", "md"])}
            call = self.call(
                kind, self.replica(), "GET", "/v1/insights/report", headers=headers, params=params
            )
            return kind, call
        if kind in ("message_retry", "feedback", "conversation"):
            return self.plan("message")
        return "queue_list", self.queue_list()

    def spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self.inflight.add(task)
        task.add_done_callback(self.inflight.discard)

    async def drive(self, seconds: float, *, max_inflight: int = 256) -> None:
        """Open loop: operations at their scheduled times, whatever the replies' latency."""
        kinds, weights = list(MIX), list(MIX.values())
        loop = asyncio.get_running_loop()
        due = loop.time()
        end = due + seconds
        while due < end and not self.stop.is_set():
            delay = due - loop.time()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), delay)
                continue
            kind, coro = self.plan(self.rng.choices(kinds, weights)[0])
            if len(self.inflight) >= max_inflight:
                coro.close()
                self.shed += 1
            else:
                self.spawn(coro)
            due += COST.get(kind, 1) / self.rate

    async def periodic(self, reload_seconds: float) -> None:
        """Health checks and scrapes on every replica, an admin reload on replica 0."""
        loop = asyncio.get_running_loop()
        next_reload = loop.time() + reload_seconds
        while not self.stop.is_set():
            for r in self.replicas:
                self.spawn(self.call("readyz", r.index, "GET", "/readyz"))
                self.spawn(self.call("metrics", r.index, "GET", "/metrics"))
            if loop.time() >= next_reload:
                next_reload += reload_seconds
                headers = self.auth(ADMIN)
                self.spawn(
                    self.call("admin_reload", 0, "POST", "/v1/admin/reload", headers=headers)
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), PERIOD_OPS)

    async def prime(self) -> None:
        """At the end of the warm-up, when there are gaps to cluster: a reload and the
        insights on every replica in turn, so lazy loads (jieba's dictionary, clustering,
        report templates) happen before the measured soak."""
        agent = self.auth(AGENTS[0])
        await self.call("admin_reload", 0, "POST", "/v1/admin/reload", headers=self.auth(ADMIN))
        for r in self.replicas:
            await self.call("insights_gaps", r.index, "GET", "/v1/insights/gaps", headers=agent)
            for fmt in ("json", "md"):
                params = {"format": fmt}
                path = "/v1/insights/report"
                await self.call(
                    "insights_report", r.index, "GET", path, headers=agent, params=params
                )

    async def settle(self, timeout: float = 120) -> None:
        if self.inflight:
            await asyncio.wait(set(self.inflight), timeout=timeout)


def progress(load: Load, sampler: Sampler, label: str, started: float) -> str:
    stats = load.stats
    all_ms = [v for vs in stats.latencies.values() for v in vs]
    rss = " ".join(
        f"r{i}={s[-1][1]:.0f}MB" for i, s in sampler.samples.items() if s
    )  # latest sample
    p99 = pct(all_ms, 99) if all_ms else 0
    return (
        f"[{label} {time.monotonic() - started:6.0f}s] requests={stats.total()} "
        f"errors={sum(stats.errors.values())} conflicts={sum(stats.conflicts.values())} "
        f"p99={p99}ms inflight={len(load.inflight)} open_tickets={len(load.tickets)} {rss}"
    )


async def run_load(
    load: Load, sampler: Sampler, *, warmup: float, seconds: float, reload_seconds: float
) -> tuple[Stats, float, float]:
    """Warm-up, then the soak; returns (warm-up stats, soak start, soak seconds)."""
    loop = asyncio.get_running_loop()

    def interrupt() -> None:
        print("interrupted: stopping the traffic, then checking and reporting", flush=True)
        load.interrupted = True
        load.stop.set()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupt)
    # Idle connections are dropped before uvicorn's own 5 s keep-alive timeout: at equal
    # timeouts a request can go out on a connection the server is closing at that moment
    # (RemoteProtocolError), a client-side race that says nothing about the service.
    limits = httpx.Limits(max_connections=128, max_keepalive_connections=64, keepalive_expiry=2)
    load.clients = [
        httpx.AsyncClient(base_url=r.url, timeout=60, limits=limits) for r in load.replicas
    ]
    ticker_stop = asyncio.Event()

    async def ticker(label: list[str], started: list[float]) -> None:
        while not ticker_stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ticker_stop.wait(), 30)
            print(progress(load, sampler, label[0], started[0]), flush=True)

    label, started = ["warmup"], [time.monotonic()]
    tick = asyncio.ensure_future(ticker(label, started))
    periodic = asyncio.ensure_future(load.periodic(reload_seconds))
    try:
        await load.drive(warmup)
        await load.settle()
        await load.prime()
        warm_stats, load.stats = load.stats, Stats()
        soak_start = time.monotonic() - sampler.start_time
        sampler.sample()
        label[0], started[0] = "soak", time.monotonic()
        await load.drive(seconds)
        soak_seconds = time.monotonic() - started[0]
        load.stop.set()
        await periodic
        await load.settle()
        sampler.sample()
    finally:
        load.stop.set()
        ticker_stop.set()
        await asyncio.gather(tick, periodic, return_exceptions=True)
        for task in list(load.inflight):
            task.cancel()
        for client in load.clients:
            await client.aclose()
        with contextlib.suppress(Exception):
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        signal.signal(signal.SIGTERM, terminate)
    return warm_stats, soak_start, soak_seconds


# -- the check ---------------------------------------------------------------------------------
def check_store(db: str, load: Load) -> dict[str, Any]:
    """Every acknowledged customer message and agent reply, looked up in the store."""
    store = open_store(db)
    lost: Counter[str] = Counter()
    duplicated: Counter[str] = Counter()
    details: list[dict[str, Any]] = []
    by_conv: dict[str, list[str]] = {}
    for external_id, ack in load.acks.items():
        by_conv.setdefault(ack.conversation, []).append(external_id)
    agent_by_conv: dict[str, list[dict[str, Any]]] = {}
    for reply in load.agent_acks:
        agent_by_conv.setdefault(reply["conversation"], []).append(reply)
    unanswered = 0
    try:
        for conv in sorted(set(by_conv) | set(agent_by_conv)):
            history = store.history(conv)
            customer = Counter(m.external_id for m in history if m.role is Role.CUSTOMER)
            # the rating question sent on resolve (csat.ask) answers no customer message
            bots = {
                m.id for m in history if m.role is Role.BOT and csat.KEY not in (m.details or {})
            }
            agents = Counter(m.text for m in history if m.role is Role.AGENT)
            agent_ids = {m.id for m in history if m.role is Role.AGENT}
            n_customer = sum(customer.values())
            if len(bots) > n_customer:
                duplicated["bot_reply"] += len(bots) - n_customer
                details.append({"conversation": conv, "problem": "more bot replies than messages"})
            unanswered += max(0, n_customer - len(bots))
            for external_id in by_conv.get(conv, []):
                ack = load.acks[external_id]
                if customer[external_id] == 0:
                    lost["customer_message"] += 1
                    details.append({"message_id": external_id, "problem": "customer message lost"})
                elif customer[external_id] > 1:
                    duplicated["customer_message"] += customer[external_id] - 1
                    details.append({"message_id": external_id, "problem": "stored twice"})
                if ack.reply_id not in bots:
                    lost["bot_reply"] += 1
                    details.append({"message_id": external_id, "problem": "bot reply lost"})
            for reply in agent_by_conv.get(conv, []):
                if reply["id"] not in agent_ids or agents[reply["text"]] == 0:
                    lost["agent_reply"] += 1
                    details.append({"agent_reply": reply["id"], "problem": "agent reply lost"})
                elif agents[reply["text"]] > 1:
                    duplicated["agent_reply"] += agents[reply["text"]] - 1
                    details.append({"agent_reply": reply["id"], "problem": "stored twice"})
        owners: Counter[str] = Counter()
        for ticket_id, agent in load.claims.items():
            if store.get_ticket(ticket_id).owner != agent:
                owners["owner_mismatch"] += 1
        counts = store.counts()
    finally:
        store.close()
    return {
        "customer_messages_acked": len(load.acks),
        "agent_replies_acked": len(load.agent_acks),
        "conversations_checked": len(set(by_conv) | set(agent_by_conv)),
        "lost": sum(lost.values()),
        "duplicated": sum(duplicated.values()),
        "lost_by_kind": dict(lost),
        "duplicated_by_kind": dict(duplicated),
        "claims_checked": len(load.claims),
        "claim_owner_mismatches": owners["owner_mismatch"],
        "stored_customer_messages_without_reply": unanswered,
        "details": details[:30],
        "store_counts": counts,
    }


def log_problems(replicas: list[Replica]) -> dict[str, Any]:
    """Error-level JSON log lines and (plain-text) tracebacks in each replica's log, with the
    first few in full, and the warning events by count."""
    out: dict[str, Any] = {}
    for r in replicas:
        lines = r.log.read_text(encoding="utf-8", errors="replace").splitlines()
        problems: list[str] = []
        warnings: Counter[str] = Counter()
        i = 0
        while i < len(lines):
            line = lines[i]
            if line.startswith(("Traceback", "ERROR")):
                block = [line]
                while i + 1 < len(lines) and not lines[i + 1].startswith(("{", "ERROR", "INFO")):
                    i += 1
                    block.append(lines[i])
                problems.append("\n".join(block[-40:]))
            elif line.startswith("{"):
                with contextlib.suppress(ValueError):
                    record = json.loads(line)
                    if record.get("level") in ("error", "critical"):
                        problems.append(line)
                    elif record.get("level") == "warning":
                        warnings[record.get("event", "")] += 1
            i += 1
        out[f"replica{r.index}"] = {
            "lines": len(lines),
            "errors": len(problems),
            "warnings": dict(warnings),
            "examples": [p[-4000:] for p in problems[:3]],
        }
    return out


def terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10, help="soak length after warm-up")
    parser.add_argument("--warmup", type=float, default=30, help="warm-up seconds (not counted)")
    parser.add_argument("--rate", type=float, default=20, help="requests per second in total")
    parser.add_argument("--encoder", default="e5", help="the replicas' encoder: e5 or hashing")
    parser.add_argument(
        "--encoder-threads",
        type=int,
        default=max(1, (os.cpu_count() or 2) // 2),
        help="AUTOREPLY_ENCODER_THREADS of each replica [default: cores / 2]; 0 leaves it "
        "unset, so both replicas' encoders use every core and stall each other",
    )
    parser.add_argument("--reload-seconds", type=float, default=120, help="admin reload period")
    parser.add_argument("--sample-seconds", type=float, default=5, help="RSS sampling period")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--prefill-gaps",
        type=int,
        default=0,
        help="log this many gaps before starting (4000 fills the gap-topic window, so memory "
        "is measured with the window full rather than filling)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the replica logs' folder")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if (reason := pg.unavailable()) is not None:
        raise SystemExit(reason)
    signal.signal(signal.SIGTERM, terminate)  # so the finally blocks below always run

    workdir = Path(tempfile.mkdtemp(prefix="autoreply-soak-"))
    cluster = pg.Cluster()
    replicas: list[Replica] = []
    sampler: Sampler | None = None
    exit_codes: dict[str, dict[str, Any]] = {}
    finished = False
    try:
        cluster.start()
        cluster.admin("CREATE DATABASE soak")
        db = cluster.url("soak")
        tokens = {name: new_token() for name in [*AGENTS, ADMIN]}
        store = open_store(db)  # creates and migrates the schema
        try:
            for name in AGENTS:
                store.add_agent(name, role=AgentRole.AGENT, token=tokens[name])
            store.add_agent(ADMIN, role=AgentRole.ADMIN, token=tokens[ADMIN])
        finally:
            store.close()
        if args.prefill_gaps:
            print(f"logging {prefill_gaps(db, args.prefill_gaps, args.seed)} gaps first ...")
        print(f"PostgreSQL on port {cluster.port}; starting 2 replicas ({args.encoder}) ...")
        started = time.monotonic()
        replicas = start_replicas(db, workdir, args.encoder, threads=args.encoder_threads)
        ready_seconds = time.monotonic() - started
        print(f"replicas ready in {ready_seconds:.1f} s: {', '.join(r.url for r in replicas)}")
        print(f"replica logs: {workdir}", flush=True)
        sampler = Sampler(replicas, args.sample_seconds)
        sampler.start()
        load = Load(replicas, tokens, rate=args.rate, seed=args.seed)
        warm, soak_start, soak_seconds = asyncio.run(
            run_load(
                load,
                sampler,
                warmup=args.warmup,
                seconds=args.minutes * 60,
                reload_seconds=args.reload_seconds,
            )
        )
        sampler.done.set()
        print("traffic done; checking the store ...", flush=True)
        check = check_store(db, load)
        with psycopg.connect(db) as conn:
            version = conn.execute("SHOW server_version").fetchone()
            size = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        soak = load.stats.report(soak_seconds)
        report: dict[str, Any] = {
            "command": " ".join(["python", "bench/soak.py", *sys.argv[1:]]),
            "interrupted": load.interrupted,
            "machine": {
                "python": platform.python_version(),
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
            },
            "config": {
                "replicas": len(replicas),
                "encoder": args.encoder,
                "encoder_threads_per_replica": args.encoder_threads or None,
                "knowledge": "bundled demo (knowledge/)",
                "postgresql": version[0] if version else None,
                "rate_per_second": args.rate,
                "minutes": args.minutes,
                "warmup_seconds": args.warmup,
                "prefilled_gaps": args.prefill_gaps,
                "reload_every_seconds": args.reload_seconds,
                "readyz_and_metrics_every_seconds": PERIOD_OPS,
                "mix_weights": MIX,
                "replicas_ready_seconds": round(ready_seconds, 1),
            },
            "soak": soak,
            "shed_by_generator": load.shed,
            "anomalies": dict(load.anomalies),
            "anomaly_samples": load.anomaly_samples,
            "memory": sampler.report(soak_start),
            "lost_check": check,
            "open_tickets_at_end": len(load.tickets),
            "database_mb": round(size[0] / 2**20, 1) if size else None,
            "warmup": {
                "requests": warm.total(),
                "errors": sum(warm.errors.values()),
                "errors_by_type": dict(warm.errors),
                "error_samples": warm.samples[:10],
            },
        }
        exit_codes = stop_replicas(replicas)
        report["replica_stop"] = exit_codes
        report["replica_logs"] = log_problems(replicas)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", "utf-8")
        memory = report["memory"]
        print(
            f"requests {soak['requests']} ({soak['requests_per_second']}/s), errors "
            f"{soak['errors']} (rate {soak['error_rate']}), 409s {soak['expected_conflicts_409']}, "
            f"p99 {soak['latency_ms'].get('p99')} ms; lost {check['lost']}, duplicated "
            f"{check['duplicated']}; anomalies {dict(load.anomalies)}"
        )
        for name, m in memory.items():
            print(f"{name}: RSS {m['start_mb']} -> {m['end_mb']} MB (max {m['max_mb']})")
        print(f"wrote {args.out}")
        problems = any(v["errors"] for v in report["replica_logs"].values())
        finished = not (problems or args.keep)
    finally:
        if sampler is not None:
            sampler.done.set()
        if replicas and not exit_codes:
            stop_replicas(replicas)
        cluster.stop()
        if finished:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"replica logs kept in {workdir}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
