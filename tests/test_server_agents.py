"""The agent API: bearer tokens, the queue, ownership (403) and conflicts (409), the
prohibited-phrase check, delivery of agent replies through the conversation's channel, and
one ticket worked end to end."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from test_server import (
    HUMAN,
    agent,
    arrive,
    error,
    escalate,
    module_settings,
    send,
    served,
    state,
    token_for,
)

from autoreply.channels.config import ChannelsConfig, TelegramConfig
from autoreply.errors import AutoreplyError
from autoreply.models import Message, Ticket
from autoreply.settings import Settings
from autoreply.store import AgentRole


class FakeChannel:
    """Records what the app asks a channel to do; ``fail`` makes sends raise."""

    name = "fake"

    def __init__(self) -> None:
        self.sent: list[dict[str, str]] = []
        self.handoffs: list[Ticket] = []
        self.resolutions: list[Ticket] = []
        self.fail = False

    async def send(self, *, conversation_id: str, user_id: str, text: str) -> None:
        if self.fail:
            raise AutoreplyError("fake: the platform said no (HTTP 500)")
        self.sent.append({"conversation_id": conversation_id, "user_id": user_id, "text": text})

    async def handoff(self, ticket: Ticket) -> None:
        self.handoffs.append(ticket)

    async def resolved(self, ticket: Ticket) -> None:
        self.resolutions.append(ticket)


def eventually(check: Any, timeout: float = 5.0) -> None:
    """Wait for a background task of the app (its loop runs in TestClient's thread)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out waiting for a background task"
        time.sleep(0.01)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, FakeChannel]]:
    with served(module_settings(tmp_path_factory)) as client:
        fake = FakeChannel()
        state(client).channels.channels["fake"] = fake  # type: ignore[assignment]
        yield client, fake


@pytest.fixture(scope="module")
def client(shop: tuple[TestClient, FakeChannel]) -> TestClient:
    return shop[0]


@pytest.fixture(scope="module")
def alice(client: TestClient) -> dict[str, str]:
    return agent(client, "alice")


@pytest.fixture(scope="module")
def bob(client: TestClient) -> dict[str, str]:
    return agent(client, "bob")


@pytest.fixture(scope="module")
def admin(client: TestClient) -> dict[str, str]:
    return agent(client, "root", AgentRole.ADMIN)


def test_agent_works_a_ticket_end_to_end(
    client: TestClient, alice: dict[str, str], admin: dict[str, str]
) -> None:
    """Customer escalates → agent claims → replies → the customer's conversation shows the
    reply → agent resolves → promotes → the admin accepts the FAQ candidate."""
    answered = send(client, "如何退款", user_id="e2e")
    ticket_id = escalate(client, user="e2e")

    queue = client.get("/v1/tickets", headers=alice).json()
    mine = next(t for t in queue if t["id"] == ticket_id)
    assert mine["status"] == "open" and mine["context"]["reason"] == "asked_for_human"

    claimed = client.post(f"/v1/tickets/{ticket_id}/claim", headers=alice).json()
    assert claimed["owner"] == "alice" and claimed["status"] == "claimed"

    detail = client.get(f"/v1/tickets/{ticket_id}", headers=alice).json()
    handoff = detail["ticket"]["context"]
    assert handoff["question"] == HUMAN
    assert [m["text"] for m in handoff["messages"]] == ["如何退款", HUMAN]
    assert handoff["attempts"][0]["entry_id"] == answered["entry_id"] == "refund"
    assert handoff["priority"] == "normal" and handoff["user_id"] == "e2e"
    assert [m["role"] for m in detail["conversation"]] == ["customer", "bot"] * 2

    answer = "Yes: gift cards are on the Gifts page."
    response = client.post(f"/v1/tickets/{ticket_id}/reply", headers=alice, json={"text": answer})
    assert response.status_code == 201
    assert response.json()["message"]["role"] == "agent"
    assert response.json()["delivery"]["status"] == "poll"  # generic, no callback URL

    # the customer's widget polls with the token its first reply carried
    polled = client.get("/v1/conversations/api:e2e", headers=token_for(client, "api:e2e"))
    conversation = polled.json()["messages"]
    assert conversation[-1]["role"] == "agent" and conversation[-1]["text"] == answer
    assert conversation[-1]["agent"] == "alice"

    resolved = client.post(f"/v1/tickets/{ticket_id}/resolve", headers=alice).json()
    assert resolved["status"] == "resolved" and resolved["resolution"] == answer

    question = {"question": "Do you sell gift cards?", "category": "gifts"}
    promoted = client.post(f"/v1/tickets/{ticket_id}/promote", headers=alice, json=question)
    assert promoted.status_code == 201
    candidate = promoted.json()
    assert candidate["question"] == "Do you sell gift cards?"
    assert candidate["answer"] == answer and candidate["category"] == "gifts"

    pending = client.get("/v1/admin/candidates", headers=admin).json()
    assert candidate["id"] in [c["id"] for c in pending]
    accepted = client.post(f"/v1/admin/candidates/{candidate['id']}/accept", headers=admin)
    assert accepted.json()["status"] == "accepted"


