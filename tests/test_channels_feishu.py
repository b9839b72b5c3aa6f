"""Feishu / Lark events: challenge, verification token, encryption and signature, replies."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from fastapi.testclient import TestClient

from autoreply.channels.base import ChannelError
from autoreply.channels.config import ChannelsConfig, FeishuConfig
from autoreply.channels.feishu import FeishuChannel, FeishuCipher
from autoreply.channels.testing import FakePlatform, RecordingHandler, mount

VTOKEN = "v-token-123"
ENCRYPT_KEY = "test key"
URL = "/channels/feishu/events"
TOKEN_PATH = "/auth/v3/tenant_access_token/internal"
REPLY_PATH = "/im/v1/messages/om_abc123/reply"


def config(encrypt_key: str = "") -> ChannelsConfig:
    feishu = FeishuConfig(
        verification_token=VTOKEN,
        encrypt_key=encrypt_key,
        app_id="cli_a1",
        app_secret="app-secret",
        api_base="https://feishu.test/open-apis",
    )
    return ChannelsConfig(feishu=feishu, retries=1, backoff_seconds=0)


@pytest.fixture
def platform() -> FakePlatform:
    fake = FakePlatform()
    fake.route("POST", TOKEN_PATH, {"code": 0, "tenant_access_token": "t-1", "expire": 7200})
    fake.route("POST", "/reply", {"code": 0, "msg": "success"})
    return fake


@pytest.fixture
def handle() -> RecordingHandler:
    return RecordingHandler("请在订单页申请退款")


def client_for(platform: FakePlatform, handle: RecordingHandler, key: str = "") -> TestClient:
    return TestClient(mount([FeishuChannel(config(key), platform.client())], handle))


@pytest.fixture
def client(platform: FakePlatform, handle: RecordingHandler) -> TestClient:
    return client_for(platform, handle)


def receive(
    text: str = "怎么退款",
    *,
    event_id: str = "ev-1",
    token: str = VTOKEN,
    message_id: str = "om_abc123",
) -> dict:
    return {
        "schema": "2.0",
        "header": {
            "event_id": event_id,
            "event_type": "im.message.receive_v1",
            "create_time": "1718000000000",
            "token": token,
            "app_id": "cli_a1",
            "tenant_key": "tk",
        },
        "event": {
            "sender": {"sender_id": {"open_id": "ou_42"}, "sender_type": "user"},
            "message": {
                "message_id": message_id,
                "chat_id": "oc_chat9",
                "chat_type": "p2p",
                "message_type": "text",
                "content": json.dumps({"text": text}),
            },
        },
    }


def reference_encrypt(plain: str, key: str = ENCRYPT_KEY) -> str:
    """Feishu's documented scheme: sha256(key), random IV prepended, PKCS#7."""
    aes_key = hashlib.sha256(key.encode()).digest()
    iv = b"\x07" * 16
    padder = padding.PKCS7(128).padder()
    data = padder.update(plain.encode()) + padder.finalize()
    enc = Cipher(algorithms.AES(aes_key), modes.CBC(iv)).encryptor()
    return base64.b64encode(iv + enc.update(data) + enc.finalize()).decode()


def encrypted_request(payload: dict[str, Any], *, sign: bool = True) -> dict[str, Any]:
    body = json.dumps({"encrypt": reference_encrypt(json.dumps(payload))}).encode()
    headers = {"Content-Type": "application/json"}
    if sign:
        ts, nonce = str(int(time.time())), "n0nce"  # an old timestamp is refused
        digest = hashlib.sha256((ts + nonce + ENCRYPT_KEY).encode() + body).hexdigest()
        headers |= {
            "X-Lark-Request-Timestamp": ts,
            "X-Lark-Request-Nonce": nonce,
            "X-Lark-Signature": digest,
        }
    return {"content": body, "headers": headers}


def test_url_verification_checks_the_token(client: TestClient) -> None:
    """The challenge comes back only with the right verification token."""
    ok = {"type": "url_verification", "challenge": "ch-1", "token": VTOKEN}
    assert client.post(URL, json=ok).json() == {"challenge": "ch-1"}
    assert client.post(URL, json={**ok, "token": "nope"}).status_code == 401


def test_message_is_handled_and_replied_to(
    client: TestClient, handle: RecordingHandler, platform: FakePlatform
) -> None:
    """A text message is handled; the reply goes to the message's reply API with the token."""
    assert client.post(URL, json=receive("@_user_1 怎么退款")).status_code == 200
    (msg,) = handle.messages
    assert (msg.channel, msg.user_id, msg.conversation_id) == ("feishu", "ou_42", "feishu:oc_chat9")
    assert msg.message_id == "om_abc123" and msg.text == "怎么退款"
    (call,) = platform.calls(REPLY_PATH)
    assert call.headers["Authorization"] == "Bearer t-1"
    sent = json.loads(call.content)
    assert sent["msg_type"] == "text"
    assert json.loads(sent["content"]) == {"text": "请在订单页申请退款"}
    assert platform.json(TOKEN_PATH) == [{"app_id": "cli_a1", "app_secret": "app-secret"}]


def test_wrong_verification_token_is_401(client: TestClient, handle: RecordingHandler) -> None:
    assert client.post(URL, json=receive(token="forged")).status_code == 401
    assert handle.messages == []


