"""WeCom callback: the crypto scheme, URL verification, encrypted passive replies, message/send."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct
import time
from typing import Any
from urllib.parse import urlencode
from xml.etree import ElementTree

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from fastapi.testclient import TestClient

from autoreply.channels.base import ChannelError
from autoreply.channels.config import ChannelsConfig, WeComConfig
from autoreply.channels.testing import FakePlatform, RecordingHandler, mount
from autoreply.channels.wecom import WeComChannel
from autoreply.channels.wecom_crypto import WeComCrypto, WeComCryptoError

TOKEN = "QDG6eK"
AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
CORP = "wx5823bf96d3bd56c7"
URL = "/channels/wecom/callback"
PREFIX = bytes(range(16))


def config(**extra: str) -> ChannelsConfig:
    wecom = WeComConfig(
        token=TOKEN,
        encoding_aes_key=AES_KEY,
        corp_id=CORP,
        api_base="https://wecom.test/cgi-bin",
        **extra,
    )
    return ChannelsConfig(wecom=wecom, retries=1, backoff_seconds=0)


def crypto(receive_id: str = CORP) -> WeComCrypto:
    return WeComCrypto(token=TOKEN, encoding_aes_key=AES_KEY, receive_id=receive_id)


def reference_encrypt(text: str, receive_id: str = CORP) -> str:
    """The documented steps, spelled out without the adapter's code."""
    key = base64.b64decode(AES_KEY + "=")
    msg = text.encode()
    plain = PREFIX + struct.pack(">I", len(msg)) + msg + receive_id.encode()
    pad = 32 - len(plain) % 32
    plain += bytes([pad] * pad)
    enc = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(enc.update(plain) + enc.finalize()).decode()


