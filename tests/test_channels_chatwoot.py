"""Chatwoot agent bot: the URL token, message_created in, replies out, handoff and resolution."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from autoreply.channels.base import ChannelError
from autoreply.channels.chatwoot import ChatwootChannel, render_handoff
from autoreply.channels.config import ChannelsConfig, ChatwootConfig
from autoreply.channels.testing import FakePlatform, RecordingHandler, mount
from autoreply.models import Priority, Reason, Ticket, TicketStatus

TOKEN = "hook-token-9"
URL = "/channels/chatwoot/webhook"
CONV = "/api/v1/accounts/1/conversations/5"


@pytest.fixture
def platform() -> FakePlatform:
    fake = FakePlatform()
    fake.route("POST", f"{CONV}/messages", {"id": 99})
    fake.route("POST", f"{CONV}/toggle_status", {"payload": {"success": True}})
    return fake


@pytest.fixture
def channel(platform: FakePlatform) -> ChatwootChannel:
    config = ChannelsConfig(
        chatwoot=ChatwootConfig(
            base_url="https://chat.test/", api_token="bot-api-token", webhook_token=TOKEN
        ),
        retries=1,
        backoff_seconds=0,
    )
    return ChatwootChannel(config, platform.client())


@pytest.fixture
def handle() -> RecordingHandler:
    return RecordingHandler("You can ask for a refund on the order page.")


@pytest.fixture
def client(channel: ChatwootChannel, handle: RecordingHandler) -> TestClient:
    return TestClient(mount([channel], handle))


def created(content: str = "refund please", **extra: Any) -> dict[str, Any]:
    return {
        "event": "message_created",
        "id": 321,
        "content": content,
        "message_type": "incoming",
        "private": False,
        "sender": {"id": 77, "name": "Ada", "type": "contact"},
        "conversation": {"id": 5, "status": "pending", "inbox_id": 3},
        "account": {"id": 1, "name": "Shop"},
        **extra,
    }


def test_contact_message_is_handled_and_answered(
    client: TestClient, handle: RecordingHandler, platform: FakePlatform
) -> None:
    """A contact's message in a pending conversation is answered through the API."""
    assert client.post(f"{URL}?token={TOKEN}", json=created()).status_code == 200
    (msg,) = handle.messages
    assert (msg.channel, msg.user_id, msg.conversation_id) == ("chatwoot", "77", "chatwoot:1:5")
    assert msg.message_id == "321" and msg.metadata["name"] == "Ada"
    (call,) = platform.calls(f"{CONV}/messages")
    assert call.headers["api_access_token"] == "bot-api-token"
    assert platform.json(f"{CONV}/messages") == [
        {
            "message_type": "outgoing",
            "private": False,
            "content": "You can ask for a refund on the order page.",
        }
    ]


@pytest.mark.parametrize("query", ["", "?token=", "?token=wrong", f"?token={TOKEN}x"])
def test_wrong_or_missing_token_is_401(
    client: TestClient, handle: RecordingHandler, query: str
) -> None:
    assert client.post(f"{URL}{query}", json=created()).status_code == 401
    assert handle.messages == []


@pytest.mark.parametrize(
    "extra",
    [
        {"message_type": "outgoing"},
        {"message_type": "activity"},
        {"private": True},
        {"sender": {"id": 2, "type": "user"}},
        {"content": None},
        {"conversation": {"id": 5, "status": "open"}},
    ],
)
def test_non_contact_or_human_handled_messages_are_ignored(
    client: TestClient, handle: RecordingHandler, extra: dict[str, Any]
) -> None:
    """Outgoing, activity, private, agent-sent or empty messages, and open conversations."""
    assert client.post(f"{URL}?token={TOKEN}", json=created(**extra)).status_code == 200
    assert handle.messages == []