def test_bad_tokens_are_401(client: TestClient) -> None:
    """Missing, unknown, expired and disabled tokens: 401 saying which, with WWW-Authenticate."""
    missing = client.get("/v1/tickets")
    assert "missing bearer token" in error(missing, 401, "unauthorized")["message"]
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    wrong = client.get("/v1/tickets", headers={"Authorization": "Bearer ar_nope"})
    assert "unknown token" in error(wrong, 401, "unauthorized")["message"]
    basic = client.get("/v1/tickets", headers={"Authorization": "Basic YTpi"})
    error(basic, 401, "unauthorized")
    old = agent(client, "old", expires_at=datetime.now(UTC) - timedelta(minutes=1))
    expired = error(client.get("/v1/tickets", headers=old), 401, "unauthorized")
    assert "expired" in expired["message"]
    gone = agent(client, "gone")
    state(client).bot.store.disable_agent("gone")
    message = error(client.get("/v1/tickets", headers=gone), 401, "unauthorized")["message"]
    assert "agent 'gone' is disabled" in message


def test_agent_token_on_admin_route_is_403(client: TestClient, alice: dict[str, str]) -> None:
    """Admin routes need an admin: an agent token gets 403 naming its role."""
    body = error(client.get("/v1/admin/stats", headers=alice), 403, "forbidden")
    assert "role 'agent'" in body["message"]
    error(client.post("/v1/admin/reload", headers=alice), 403, "forbidden")


def test_ownership_is_enforced(
    client: TestClient, alice: dict[str, str], bob: dict[str, str]
) -> None:
    """Another agent's ticket: claim is 409, reply/resolve/transfer are 403 naming the owner;
    after a transfer the roles swap; a resolved ticket is 409 for everyone."""
    ticket_id = escalate(client, user="owned")
    client.post(f"/v1/tickets/{ticket_id}/claim", headers=alice)
    assert client.post(f"/v1/tickets/{ticket_id}/claim", headers=alice).status_code == 200
    assert (
        "owned by alice"
        in error(client.post(f"/v1/tickets/{ticket_id}/claim", headers=bob), 409, "conflict")[
            "message"
        ]
    )
    reply = client.post(f"/v1/tickets/{ticket_id}/reply", headers=bob, json={"text": "hi"})
    assert "owned by alice" in error(reply, 403, "not_owner")["message"]
    error(client.post(f"/v1/tickets/{ticket_id}/resolve", headers=bob), 403, "not_owner")
    to_bob = {"to": "bob"}
    by_bob = client.post(f"/v1/tickets/{ticket_id}/transfer", headers=bob, json=to_bob)
    error(by_bob, 403, "not_owner")
    moved = client.post(f"/v1/tickets/{ticket_id}/transfer", headers=alice, json=to_bob)
    assert moved.json()["owner"] == "bob"
    reply = client.post(f"/v1/tickets/{ticket_id}/reply", headers=alice, json={"text": "hi"})
    error(reply, 403, "not_owner")
    error(client.post(f"/v1/tickets/{ticket_id}/promote", headers=bob), 409, "conflict")
    client.post(f"/v1/tickets/{ticket_id}/resolve", headers=bob, json={"resolution": "done"})
    error(client.post(f"/v1/tickets/{ticket_id}/claim", headers=alice), 409, "conflict")
    error(client.post(f"/v1/tickets/{ticket_id}/promote", headers=alice), 403, "not_owner")


