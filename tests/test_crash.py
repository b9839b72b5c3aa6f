"""Crash safety: a real uvicorn process is killed with SIGKILL while eight clients send
messages that open tickets and log gaps, then restarted on the same database (an SQLite file
in WAL mode, or PostgreSQL). Every acknowledged (200) reply is in the store with its customer
message, ticket and gap; nothing stored is half an exchange (a ticket or gap without the
customer message behind it, a bot reply without its question); and every message the clients
did not get an answer for can be sent again and is answered once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import wait_ready, write_small_faq
from test_server import HUMAN

from autoreply.models import Role
from autoreply.store import Store, open_store

SERVE = """
import sys, uvicorn
from autoreply.app import create_app
app = create_app(knowledge_poll_seconds=None)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""
CRASHING = (
    """
import os, signal, sys
from autoreply.service import AutoReply

opening = AutoReply._open_ticket

def crash_around_open_ticket(self, msg, *args, **kwargs):
    # SIGKILL itself at the worst moment of one exchange: the customer message (and gap)
    # are committed; the ticket is (after) or is not (before) yet; the bot reply is not.
    if msg.text.startswith("crash here"):
        if sys.argv[2] == "after":
            opening(self, msg, *args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)
    return opening(self, msg, *args, **kwargs)

AutoReply._open_ticket = crash_around_open_ticket
"""
    + SERVE
)
THREADS = 8
KILL_AFTER_ACKS = 80
"""The process is killed once this many replies were acknowledged (mid-stream: the clients
keep sending until the connection drops)."""
TEXTS = [
    ("answer", "如何退款"),
    ("ticket", HUMAN),
    ("gap", "when does the rocket launch"),  # low confidence: a gap and a ticket
]


@dataclass
class Sent:
    """One message a client sent, and the reply if it was acknowledged."""

    body: dict[str, Any]
    reply: dict[str, Any] | None = None
    status: int | None = None
    """The HTTP status, when a response came back at all."""


@dataclass
class Service:
    """The service as a subprocess on one database, restartable."""

    db: str
    root: Path
    proc: subprocess.Popen[bytes] | None = None
    url: str = ""
    starts: int = 0
    logs: list[Path] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "AUTOREPLY_DB": self.db,
            "AUTOREPLY_ENCODER": "hashing",
            "AUTOREPLY_KNOWLEDGE": str(self.root / "knowledge"),
            "AUTOREPLY_CACHE_DIR": str(self.root / "cache"),
            "AUTOREPLY_HOURS__WEEKLY": "{}",
            "AUTOREPLY_SERVER__RATE_PER_USER": "1000",
            "AUTOREPLY_SERVER__BURST_PER_USER": "1000",
            "AUTOREPLY_SERVER__RATE_PER_IP": "100000",
            "AUTOREPLY_SERVER__BURST_PER_IP": "100000",
        }

    def start(self, script: str = SERVE, *args: str) -> None:
        import pg

        port = pg.free_port()
        self.starts += 1
        log = self.root / f"service{self.starts}.log"
        self.logs.append(log)
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", script, str(port), *args],
                env=self.env(),
                stdout=out,
                stderr=out,
            )
        self.url = f"http://127.0.0.1:{port}"
        wait_ready(self.url, self.proc, log)

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        assert self.proc.wait(10) == -signal.SIGKILL

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def tail(self) -> str:
        return self.logs[-1].read_text(errors="replace")[-3000:] if self.logs else ""


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Service]:
    if request.param == "sqlite":
        db = f"sqlite:///{tmp_path / 'crash.db'}"
    else:
        db = request.getfixturevalue("pg_url")
    write_small_faq(tmp_path / "knowledge")
    svc = Service(db=db, root=tmp_path)
    try:
        yield svc
    finally:
        svc.stop()


def storm(url: str, *, acked: threading.Semaphore) -> list[Sent]:
    """Eight clients sending until the connection drops; every message they sent."""
    sent: list[list[Sent]] = [[] for _ in range(THREADS)]

    def client(worker: int) -> None:
        with httpx.Client(base_url=url, timeout=10) as http:
            n = 0
            while True:
                kind, text = TEXTS[n % len(TEXTS)]
                body = {
                    "text": text,
                    "user_id": f"w{worker}-{n}",
                    "message_id": f"crash-{worker}-{n}-{kind}",
                }
                item = Sent(body)
                sent[worker].append(item)
                n += 1
                try:
                    response = http.post("/v1/messages", json=body)
                except httpx.TransportError:
                    return  # the service is gone
                item.status = response.status_code
                if response.status_code != 200:
                    return  # reported by the test
                item.reply = response.json()
                acked.release()

    threads = [threading.Thread(target=client, args=(w,), daemon=True) for w in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads), "a client did not notice the crash"
    everything = [item for items in sent for item in items]
    refused = [(i.body, i.status) for i in everything if i.status not in (None, 200)]
    assert not refused, f"the service refused messages before the crash: {refused[:3]}"
    return everything