@pytest.mark.parametrize(
    "payload",
    [
        {"event": "conversation_status_changed", "id": 5, "status": "resolved"},
        {"event": "conversation_resolved", "id": 5},
        {"event": "webwidget_triggered"},
    ],
)
def test_status_and_unknown_events_are_accepted(
    client: TestClient, handle: RecordingHandler, platform: FakePlatform, payload: dict
) -> None:
    """Resolution hands the conversation back to the bot: accepted, nothing else to do."""
    assert client.post(f"{URL}?token={TOKEN}", json=payload).status_code == 200
    assert handle.messages == [] and platform.requests == []


@pytest.mark.parametrize(
    "payload",
    [b"nope", b"[]", {"event": "message_created", "message_type": "incoming", "content": "x"}],
)
def test_malformed_body_is_400(client: TestClient, payload: Any) -> None:
    """Not JSON, not an object, or a message without conversation and account: 400."""
    kwargs = {"content": payload} if isinstance(payload, bytes) else {"json": payload}
    assert client.post(f"{URL}?token={TOKEN}", **kwargs).status_code == 400


def ticket() -> Ticket:
    return Ticket(
        id=12,
        conversation_id="chatwoot:1:5",
        user_id="77",
        channel="chatwoot",
        status=TicketStatus.OPEN,
        priority=Priority.HIGH,
        reason=Reason.LOW_CONFIDENCE,
        vip=True,
        suggested_owner="alice",
        created_at=datetime(2024, 6, 10, tzinfo=UTC),
        context={
            "question": "my refund never arrived",
            "reason": "low_confidence",
            "priority": "high",
            "vip": True,
            "messages": [{"id": 1, "text": "my refund never arrived", "at": "2024-06-10"}],
            "attempts": [],
            "candidates": [
                {
                    "entry_id": "refund",
                    "question": "How do I get a refund?",
                    "category": "billing",
                    "confidence": 0.31,
                    "similarity": 0.58,
                },
                {
                    "entry_id": "shipping",
                    "question": "Where is my parcel?",
                    "category": "orders",
                    "confidence": 0.12,
                    "similarity": 0.41,
                },
            ],
        },
    )


def test_handoff_opens_the_conversation_and_posts_a_private_note(
    channel: ChatwootChannel, platform: FakePlatform
) -> None:
    """handoff: status open first, then a private note with reason, priority, VIP and scores."""
    asyncio.run(channel.handoff(ticket()))
    assert [r.url.path for r in platform.requests] == [
        f"{CONV}/toggle_status",
        f"{CONV}/messages",
    ]
    assert platform.json(f"{CONV}/toggle_status") == [{"status": "open"}]
    (note,) = platform.json(f"{CONV}/messages")
    assert note["private"] is True
    text = note["content"]
    for expected in (
        "low_confidence",
        "high",
        "VIP: yes",
        "alice",
        "my refund never arrived",
        "refund",
        "confidence 0.31",
        "similarity 0.58",
        "confidence 0.12",
    ):
        assert expected in text


def test_render_handoff_survives_a_sparse_payload() -> None:
    """A ticket with an empty context still renders from the ticket's own fields."""
    bare = ticket().model_copy(update={"context": {}})
    text = render_handoff(bare)
    assert "Reason: low_confidence" in text and "candidates: none" in text


def test_resolved_sets_chatwoot_resolved(channel: ChatwootChannel, platform: FakePlatform) -> None:
    asyncio.run(channel.resolved(ticket()))
    assert platform.json(f"{CONV}/toggle_status") == [{"status": "resolved"}]


def test_send_posts_an_agent_reply_and_checks_the_address(
    channel: ChatwootChannel, platform: FakePlatform
) -> None:
    asyncio.run(channel.send(conversation_id="chatwoot:1:5", user_id="77", text="agent"))
    assert platform.json(f"{CONV}/messages")[0]["content"] == "agent"
    with pytest.raises(ChannelError, match="chatwoot"):
        asyncio.run(channel.send(conversation_id="chatwoot:5", user_id="77", text="x"))
