"""Two replicas of the service: two real uvicorn processes on 127.0.0.1 sharing one PostgreSQL
database (HashingEncoder, loopback only, bounded in time). Customer messages spread over
both (each sent to both at once) are stored exactly once; agents claiming the same tickets
through both get one owner per ticket and 409 for the others; a reload on replica A is
followed by replica B."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from conftest import SMALL_FAQ, wait_ready, write_small_faq
from test_server import HUMAN

from autoreply.store import AgentRole, new_token
from autoreply.store.postgres import PostgresStore

pytestmark = pytest.mark.postgres

SERVE = """
import sys, uvicorn
from autoreply.app import create_app
app = create_app(knowledge_poll_seconds=0.2)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""
AGENTS = ["alice", "bob", "carol", "dave"]
GIFT = {
    "id": "gift-cards",
    "question": "Do you sell gift cards?",
    "variants": ["gift card", "buy a gift voucher"],
    "answer": "Yes, on the Gifts page.",
    "category": "orders/gifts",
}


@dataclass
class Replicas:
    urls: list[str]
    db: str
    knowledge: Path
    tokens: dict[str, str]

    def auth(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"}


def start(port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-c", SERVE, str(port)], env=env, stdout=out, stderr=out
        )


@pytest.fixture(scope="module")
def replicas(pg_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    import pg

    root = tmp_path_factory.mktemp("replicas")
    knowledge = write_small_faq(root / "knowledge")
    name = pg_cluster.new_database()
    db = pg_cluster.url(name)
    tokens = {agent: new_token() for agent in [*AGENTS, "root"]}
    with PostgresStore(db) as store:
        for agent in AGENTS:
            store.add_agent(agent, role=AgentRole.AGENT, token=tokens[agent])
        store.add_agent("root", role=AgentRole.ADMIN, token=tokens["root"])
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []
    urls: list[str] = []
    try:
        for i in range(2):
            env = {
                **os.environ,
                "AUTOREPLY_DB": db,
                "AUTOREPLY_ENCODER": "hashing",
                "AUTOREPLY_KNOWLEDGE": str(knowledge),
                "AUTOREPLY_CACHE_DIR": str(root / f"cache{i}"),
                "AUTOREPLY_HOURS__WEEKLY": "{}",
                "AUTOREPLY_SERVER__RATE_PER_USER": "1000",
                "AUTOREPLY_SERVER__BURST_PER_USER": "1000",
                "AUTOREPLY_SERVER__RATE_PER_IP": "1000",
                "AUTOREPLY_SERVER__BURST_PER_IP": "10000",
            }
            port = pg.free_port()
            log = root / f"replica{i}.log"
            procs.append((start(port, env, log), log))
            urls.append(f"http://127.0.0.1:{port}")
        for url, (proc, log) in zip(urls, procs, strict=True):
            wait_ready(url, proc, log)
        yield Replicas(urls=urls, db=db, knowledge=knowledge, tokens=tokens)
    finally:
        for proc, _ in procs:
            proc.terminate()
        for proc, _ in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        pg_cluster.drop_database(name)


def post(url: str, path: str, **kwargs: Any) -> httpx.Response:
    with httpx.Client(base_url=url, timeout=30) as client:
        return client.post(path, **kwargs)


def test_messages_through_both_replicas_are_stored_exactly_once(replicas: Replicas) -> None:
    """Sixty customer messages in twenty conversations, each sent to both replicas at the same
    moment: every message is stored once with one bot reply, every acknowledgement names that
    reply, and a race lost is 409 (never a second copy, never a 5xx)."""
    messages = [
        {"text": text, "user_id": f"cust{c}", "message_id": f"m-{c}-{n}"}
        for c in range(20)
        for n, text in enumerate(["如何退款", "password reset", HUMAN])
    ]
    tokens: dict[str, str] = {}

    def send(job: tuple[str, dict[str, str]]) -> httpx.Response:
        token = tokens.get(job[1]["user_id"])
        headers = {"X-Conversation-Token": token} if token else {}
        return post(job[0], "/v1/messages", json=job[1], headers=headers)

    # The first message of each conversation, then the rest with the conversation token
    # the first reply returned (as a web widget does); each message to both replicas at once.
    jobs: list[tuple[str, dict[str, str]]] = []
    responses: list[httpx.Response] = []
    for first in (True, False):
        batch = [
            (url, body)
            for body in messages
            if body["message_id"].endswith("-0") == first
            for url in replicas.urls
        ]
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(send, batch))
        for (_, body), response in zip(batch, answers, strict=True):
            if response.status_code == 200 and response.json().get("conversation_token"):
                tokens[body["user_id"]] = response.json()["conversation_token"]
        jobs += batch
        responses += answers
    assert len(tokens) == 20, "every conversation's first reply carries its token"
    acked: dict[str, set[int]] = {}
    for (_, body), response in zip(jobs, responses, strict=True):
        assert response.status_code in (200, 409), response.text
        if response.status_code == 200:
            acked.setdefault(body["message_id"], set()).add(response.json()["message_id"])
    assert set(acked) == {m["message_id"] for m in messages}, "a message got no 200 at all"
    assert all(len(ids) == 1 for ids in acked.values()), "two replies for one message"
    with PostgresStore(replicas.db) as store:
        for body in messages:
            stored = store.find_message(channel="api", external_id=body["message_id"])
            assert stored is not None
            reply = store.reply_to(stored.id)
            assert reply is not None and acked[body["message_id"]] == {reply.id}
        customer = [m for c in range(20) for m in store.history(f"api:cust{c}")]
        assert sum(m.role == "customer" for m in customer) == len(messages)
        assert sum(m.role == "bot" for m in customer) == len(messages)
        assert len(store.list_tickets(limit=1000)) == 20


def test_concurrent_claims_through_both_replicas_have_one_owner(replicas: Replicas) -> None:
    """Four agents (two on each replica) claim each open ticket at once: one 200 per ticket,
    three 409s, and the stored owner is the one who got the 200."""
    open_ids = []
    for i in range(12):
        reply = post(replicas.urls[i % 2], "/v1/messages", json={"text": HUMAN, "user_id": f"q{i}"})
        assert reply.status_code == 200 and reply.json()["decision"] == "escalate", reply.text
        open_ids.append(reply.json()["ticket_id"])
    jobs = [
        (replicas.urls[i % 2], agent, ticket_id)
        for ticket_id in open_ids
        for i, agent in enumerate(AGENTS)
    ]
    with ThreadPoolExecutor(16) as pool:
        responses = list(
            pool.map(
                lambda job: post(
                    job[0], f"/v1/tickets/{job[2]}/claim", headers=replicas.auth(job[1])
                ),
                jobs,
            )
        )
    winners: dict[int, list[str]] = {}
    for (_, agent, ticket_id), response in zip(jobs, responses, strict=True):
        assert response.status_code in (200, 409), response.text
        if response.status_code == 200:
            winners.setdefault(ticket_id, []).append(agent)
        else:
            assert response.json()["error"]["type"] == "conflict"
    assert {t: len(w) for t, w in winners.items()} == dict.fromkeys(open_ids, 1)
    assert sum(r.status_code == 409 for r in responses) == 3 * len(open_ids)
    with PostgresStore(replicas.db) as store:
        for ticket_id, (agent,) in winners.items():
            assert store.get_ticket(ticket_id).owner == agent


def test_reload_on_one_replica_reaches_the_other(replicas: Replicas) -> None:
    """A new FAQ entry, reloaded through replica A's admin API, answers on replica B within
    seconds (B polls the store's knowledge version)."""
    a, b = replicas.urls

    def ask_b(user: str) -> str | None:
        reply = post(b, "/v1/messages", json={"text": "Do you sell gift cards?", "user_id": user})
        assert reply.status_code == 200, reply.text
        entry: str | None = reply.json()["entry_id"]
        return entry

    assert ask_b("gift0") != "gift-cards"
    faq = replicas.knowledge / "faq.yaml"
    faq.write_text(yaml.safe_dump({"entries": [*SMALL_FAQ, GIFT]}, allow_unicode=True))
    reloaded = post(a, "/v1/admin/reload", headers=replicas.auth("root"))
    assert reloaded.status_code == 200, reloaded.text
    deadline = time.monotonic() + 15
    n = 1
    while ask_b(f"gift{n}") != "gift-cards":
        assert time.monotonic() < deadline, "replica B did not follow A's reload in 15s"
        n += 1
        time.sleep(0.1)