def check_store(store: Store, sent: list[Sent]) -> dict[str, int]:
    """Every acknowledged reply is stored as acknowledged; nothing is half an exchange: no
    customer message without the bot's reply, no ticket or gap without its message."""
    counts = {"acked": 0, "found": 0, "stored": 0, "tickets": 0, "gaps": 0}
    conversations = {f"api:{s.body['user_id']}" for s in sent}
    for item in sent:
        customer = store.find_message(channel="api", external_id=item.body["message_id"])
        reply = store.reply_to(customer.id) if customer is not None else None
        assert customer is None or reply is not None, f"half-written exchange: {item.body}"
        counts["stored"] += customer is not None
        if item.reply is None:
            continue
        counts["acked"] += 1
        assert customer is not None, f"acknowledged message lost: {item.body}"
        assert customer.text == item.body["text"] and customer.role is Role.CUSTOMER
        assert reply is not None and reply.id == item.reply["message_id"], item.body
        assert reply.text == item.reply["text"]
        assert reply.ticket_id == item.reply["ticket_id"]
        if item.reply["ticket_id"] is not None:
            ticket = store.get_ticket(item.reply["ticket_id"])
            assert ticket.conversation_id == customer.conversation_id
        counts["found"] += 1
    tickets = store.list_tickets(limit=100_000)
    for ticket in tickets:
        assert ticket.conversation_id in conversations
        history = store.history(ticket.conversation_id)
        asked = [m.text for m in history if m.role is Role.CUSTOMER]
        assert ticket.context["question"] in asked, f"ticket {ticket.id} without its message"
        told = [m for m in history if m.role is Role.BOT and m.ticket_id == ticket.id]
        assert told, f"ticket {ticket.id} without the bot's reply that opened it"
    gap_ids = set()
    for gap in store.list_gaps(limit=None):
        gap_ids.add(gap.id)
        history = store.history(gap.conversation_id)
        assert any(m.role is Role.CUSTOMER for m in history), f"gap {gap.id} without a message"
    for item in sent:
        if item.reply is not None and item.reply["gap_id"] is not None:
            assert item.reply["gap_id"] in gap_ids, f"acknowledged gap lost: {item.body}"
    counts["tickets"], counts["gaps"] = len(tickets), len(gap_ids)
    return counts


def test_kill_9_mid_stream_loses_no_acknowledged_message(service: Service) -> None:
    """SIGKILL while eight clients send; restart on the same database: every acknowledged
    reply, ticket and gap is there, nothing is half-written, and every unanswered message,
    sent again, is answered (once)."""
    service.start()
    acked = threading.Semaphore(0)
    result: list[list[Sent]] = []
    clients = threading.Thread(
        target=lambda: result.append(storm(service.url, acked=acked)), daemon=True
    )
    clients.start()
    for _ in range(KILL_AFTER_ACKS):
        assert acked.acquire(timeout=20), f"the service stalled: {service.tail()}"
    service.kill()
    clients.join(40)
    (sent,) = result
    service.start()  # the same database, after the crash

    store = open_store(service.db)
    try:
        counts = check_store(store, sent)
    finally:
        store.close()
    assert counts["acked"] >= KILL_AFTER_ACKS and counts["found"] == counts["acked"]
    assert counts["tickets"] and counts["gaps"]

    # The clients retry what got no answer (as every chat platform does): each is answered.
    unanswered = [item for item in sent if item.reply is None]
    assert unanswered, "the kill landed between requests; every client was waiting"
    with httpx.Client(base_url=service.url, timeout=10) as http:
        for item in unanswered:
            response = http.post("/v1/messages", json=item.body)
            assert response.status_code == 200, (item.body, response.text)
            item.reply = response.json()
    store = open_store(service.db)
    try:
        after = check_store(store, sent)
    finally:
        store.close()
    assert after["found"] == after["stored"] == len(sent)
    print(f"\n{service.db.split(':')[0]}: {counts} then retried {len(unanswered)}: {after}")


@pytest.mark.parametrize("moment", ["before", "after"])
def test_kill_9_inside_one_exchange_then_the_retry_is_answered(
    service: Service, moment: str
) -> None:
    """The process dies after committing a customer message (and its gap) but before the
    ticket (or after the ticket) and the bot reply. After the restart the store holds no
    reply without its message, and the customer's retry of that message is answered once,
    with one ticket for the conversation."""
    service.start(CRASHING, moment)
    body = {"text": "crash here, rocket launch?", "user_id": "victim", "message_id": "m-crash"}
    with pytest.raises(httpx.TransportError):
        httpx.post(f"{service.url}/v1/messages", json=body, timeout=10)
    assert service.proc is not None and service.proc.wait(10) == -signal.SIGKILL
    service.start()
    retry = httpx.post(f"{service.url}/v1/messages", json=body, timeout=10)
    assert retry.status_code == 200, retry.text
    reply = retry.json()
    assert reply["decision"] == "escalate" and reply["ticket_id"] is not None
    again = httpx.post(f"{service.url}/v1/messages", json=body, timeout=10).json()
    assert again["duplicate"] and again["message_id"] == reply["message_id"]
    store = open_store(service.db)
    try:
        sent = [Sent(body, reply)]
        check_store(store, sent)
        history = store.history("api:victim")
        assert [m.role for m in history] == [Role.CUSTOMER, Role.BOT]
        assert [t.id for t in store.list_tickets(limit=100)] == [reply["ticket_id"]]
    finally:
        store.close()
