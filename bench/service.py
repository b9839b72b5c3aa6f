"""Service load: a real uvicorn on 127.0.0.1 next to the raw encoder, interleaved in one run.

- Service: a child process runs ``create_app`` on the demo knowledge base with the default
  encoder (rate limits raised so they never throttle); ``--requests`` POST /v1/messages at
  each concurrency (default 1, 8, 32), one keep-alive connection per concurrent client, a
  new user per request: throughput, p50/p95/p99 latency, errors, mean micro-batch size (from
  /metrics) and CPU per request of the server and of this load generator. The load
  generator speaks plain HTTP/1.1 on asyncio streams (``Connection``): it shares the two
  cores with the server, and httpx.AsyncClient cost 2.6-3.7 ms of CPU a request, a tenth of
  what the server spends (the server's CPU per request is reported either way).
- Raw encoder: the same default encoder in this process, on the same questions, while the
  server idles. Machines drift (other tenants, CPU boost), so the two are interleaved: at
  concurrency 1 every service request is preceded by one raw single encode of the same
  question; at higher concurrency the run is cut into ``--rounds`` rounds of [raw batched
  encoding of 128 questions in batches of 32, then the round's share of requests].

Goals (issue 6): at concurrency 32 the service reaches >= 80% of the raw batched encoder
throughput (batches of 32), and its p50 at concurrency 1 is <= 1.5x a single raw encode.

Writes bench/results/service.json.

Example:  python bench/service.py --requests 2000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
QUESTIONS = REPO / "eval" / "demo_questions.jsonl"
RESULTS = HERE / "results" / "service.json"
RAW_PER_ROUND = 128
TIMEOUT_SECONDS = 120
"""A request without an answer by then counts as an error (TimeoutError)."""
LOAD_ERRORS = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError)
"""What a request of the load client can fail with; counted by type, the run goes on."""


def questions() -> list[str]:
    lines = QUESTIONS.read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["question"] for line in lines if line.strip()]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))], 2)


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system) of a process: this one, or ``pid`` (Linux /proc)."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the server (child process) -----------------------------------------------------------------
def serve(port: int, workdir: Path, encoder: str = "e5") -> None:
    """Run the service on 127.0.0.1:port (the child process's job)."""
    import uvicorn

    from autoreply.app import create_app
    from autoreply.knowledge import bundled_knowledge_dir
    from autoreply.settings import HoursConfig, ServerConfig, Settings

    settings = Settings(
        knowledge=bundled_knowledge_dir(),
        db=str(workdir / "bench.db"),
        cache_dir=workdir / "cache",
        hours=HoursConfig(weekly={}),
        encoder=encoder,
        server=ServerConfig(
            rate_per_user=1e6, burst_per_user=10**6, rate_per_ip=1e6, burst_per_ip=10**6
        ),
    )
    uvicorn.run(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", access_log=False
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(port: int, workdir: Path, encoder: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    log = (workdir / "server.log").open("wb")
    code = f"import sys; sys.path.insert(0, {str(HERE)!r}); import service; "
    code += f"service.serve({port}, __import__('pathlib').Path({str(workdir)!r}), {encoder!r})"
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=log, stderr=log)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited; see {workdir / 'server.log'}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit("server did not become ready in 300 s")


# -- measuring ------------------------------------------------------------------------------------
class Raw:
    """The default encoder in this process, timed on the bench questions."""

    def __init__(self, texts: list[str]) -> None:
        from autoreply.encoder import get_encoder

        self.encoder = get_encoder("e5")
        self.texts = texts
        self.encoder.encode(texts[:8])  # warm up

    def single_ms(self, text: str) -> float:
        start = time.perf_counter()
        self.encoder.encode([text])
        return (time.perf_counter() - start) * 1000

    def batched(self, offset: int, *, size: int = 32, total: int = RAW_PER_ROUND) -> float:
        """Seconds to encode ``total`` questions in batches of ``size``."""
        work = [self.texts[(offset + i) % len(self.texts)] for i in range(total)]
        start = time.perf_counter()
        for i in range(0, total, size):
            self.encoder.encode(work[i : i + size])
        return time.perf_counter() - start


class Connection:
    """One keep-alive HTTP/1.1 connection that POSTs JSON and reads the status."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, payload: dict[str, Any]) -> int:
        """POST ``payload`` as JSON; the response's status (its body is read and dropped)."""
        if self.writer is None or self.reader is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        body = json.dumps(payload).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        try:
            async with asyncio.timeout(TIMEOUT_SECONDS):
                self.writer.write(head.encode() + body)
                header = await self.reader.readuntil(b"\r\n\r\n")
                status = int(header.split(b" ", 2)[1])
                match = re.search(rb"(?im)^content-length:\s*(\d+)", header)
                if match is None:
                    raise ConnectionError("response without Content-Length")
                await self.reader.readexactly(int(match.group(1)))
            if re.search(rb"(?im)^connection:\s*close", header):
                await self.close()
            return status
        except LOAD_ERRORS:
            await self.close()
            raise

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None


class Phase:
    """Requests at one concurrency: latencies, errors, time, CPU, batch sizes."""

    def __init__(self, texts: list[str], concurrency: int, server_pid: int) -> None:
        self.texts, self.concurrency = texts, concurrency
        self.server_pid = server_pid
        self.latencies: list[float] = []
        self.errors: dict[str, int] = {}
        self.seconds = self.cpu_server = self.cpu_client = 0.0
        self.batch_sum = self.batch_count = 0.0
        self.sent = 0
        self.tag = uuid.uuid4().hex[:8]

    async def post(self, conn: Connection) -> None:
        i = self.sent
        self.sent += 1
        # A new user every request, also across phases: a user seen before may have a ticket
        # open, and then an agent, not the engine, answers.
        user = f"{self.tag}-c{self.concurrency}-u{i}"
        body = {"text": self.texts[i % len(self.texts)], "user_id": user}
        start = time.perf_counter()
        try:
            status = str(await conn.post("/v1/messages", body))
        except LOAD_ERRORS as exc:
            status = type(exc).__name__
        self.latencies.append((time.perf_counter() - start) * 1000)
        if status != "200":
            self.errors[status] = self.errors.get(status, 0) + 1

    async def run(
        self,
        client: httpx.AsyncClient,
        conns: list[Connection],
        requests: int,
        between: Any = None,
    ) -> None:
        """``requests`` more requests, one connection per concurrent client; ``between``
        (sync) runs before each one at c=1."""
        before = await batch_stats(client)
        cpu_c, cpu_s = cpu_seconds(), cpu_seconds(self.server_pid)
        goal = self.sent + requests
        if between is not None:
            for _ in range(requests):
                between(self.texts[self.sent % len(self.texts)])
                start = time.perf_counter()
                await self.post(conns[0])
                self.seconds += time.perf_counter() - start
        else:

            async def worker(conn: Connection) -> None:
                while self.sent < goal:
                    await self.post(conn)

            start = time.perf_counter()
            await asyncio.gather(*(worker(conn) for conn in conns[: self.concurrency]))
            self.seconds += time.perf_counter() - start
        self.cpu_client += cpu_seconds() - cpu_c
        self.cpu_server += cpu_seconds(self.server_pid) - cpu_s
        after = await batch_stats(client)
        self.batch_sum += after[0] - before[0]
        self.batch_count += after[1] - before[1]

    def report(self) -> dict[str, Any]:
        n = len(self.latencies)
        return {
            "concurrency": self.concurrency,
            "requests": n,
            "seconds": round(self.seconds, 2),
            "throughput_per_second": round(n / self.seconds, 2),
            "latency_ms": {q: pct(self.latencies, float(q[1:])) for q in ("p50", "p95", "p99")},
            "errors": self.errors,
            "mean_batch_size": round(self.batch_sum / self.batch_count, 2)
            if self.batch_count
            else None,
            "cpu_ms_per_request": {
                "server": round(self.cpu_server / n * 1000, 2),
                "load_client": round(self.cpu_client / n * 1000, 2),
            },
        }


async def batch_stats(client: httpx.AsyncClient) -> tuple[float, float]:
    """(sum, count) of the server's autoreply_batch_size histogram."""
    text = (await client.get("/metrics")).text
    total = re.search(r"^autoreply_batch_size_sum ([0-9.e+]+)$", text, re.M)
    count = re.search(r"^autoreply_batch_size_count ([0-9.e+]+)$", text, re.M)
    return (float(total.group(1)) if total else 0.0, float(count.group(1)) if count else 0.0)


async def phase(
    base: str, raw: Raw, c: int, *, requests: int, rounds: int, server_pid: int
) -> dict[str, Any]:
    """One concurrency level, interleaved with the raw encoder."""
    url = httpx.URL(base)
    conns = [Connection(url.host, url.port or 80) for _ in range(c)]
    texts = raw.texts
    load = Phase(texts, c, server_pid)
    async with httpx.AsyncClient(base_url=base, timeout=TIMEOUT_SECONDS) as client:
        try:
            if c == 1:
                singles: list[float] = []

                def between(text: str) -> None:
                    singles.append(raw.single_ms(text))

                await load.run(client, conns, requests, between=between)
                result = load.report()
                result["raw_single_encode_ms"] = {
                    "p50": pct(singles, 50),
                    "mean": round(statistics.fmean(singles), 2),
                }
                return result
            raw_seconds = 0.0
            raw_cpu = 0.0
            share = -(-requests // rounds)
            for r in range(rounds):
                cpu = cpu_seconds()
                raw_seconds += raw.batched(r * RAW_PER_ROUND)
                raw_cpu += cpu_seconds() - cpu
                await load.run(client, conns, min(share, requests - load.sent))
        finally:
            for conn in conns:
                await conn.close()
    result = load.report()
    encoded = rounds * RAW_PER_ROUND
    result["raw_batched32"] = {
        "per_second": round(encoded / raw_seconds, 2),
        "cpu_ms_per_question": round(raw_cpu / encoded * 1000, 2),
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per concurrency")
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated levels")
    parser.add_argument("--rounds", type=int, default=5, help="raw/service rounds per level")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--server-encoder",
        default="e5",
        help="the service's encoder (e.g. 'hashing' to measure everything but the model)",
    )
    args = parser.parse_args()
    texts = questions()
    levels = [int(c) for c in args.concurrency.split(",")]
    raw = Raw(texts)
    runs = []
    with tempfile.TemporaryDirectory(prefix="autoreply-bench-") as tmp:
        port = free_port()
        server = start_server(port, Path(tmp), args.server_encoder)
        try:
            base = f"http://127.0.0.1:{port}"
            for c in levels:
                asyncio.run(phase(base, raw, c, requests=20, rounds=1, server_pid=server.pid))
                print(f"{args.requests} requests at concurrency {c} ...", flush=True)
                load_before = os.getloadavg()[0]
                result = asyncio.run(
                    phase(
                        base,
                        raw,
                        c,
                        requests=args.requests,
                        rounds=args.rounds,
                        server_pid=server.pid,
                    )
                )
                result["load_average"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
                print(json.dumps(result), flush=True)
                runs.append(result)
        finally:
            server.terminate()
            server.wait(30)

    by_level = {r["concurrency"]: r for r in runs}
    ratios: dict[str, Any] = {}
    if 32 in by_level:
        run32 = by_level[32]
        raw32 = run32["raw_batched32"]
        ratios["c32_throughput_vs_raw_batched32"] = round(
            run32["throughput_per_second"] / raw32["per_second"], 3
        )
        ratios["c32_goal_met"] = ratios["c32_throughput_vs_raw_batched32"] >= 0.8
        # How much of the server's CPU per request the model itself needs (1.0: the service
        # adds nothing around it). On a small machine CPU, not waiting, is the ceiling.
        ratios["c32_encoder_share_of_server_cpu"] = round(
            raw32["cpu_ms_per_question"] / run32["cpu_ms_per_request"]["server"], 3
        )
    if 1 in by_level:
        run1 = by_level[1]
        ratios["c1_p50_vs_single_encode"] = round(
            run1["latency_ms"]["p50"] / run1["raw_single_encode_ms"]["p50"], 3
        )
        ratios["c1_goal_met"] = ratios["c1_p50_vs_single_encode"] <= 1.5
    report = {
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "questions": len(texts),
        "knowledge": "bundled demo (knowledge/)",
        "encoder": raw.encoder.name,
        "service": runs,
        "ratios": ratios,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(ratios, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
