"""Telegram webhook: the secret-token header, text updates, sendMessage with retries."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from autoreply.channels.base import ChannelError
from autoreply.channels.config import ChannelsConfig, TelegramConfig
from autoreply.channels.telegram import TelegramChannel
from autoreply.channels.testing import FakePlatform, RecordingHandler, mount

SECRET = "s3cr3t-Token_1"
URL = "/channels/telegram/webhook"
SEND = "/bot123:abc/sendMessage"


def config() -> ChannelsConfig:
    return ChannelsConfig(
        telegram=TelegramConfig(
            secret_token=SECRET, bot_token="123:abc", api_base="https://tg.test"
        ),
        retries=2,
        backoff_seconds=0,
    )


@pytest.fixture
def platform() -> FakePlatform:
    fake = FakePlatform()
    fake.route("POST", SEND, {"ok": True, "result": {}})
    return fake


@pytest.fixture
def handle() -> RecordingHandler:
    return RecordingHandler("您好，退款请在订单页申请。")


@pytest.fixture
def client(platform: FakePlatform, handle: RecordingHandler) -> TestClient:
    return TestClient(mount([TelegramChannel(config(), platform.client())], handle))


def update(text: str | None = "怎么退款", update_id: int = 1001, **sender: Any) -> dict:
    message: dict[str, Any] = {
        "message_id": 7,
        "from": {"id": 42, "is_bot": False, "first_name": "Li", "last_name": "Lei", **sender},
        "chat": {"id": 12345, "type": "private"},
        "date": 1718000000,
    }
    if text is not None:
        message["text"] = text
    return {"update_id": update_id, "message": message}


def post(client: TestClient, body: Any, secret: str | None = SECRET) -> Any:
    headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret is not None else {}
    if isinstance(body, bytes):
        return client.post(URL, content=body, headers=headers)
    return client.post(URL, json=body, headers=headers)


def test_text_message_is_handled_and_answered(
    client: TestClient, handle: RecordingHandler, platform: FakePlatform
) -> None:
    """A text update with the right secret is handled and answered via sendMessage."""
    resp = post(client, update())
    assert resp.status_code == 200
    (msg,) = handle.messages
    assert msg.channel == "telegram" and msg.conversation_id == "telegram:12345"
    assert msg.user_id == "42" and msg.message_id == "1001"
    assert msg.text == "怎么退款" and msg.metadata["name"] == "Li Lei"
    assert platform.json(SEND) == [{"chat_id": 12345, "text": "您好，退款请在订单页申请。"}]


@pytest.mark.parametrize("secret", [None, "", "wrong", SECRET + "x"])
def test_wrong_or_missing_secret_is_401(
    client: TestClient, handle: RecordingHandler, platform: FakePlatform, secret: str | None
) -> None:
    """Without the exact secret token: 401, nothing handled, nothing sent."""
    resp = post(client, update(), secret)
    assert resp.status_code == 401
    assert handle.messages == [] and platform.requests == []


def test_redelivered_update_is_answered_once(
    client: TestClient, handle: RecordingHandler, platform: FakePlatform
) -> None:
    """Telegram redelivers an update until it sees 2xx; the same update_id counts once."""
    post(client, update())
    post(client, update())
    assert len(handle.messages) == 1 and len(platform.calls(SEND)) == 1


@pytest.mark.parametrize(
    "body",
    [
        update(text=None),  # a sticker or photo
        update(is_bot=True),
        {"update_id": 5, "edited_message": update()["message"]},
        {"update_id": 6, "my_chat_member": {}},
    ],
)
def test_other_updates_are_ignored(
    client: TestClient, handle: RecordingHandler, body: dict
) -> None:
    """Non-text messages, bots, edits and membership updates get 200 and are not handled."""
    assert post(client, body).status_code == 200
    assert handle.messages == []


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        {"message": {"text": "x"}},
        {"update_id": 1, "message": {"text": "x"}},
    ],
)
def test_malformed_update_is_400(client: TestClient, body: Any) -> None:
    """Bad JSON, no update_id, or a message without a chat: 400 with a reason."""
    resp = post(client, body)
    assert resp.status_code == 400
    assert resp.json()["detail"]


def test_send_retries_5xx_and_not_4xx() -> None:
    """An agent's reply is retried on 502 and delivered; a 403 (bot blocked) is not retried."""
    platform = FakePlatform()
    platform.route("POST", SEND, 502, {"ok": True})
    tg = TelegramChannel(config(), platform.client())
    asyncio.run(tg.send(conversation_id="telegram:12345", user_id="42", text="agent here"))
    assert len(platform.calls(SEND)) == 2
    assert json.loads(platform.calls(SEND)[-1].content)["text"] == "agent here"

    blocked = FakePlatform()
    blocked.route("POST", SEND, 403)
    tg = TelegramChannel(config(), blocked.client())
    with pytest.raises(ChannelError, match="HTTP 403") as err:
        asyncio.run(tg.send(conversation_id="telegram:12345", user_id="42", text="x"))
    assert len(blocked.calls(SEND)) == 1
    assert "123:abc" not in str(err.value)  # the bot token never leaks into errors