def reference_signature(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def test_crypto_matches_the_documented_steps() -> None:
    """Encrypt, decrypt and signature agree with an independent computation."""
    text = "<xml><Content><![CDATA[你好]]></Content></xml>"
    expected = reference_encrypt(text)
    assert crypto().encrypt(text, prefix=PREFIX) == expected
    assert crypto().decrypt(expected) == text
    assert crypto().signature("1409659813", "1372623149", expected) == reference_signature(
        TOKEN, "1409659813", "1372623149", expected
    )


@pytest.mark.parametrize("text", ["", "a", "x" * 31, "x" * 32, "退款" * 100])
def test_crypto_round_trips(text: str) -> None:
    """Any text survives encrypt → decrypt, whatever its padding."""
    assert crypto().decrypt(crypto().encrypt(text)) == text


def test_crypto_refuses_other_receivers_and_garbage() -> None:
    """A payload for another corp, non-base64 or a partial block is a WeComCryptoError."""
    with pytest.raises(WeComCryptoError, match="another receive id"):
        crypto().decrypt(reference_encrypt("hi", receive_id="other-corp"))
    with pytest.raises(WeComCryptoError):
        crypto().decrypt("%%%")
    with pytest.raises(WeComCryptoError):
        crypto().decrypt(base64.b64encode(b"x" * 20).decode())


@pytest.fixture
def handle() -> RecordingHandler:
    return RecordingHandler("退款请在订单页申请 ]]> <b>")


@pytest.fixture
def client(handle: RecordingHandler) -> TestClient:
    return TestClient(mount([WeComChannel(config(), FakePlatform().client())], handle))


def test_url_verification_returns_the_decrypted_echostr(client: TestClient) -> None:
    """GET with a valid msg_signature returns echostr's plaintext."""
    echostr = reference_encrypt("1616140317555161061")
    query = {
        "msg_signature": reference_signature(TOKEN, "1409659589", "263014780", echostr),
        "timestamp": "1409659589",
        "nonce": "263014780",
        "echostr": echostr,
    }
    resp = client.get(f"{URL}?{urlencode(query)}")
    assert resp.status_code == 200
    assert resp.text == "1616140317555161061"
    query["msg_signature"] = "0" * 40
    assert client.get(f"{URL}?{urlencode(query)}").status_code == 401


def inbound(content: str = "怎么退款", *, msg_type: str = "text", receive_id: str = CORP) -> str:
    return (
        f"<xml><ToUserName><![CDATA[{CORP}]]></ToUserName>"
        "<FromUserName><![CDATA[zhangsan]]></FromUserName><CreateTime>1348831860</CreateTime>"
        f"<MsgType><![CDATA[{msg_type}]]></MsgType><Content><![CDATA[{content}]]></Content>"
        "<MsgId>1234567890123456</MsgId><AgentID>1</AgentID></xml>"
    )


def post(client: TestClient, inner: str, *, signature: str | None = None, **kw: str) -> Any:
    encrypted = reference_encrypt(inner, **kw)
    now = str(int(time.time()))  # WeCom's callbacks are refused when their timestamp is old
    sig = signature or reference_signature(TOKEN, now, "1372623149", encrypted)
    query = urlencode({"msg_signature": sig, "timestamp": now, "nonce": "1372623149"})
    body = (
        f"<xml><ToUserName><![CDATA[{CORP}]]></ToUserName>"
        f"<Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
    )
    return client.post(f"{URL}?{query}", content=body)


def test_text_message_gets_an_encrypted_passive_reply(
    client: TestClient, handle: RecordingHandler
) -> None:
    """A signed, encrypted text message is handled; the reply XML is signed and decrypts."""
    resp = post(client, inbound())
    assert resp.status_code == 200
    (msg,) = handle.messages
    assert (msg.channel, msg.user_id, msg.conversation_id) == (
        "wecom",
        "zhangsan",
        "wecom:zhangsan",
    )
    assert msg.message_id == "1234567890123456" and msg.text == "怎么退款"
    outer = {el.tag: el.text or "" for el in ElementTree.fromstring(resp.text)}
    assert outer["MsgSignature"] == reference_signature(
        TOKEN, outer["TimeStamp"], outer["Nonce"], outer["Encrypt"]
    )
    inner = {el.tag: el.text for el in ElementTree.fromstring(crypto().decrypt(outer["Encrypt"]))}
    assert inner["Content"] == "退款请在订单页申请 ]]> <b>"
    assert (inner["ToUserName"], inner["FromUserName"], inner["MsgType"]) == (
        "zhangsan",
        CORP,
        "text",
    )


def test_forged_signature_is_401(client: TestClient, handle: RecordingHandler) -> None:
    """A wrong msg_signature gets 401 and never reaches handle."""
    assert post(client, inbound(), signature="f" * 40).status_code == 401
    assert handle.messages == []


def test_payload_for_another_corp_is_401(client: TestClient, handle: RecordingHandler) -> None:
    """Correctly signed but encrypted for another receive id: 401."""
    assert post(client, inbound(), receive_id="wx-other").status_code == 401
    assert handle.messages == []


def test_events_get_an_empty_reply(client: TestClient, handle: RecordingHandler) -> None:
    """Non-text messages (events, images) are accepted without a reply."""
    resp = post(client, inbound(msg_type="event"))
    assert resp.status_code == 200 and resp.text == ""
    assert handle.messages == []


@pytest.mark.parametrize(
    "body",
    [
        "not xml at all",
        "<xml><ToUserName>x</ToUserName></xml>",
        '<!DOCTYPE x [<!ENTITY a "b">]><xml><Encrypt>&a;</Encrypt></xml>',
    ],
)
def test_malformed_body_is_400(client: TestClient, body: str) -> None:
    """Not XML, no <Encrypt>, or a DTD: 400 with a reason."""
    resp = client.post(f"{URL}?msg_signature=x&timestamp=1&nonce=2", content=body)
    assert resp.status_code == 400
    assert resp.json()["detail"]


def test_send_caches_the_access_token_and_refreshes_it_when_expired() -> None:
    """Two sends fetch one token; an expired-token errcode fetches a new one and resends."""
    platform = FakePlatform()
    platform.route(
        "GET",
        "/gettoken",
        {"errcode": 0, "access_token": "T1", "expires_in": 7200},
        {"errcode": 0, "access_token": "T2", "expires_in": 7200},
    )
    platform.route(
        "POST",
        "/message/send",
        {"errcode": 0},
        503,
        {"errcode": 0},
        {"errcode": 42001, "errmsg": "access_token expired"},
        {"errcode": 0},
    )
    channel = WeComChannel(config(corp_secret="cs", agent_id="1000002"), platform.client())
    for _ in range(3):
        asyncio.run(channel.send(conversation_id="wecom:zhangsan", user_id="zhangsan", text="hi"))
    tokens = [r.url.params["access_token"] for r in platform.calls("/message/send")]
    assert tokens == ["T1", "T1", "T1", "T1", "T2"]
    assert len(platform.calls("/gettoken")) == 2
    assert platform.calls("/gettoken")[0].url.params["corpsecret"] == "cs"
    assert platform.json("/message/send")[0] == {
        "touser": "zhangsan",
        "msgtype": "text",
        "agentid": 1000002,
        "text": {"content": "hi"},
    }


def test_send_needs_corp_secret_and_agent_id() -> None:
    """Without corp_secret and agent_id an agent reply cannot go out, and the error says so."""
    channel = WeComChannel(config(), FakePlatform().client())
    with pytest.raises(ChannelError, match="CORP_SECRET"):
        asyncio.run(channel.send(conversation_id="wecom:u", user_id="u", text="x"))