def test_unknown_things_are_404(client: TestClient, alice: dict[str, str]) -> None:
    """Unknown tickets and transfer targets are 404; a disabled target is 409."""
    error(client.get("/v1/tickets/9999", headers=alice), 404, "not_found")
    error(client.post("/v1/tickets/9999/claim", headers=alice), 404, "not_found")
    ticket_id = escalate(client, user="nobody-home")
    client.post(f"/v1/tickets/{ticket_id}/claim", headers=alice)
    to = client.post(f"/v1/tickets/{ticket_id}/transfer", headers=alice, json={"to": "zed"})
    assert "known: " in error(to, 404, "not_found")["message"]
    agent(client, "away")
    state(client).bot.store.disable_agent("away")
    to = client.post(f"/v1/tickets/{ticket_id}/transfer", headers=alice, json={"to": "away"})
    error(to, 409, "conflict")
    bad = client.post(f"/v1/tickets/{ticket_id}/reply", headers=alice, json={"text": ""})
    error(bad, 422, "invalid")


@pytest.mark.parametrize("phrase", ["stupid", "保证退全款"])
def test_prohibited_phrases_are_refused_recorded_and_counted(
    client: TestClient, alice: dict[str, str], admin: dict[str, str], phrase: str
) -> None:
    """A reply with a prohibited phrase: 422 naming it, not stored, interception kept."""
    ticket_id = escalate(client, user=f"rude-{phrase}")
    before = len(client.get(f"/v1/tickets/{ticket_id}", headers=alice).json()["conversation"])
    response = client.post(
        f"/v1/tickets/{ticket_id}/reply", headers=alice, json={"text": f"This is {phrase}!"}
    )
    body = error(response, 422, "prohibited_phrase")
    assert body["phrase"] == phrase and f"'{phrase}'" in body["message"]
    after = client.get(f"/v1/tickets/{ticket_id}", headers=alice).json()["conversation"]
    assert len(after) == before
    listed = client.get("/v1/admin/interceptions", headers=admin, params={"agent": "alice"})
    assert any(i["ticket_id"] == ticket_id and i["phrase"] == phrase for i in listed.json())
    stats = client.get("/v1/admin/stats", headers=admin).json()
    assert stats["interceptions_by_phrase"][phrase] >= 1
    assert f'autoreply_interceptions_total{{phrase="{phrase}"}}' in client.get("/metrics").text


def test_queue_filters(client: TestClient, alice: dict[str, str], bob: dict[str, str]) -> None:
    """status, priority, category and mine narrow the queue; urgent tickets come first."""
    calm = escalate(client, user="filter-calm")
    angry = send(client, "THIS IS UNACCEPTABLE!!!", user_id="filter-angry")["ticket_id"]
    legal = send(client, "I want to take legal action", user_id="filter-legal")["ticket_id"]
    client.post(f"/v1/tickets/{calm}/claim", headers=bob)

    def ids(headers: dict[str, str], **params: Any) -> list[int]:
        response = client.get("/v1/tickets", headers=headers, params=params)
        assert response.status_code == 200, response.text
        return [t["id"] for t in response.json()]

    everything = ids(alice)
    assert {calm, angry, legal} <= set(everything)
    assert everything.index(angry) < everything.index(calm)
    assert angry in ids(alice, priority="high") and calm not in ids(alice, priority="high")
    assert legal in ids(alice, category="legal") and calm not in ids(alice, category="legal")
    assert calm in ids(bob, mine=True) and calm not in ids(alice, mine=True)
    assert calm in ids(alice, status="claimed") and calm not in ids(alice, status="open")
    assert calm not in ids(alice, status="resolved") and calm in ids(alice, status="all")
    error(client.get("/v1/tickets", headers=alice, params={"status": "lost"}), 422, "invalid")


def test_earlier_tickets_are_in_the_detail(client: TestClient, alice: dict[str, str]) -> None:
    """The ticket view lists the same customer's earlier tickets, newest first."""
    first = escalate(client, user="regular")
    client.post(f"/v1/tickets/{first}/claim", headers=alice)
    client.post(f"/v1/tickets/{first}/resolve", headers=alice, json={"resolution": "ok"})
    second = escalate(client, user="regular")
    detail = client.get(f"/v1/tickets/{second}", headers=alice).json()
    assert [t["id"] for t in detail["earlier_tickets"]] == [first]