def test_redelivered_event_is_answered_once(
    client: TestClient, handle: RecordingHandler, platform: FakePlatform
) -> None:
    """Feishu's redelivery (same event_id) is acknowledged and not handled again; the token is
    fetched once for several replies."""
    client.post(URL, json=receive())
    client.post(URL, json=receive())
    client.post(URL, json=receive("another", event_id="ev-2", message_id="om_def456"))
    assert [m.text for m in handle.messages] == ["怎么退款", "another"]
    assert len(platform.calls(TOKEN_PATH)) == 1
    assert len(platform.calls("/reply")) == 2


def test_encrypted_signed_event_is_handled(
    platform: FakePlatform, handle: RecordingHandler
) -> None:
    """With an encrypt key: signed, encrypted events and challenges work."""
    client = client_for(platform, handle, ENCRYPT_KEY)
    challenge = {"type": "url_verification", "challenge": "ch-2", "token": VTOKEN}
    assert client.post(URL, **encrypted_request(challenge)).json() == {"challenge": "ch-2"}
    assert client.post(URL, **encrypted_request(receive())).status_code == 200
    assert len(handle.messages) == 1


def test_encrypted_event_without_signature_headers_is_401(
    platform: FakePlatform, handle: RecordingHandler
) -> None:
    """Attack: an encrypted event (e.g. a captured one, replayed) without X-Lark-Signature
    and timestamp skipped both the signature and the replay check and was answered 200.
    With an encrypt key every event must be signed; only the URL challenge, which acts on
    nothing, may come unsigned."""
    client = client_for(platform, handle, ENCRYPT_KEY)
    response = client.post(URL, **encrypted_request(receive(), sign=False))
    assert response.status_code == 401
    assert "missing X-Lark-Signature" in response.text
    assert handle.messages == []
    challenge = {"type": "url_verification", "challenge": "ch-3", "token": VTOKEN}
    unsigned = client.post(URL, **encrypted_request(challenge, sign=False))
    assert unsigned.json() == {"challenge": "ch-3"}


def test_encrypted_mode_refuses_forgeries(platform: FakePlatform, handle: RecordingHandler) -> None:
    """A bad signature, a plain body, or another key: 401."""
    client = client_for(platform, handle, ENCRYPT_KEY)
    forged = encrypted_request(receive())
    forged["headers"]["X-Lark-Signature"] = "0" * 64
    assert client.post(URL, **forged).status_code == 401
    assert client.post(URL, json=receive()).status_code == 401
    other = {"encrypt": reference_encrypt(json.dumps(receive()), key="other key")}
    assert client.post(URL, json=other).status_code == 401
    assert handle.messages == []


def test_cipher_round_trips_and_reads_the_reference() -> None:
    cipher = FeishuCipher(ENCRYPT_KEY)
    assert cipher.decrypt(cipher.encrypt("hello 飞书")) == "hello 飞书"
    assert cipher.decrypt(reference_encrypt('{"a": 1}')) == '{"a": 1}'


@pytest.mark.parametrize("mutate", ["not-json-content", "no-event", "bad-json"])
def test_malformed_event_is_400(client: TestClient, mutate: str) -> None:
    body: Any = receive()
    if mutate == "not-json-content":
        body["event"]["message"]["content"] = "plain text"
    elif mutate == "no-event":
        del body["event"]
    else:
        body = b"{"
    kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
    assert client.post(URL, **kwargs).status_code == 400


def test_other_events_are_ignored(client: TestClient, handle: RecordingHandler) -> None:
    other = receive()
    other["header"]["event_type"] = "im.chat.member.bot.added_v1"
    assert client.post(URL, json=other).status_code == 200
    image = receive()
    image["event"]["message"]["message_type"] = "image"
    assert client.post(URL, json=image).status_code == 200
    assert handle.messages == []


def test_send_refreshes_an_invalid_token_once() -> None:
    """An agent reply to a chat: an invalid-token answer fetches a new token and resends."""
    platform = FakePlatform()
    platform.route(
        "POST",
        TOKEN_PATH,
        {"code": 0, "tenant_access_token": "t-1", "expire": 7200},
        {"code": 0, "tenant_access_token": "t-2", "expire": 7200},
    )
    invalid = {"code": 99991663, "msg": "invalid access token"}
    platform.route("POST", "/im/v1/messages", invalid, {"code": 0})
    channel = FeishuChannel(config(), platform.client())
    asyncio.run(channel.send(conversation_id="feishu:oc_chat9", user_id="ou_42", text="hi"))
    calls = platform.calls("/im/v1/messages")
    assert [c.headers["Authorization"] for c in calls] == ["Bearer t-1", "Bearer t-2"]
    assert calls[0].url.params["receive_id_type"] == "chat_id"
    assert json.loads(calls[0].content)["receive_id"] == "oc_chat9"

    refused = FakePlatform()
    refused.route("POST", TOKEN_PATH, {"code": 10003, "msg": "invalid app_secret"})
    channel = FeishuChannel(config(), refused.client())
    with pytest.raises(ChannelError, match="invalid app_secret"):
        asyncio.run(channel.send(conversation_id="feishu:oc_chat9", user_id="u", text="hi"))
