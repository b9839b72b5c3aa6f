"""DingTalk outgoing robot: timestamp + HMAC sign, synchronous replies, sessionWebhook sends."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from autoreply.channels.base import ChannelError
from autoreply.channels.config import ChannelsConfig, DingTalkConfig
from autoreply.channels.dingtalk import DingTalkChannel
from autoreply.channels.testing import FakePlatform, RecordingHandler, mount

SECRET = "SEC-this-is-the-app-secret"
URL = "/channels/dingtalk/webhook"
API = "https://oapi.dingtalk.test"


@pytest.fixture
def platform() -> FakePlatform:
    fake = FakePlatform()
    fake.route("POST", "/robot/sendBySession", {"errcode": 0, "errmsg": "ok"})
    return fake


@pytest.fixture
def channel(platform: FakePlatform) -> DingTalkChannel:
    config = ChannelsConfig(
        dingtalk=DingTalkConfig(app_secret=SECRET, api_base=API), retries=1, backoff_seconds=0
    )
    return DingTalkChannel(config, platform.client())


@pytest.fixture
def handle() -> RecordingHandler:
    return RecordingHandler("请在订单页申请退款")


@pytest.fixture
def client(channel: DingTalkChannel, handle: RecordingHandler) -> TestClient:
    return TestClient(mount([channel], handle))


def headers(*, at_ms: int | None = None, secret: str = SECRET) -> dict[str, str]:
    """timestamp and sign as DingTalk computes them."""
    ts = str(at_ms if at_ms is not None else int(time.time() * 1000))
    mac = hmac.new(secret.encode(), f"{ts}\n{secret}".encode(), hashlib.sha256).digest()
    return {"timestamp": ts, "sign": base64.b64encode(mac).decode()}


def body(text: str = " 怎么退款", **extra: Any) -> dict[str, Any]:
    return {
        "msgtype": "text",
        "text": {"content": text},
        "msgId": "msgABC123",
        "conversationId": "cidXYZ==",
        "conversationType": "2",
        "senderId": "$:LWCP_v1:$abc",
        "senderStaffId": "manager4",
        "senderNick": "王五",
        "sessionWebhook": f"{API}/robot/sendBySession?session=s1",
        "sessionWebhookExpiredTime": int((time.time() + 5400) * 1000),
        **extra,
    }


def test_signed_message_is_answered_in_the_response(
    client: TestClient, handle: RecordingHandler
) -> None:
    """A valid sign: handled, and the reply is the response body."""
    resp = client.post(URL, json=body(), headers=headers())
    assert resp.status_code == 200
    assert resp.json() == {"msgtype": "text", "text": {"content": "请在订单页申请退款"}}
    (msg,) = handle.messages
    assert (msg.channel, msg.user_id, msg.conversation_id) == (
        "dingtalk",
        "manager4",
        "dingtalk:cidXYZ==",
    )
    assert msg.message_id == "msgABC123" and msg.text == "怎么退款"


@pytest.mark.parametrize(
    "hdrs",
    [{}, headers(secret="wrong"), {"timestamp": "1", "sign": "x"}, {**headers(), "sign": ""}],
)
def test_bad_or_missing_sign_is_401(
    client: TestClient, handle: RecordingHandler, hdrs: dict[str, str]
) -> None:
    """Missing headers or a sign made with another secret: 401, never handled."""
    assert client.post(URL, json=body(), headers=hdrs).status_code == 401
    assert handle.messages == []


def test_replayed_old_timestamp_is_401(client: TestClient, handle: RecordingHandler) -> None:
    """A correctly signed request from two hours ago (window 1 hour): 401."""
    old = int((time.time() - 7200) * 1000)
    assert client.post(URL, json=body(), headers=headers(at_ms=old)).status_code == 401
    assert handle.messages == []


@pytest.mark.parametrize("payload", [b"{{", {"msgtype": "text", "text": "flat"}])
def test_malformed_body_is_400(client: TestClient, payload: Any) -> None:
    kwargs = {"content": payload} if isinstance(payload, bytes) else {"json": payload}
    resp = client.post(URL, headers=headers(), **kwargs)
    assert resp.status_code == 400


def test_other_message_types_get_an_empty_answer(
    client: TestClient, handle: RecordingHandler
) -> None:
    resp = client.post(URL, json=body(msgtype="picture"), headers=headers())
    assert resp.status_code == 200 and resp.json() == {}
    assert handle.messages == []


def test_send_uses_the_remembered_session_webhook(
    client: TestClient, channel: DingTalkChannel, platform: FakePlatform
) -> None:
    """After a customer message, an agent reply goes to that conversation's sessionWebhook."""
    client.post(URL, json=body(), headers=headers())
    asyncio.run(channel.send(conversation_id="dingtalk:cidXYZ==", user_id="manager4", text="hi"))
    (call,) = platform.calls("/robot/sendBySession")
    assert call.url.params["session"] == "s1"
    assert platform.json("/robot/sendBySession") == [{"msgtype": "text", "text": {"content": "hi"}}]


def test_send_without_a_live_session_cannot_deliver(
    client: TestClient, channel: DingTalkChannel, platform: FakePlatform
) -> None:
    """Unknown, expired or foreign-host session webhooks: ChannelError, nothing sent."""
    with pytest.raises(ChannelError, match="sessionWebhook"):
        asyncio.run(channel.send(conversation_id="dingtalk:never", user_id="u", text="x"))
    expired = int((time.time() - 10) * 1000)
    client.post(
        URL,
        json=body(conversationId="c-old", sessionWebhookExpiredTime=expired),
        headers=headers(),
    )
    client.post(
        URL,
        json=body(conversationId="c-evil", sessionWebhook="https://evil.test/robot/sendBySession"),
        headers=headers(),
    )
    for conv in ("dingtalk:c-old", "dingtalk:c-evil"):
        with pytest.raises(ChannelError):
            asyncio.run(channel.send(conversation_id=conv, user_id="u", text="x"))
    assert platform.requests == []