def test_replies_go_out_through_the_conversations_channel(
    shop: tuple[TestClient, FakeChannel], alice: dict[str, str]
) -> None:
    """A channel conversation: handoff on escalation, the reply sent through the channel
    (or recorded as failed, still stored), resolution notified."""
    client, fake = shop
    ticket_id = arrive(
        client, Message(text=HUMAN, user_id="chat-1", channel="fake", conversation_id="fake:room-1")
    ).ticket_id
    assert ticket_id is not None
    eventually(lambda: any(t.id == ticket_id for t in fake.handoffs))
    sent = client.post(f"/v1/tickets/{ticket_id}/reply", headers=alice, json={"text": "Hello!"})
    assert sent.json()["delivery"]["status"] == "sent"
    assert fake.sent[-1] == {
        "conversation_id": "fake:room-1",
        "user_id": "chat-1",
        "text": "Hello!",
    }
    fake.fail = True
    try:
        failed = client.post(f"/v1/tickets/{ticket_id}/reply", headers=alice, json={"text": "Hi?"})
    finally:
        fake.fail = False
    assert failed.status_code == 201
    delivery = failed.json()["delivery"]
    assert delivery["status"] == "failed" and "HTTP 500" in delivery["error"]
    detail = client.get(f"/v1/tickets/{ticket_id}", headers=alice).json()
    assert [d["status"] for d in detail["deliveries"]] == ["failed", "sent"]
    assert detail["conversation"][-1]["text"] == "Hi?"
    client.post(f"/v1/tickets/{ticket_id}/resolve", headers=alice)
    eventually(lambda: any(t.id == ticket_id for t in fake.resolutions))


def test_without_channel_adapters_replies_wait_for_polling(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No autoreply.channels.registry: the service runs; replies are kept for polling."""
    monkeypatch.setitem(sys.modules, "autoreply.channels.registry", None)
    with served(settings) as client:
        alice = agent(client, "alice")
        ticket_id = arrive(
            client, Message(text=HUMAN, user_id="u1", channel="slack", conversation_id="slack:T:C")
        ).ticket_id
        reply = client.post(f"/v1/tickets/{ticket_id}/reply", headers=alice, json={"text": "Hi"})
        assert reply.json()["delivery"]["status"] == "poll"
        assert reply.json()["delivery"]["channel"] == "slack"


def test_a_real_channel_is_mounted_and_delivers(settings: Settings) -> None:
    """Telegram enabled: its webhook is mounted under /channels/telegram, a forged secret is
    401, a real update is answered; an agent reply goes out through it (here the platform
    is unreachable, so the delivery is recorded as failed)."""
    channels = ChannelsConfig(
        telegram=TelegramConfig(
            secret_token="s3cret", bot_token="123:abc", api_base="http://127.0.0.1:9"
        ),
        retries=0,
        timeout_seconds=2,
    )
    with served(settings.model_copy(update={"channels": channels})) as client:
        assert "/channels/telegram/webhook" in client.get("/openapi.json").json()["paths"]
        update = {
            "update_id": 1,
            "message": {
                "message_id": 5,
                "text": HUMAN,
                "chat": {"id": 42, "type": "private"},
                "from": {"id": 7, "is_bot": False, "first_name": "Ann"},
            },
        }
        url = "/channels/telegram/webhook"
        forged = client.post(url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "x"})
        assert forged.status_code == 401
        ok = client.post(url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "s3cret"})
        assert ok.status_code == 200
        store = state(client).bot.store
        eventually(lambda: store.active_ticket("telegram:42") is not None)
        ticket = store.active_ticket("telegram:42")
        assert ticket is not None and ticket.channel == "telegram"
        alice = agent(client, "alice")
        reply = client.post(f"/v1/tickets/{ticket.id}/reply", headers=alice, json={"text": "Hi"})
        delivery = reply.json()["delivery"]
        assert delivery["channel"] == "telegram" and delivery["status"] == "failed"


def test_resolving_sends_the_rating_question_through_the_channel(
    shop: tuple[TestClient, FakeChannel], alice: dict[str, str]
) -> None:
    """CSAT asked through the channel: on resolve the customer gets the 1-5 question on
    their own platform, and their "5" there is the ticket's rating."""
    client, fake = shop
    ticket_id = arrive(
        client,
        Message(text=HUMAN, user_id="csat-1", channel="fake", conversation_id="fake:room-csat"),
    ).ticket_id
    assert ticket_id is not None
    client.post(f"/v1/tickets/{ticket_id}/claim", headers=alice)
    client.post(f"/v1/tickets/{ticket_id}/resolve", headers=alice)
    eventually(
        lambda: any(
            s["conversation_id"] == "fake:room-csat" and "1 (poor) to 5 (great)" in s["text"]
            for s in fake.sent
        )
    )
    rated = arrive(
        client,
        Message(text="5", user_id="csat-1", channel="fake", conversation_id="fake:room-csat"),
    )
    assert rated.reason.value == "rated"
    assert state(client).bot.store.ratings_of([ticket_id])[ticket_id].rating == 5
