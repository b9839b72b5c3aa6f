"""Channels in general: the registry, outbound retries, dedupe, tokens, and the generic channel."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import httpx
import pytest

import autoreply.channels as channels_pkg
from autoreply.channels.base import CachedToken, ChannelError, SeenIds
from autoreply.channels.config import (
    ChannelsConfig,
    ChatwootConfig,
    DingTalkConfig,
    FeishuConfig,
    GenericConfig,
    SlackConfig,
    TelegramConfig,
    WeComConfig,
)
from autoreply.channels.generic import GenericChannel, verify_callback_signature
from autoreply.channels.registry import build_channels, channel_for
from autoreply.channels.slack import SlackChannel
from autoreply.channels.testing import FakePlatform, RecordingHandler
from autoreply.models import Message

AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
CALLBACK = "https://hooks.example.test/autoreply"


def all_enabled() -> ChannelsConfig:
    return ChannelsConfig(
        slack=SlackConfig(signing_secret="s", bot_token="xoxb"),
        telegram=TelegramConfig(secret_token="t", bot_token="123:abc"),
        wecom=WeComConfig(token="t", encoding_aes_key=AES_KEY, corp_id="corp"),
        dingtalk=DingTalkConfig(app_secret="d"),
        feishu=FeishuConfig(verification_token="v", app_id="a", app_secret="s"),
        chatwoot=ChatwootConfig(base_url="https://cw.test", api_token="x", webhook_token="w"),
    )


def test_public_names_are_sorted_and_importable() -> None:
    """The package's __all__ is sorted, matches its lazy export table, and every name loads."""
    assert channels_pkg.__all__ == sorted(channels_pkg._EXPORTS)
    for name in channels_pkg.__all__:
        assert getattr(channels_pkg, name) is not None


def test_reading_settings_does_not_load_the_adapters() -> None:
    """Settings import channels.config only: no FastAPI routers or cryptography at that point."""
    code = (
        "import sys, autoreply.settings; "
        "print(any(m.startswith(('autoreply.channels.base', 'cryptography')) for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_only_generic_without_secrets() -> None:
    """With no secrets set, only the generic channel is built."""
    built = build_channels(ChannelsConfig(), httpx.AsyncClient())
    assert list(built) == ["generic"]


def test_every_channel_with_its_secrets() -> None:
    """Each channel is built once its secrets are set, under its own name."""
    built = build_channels(all_enabled(), httpx.AsyncClient())
    assert sorted(built) == sorted(
        ["generic", "slack", "telegram", "wecom", "dingtalk", "feishu", "chatwoot"]
    )
    assert all(ch.name == name for name, ch in built.items())


def test_channel_for_falls_back_to_generic() -> None:
    """Conversations from /v1/messages (channel "api") are delivered by the generic channel."""
    built = build_channels(all_enabled(), httpx.AsyncClient())
    assert channel_for(built, "slack") is built["slack"]
    assert channel_for(built, "api") is built["generic"]


def test_bad_wecom_key_fails_at_startup() -> None:
    """A WeCom EncodingAESKey that is not 43 characters is reported when channels are built."""
    config = ChannelsConfig(wecom=WeComConfig(token="t", encoding_aes_key="short", corp_id="c"))
    with pytest.raises(ChannelError, match="43-character"):
        build_channels(config, httpx.AsyncClient())


# -- outbound retries -----------------------------------------------------------------------
def slack_with(platform: FakePlatform, *, retries: int = 2) -> SlackChannel:
    config = ChannelsConfig(
        slack=SlackConfig(signing_secret="s", bot_token="xoxb", api_base="https://slack.test"),
        retries=retries,
        backoff_seconds=0,
    )
    return SlackChannel(config, platform.client())


def test_send_retries_on_5xx_then_succeeds() -> None:
    """A 503 is retried and the second attempt delivers."""
    platform = FakePlatform()
    platform.route("POST", "/chat.postMessage", 503, {"ok": True})
    asyncio.run(slack_with(platform).send(conversation_id="slack:T1:C2", user_id="U", text="hi"))
    assert len(platform.calls("/chat.postMessage")) == 2


def test_send_retries_on_429_and_timeouts() -> None:
    """429 (with Retry-After) and timeouts are retried like 5xx."""
    platform = FakePlatform()
    limited = httpx.Response(429, headers={"Retry-After": "0"})
    platform.route("POST", "/chat.postMessage", limited, httpx.ReadTimeout("slow"), {"ok": True})
    asyncio.run(slack_with(platform).send(conversation_id="slack:T1:C2", user_id="U", text="hi"))
    assert len(platform.calls("/chat.postMessage")) == 3


def test_send_gives_up_after_the_configured_retries() -> None:
    """retries=2 means three attempts, then ChannelError naming the last problem."""
    platform = FakePlatform()
    platform.route("POST", "/chat.postMessage", 502)
    with pytest.raises(ChannelError, match="3 attempt.*HTTP 502"):
        asyncio.run(
            slack_with(platform).send(conversation_id="slack:T1:C2", user_id="U", text="hi")
        )
    assert len(platform.calls("/chat.postMessage")) == 3


def test_send_never_retries_4xx() -> None:
    """A 400 is the request's fault: one attempt, then ChannelError."""
    platform = FakePlatform()
    platform.route("POST", "/chat.postMessage", 400)
    with pytest.raises(ChannelError, match="HTTP 400"):
        asyncio.run(
            slack_with(platform).send(conversation_id="slack:T1:C2", user_id="U", text="hi")
        )
    assert len(platform.calls("/chat.postMessage")) == 1


def test_send_to_a_foreign_address_says_what_is_expected() -> None:
    """A conversation id of another channel is refused with the expected shape."""
    with pytest.raises(ChannelError, match="not a slack address"):
        asyncio.run(
            slack_with(FakePlatform()).send(conversation_id="telegram:1", user_id="U", text="x")
        )


def test_reply_later_skips_duplicates_and_empty_and_survives_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Background answering: a duplicate or empty reply is not delivered; a failure is logged."""
    channel = slack_with(FakePlatform())
    delivered: list[str] = []

    async def deliver(text: str) -> None:
        delivered.append(text)

    handle = RecordingHandler("hello")
    msg = Message(text="q", user_id="u", channel="slack", message_id="E1")
    asyncio.run(channel.reply_later(handle, msg, deliver))
    asyncio.run(channel.reply_later(handle, msg, deliver))  # same id: duplicate
    asyncio.run(channel.reply_later(RecordingHandler(""), msg, deliver))
    assert delivered == ["hello"]

    async def broken(text: str) -> None:
        raise ChannelError("platform down")

    with caplog.at_level(logging.ERROR, logger="autoreply.channels"):
        asyncio.run(channel.reply_later(RecordingHandler("x"), msg, broken))
    assert "could not answer" in caplog.text


def test_seen_ids_expire_and_stay_bounded() -> None:
    """Dedupe remembers ids for its TTL and never more than max_size of them."""
    seen = SeenIds(ttl=3600, max_size=2)
    assert seen.add("a") and not seen.add("a")
    assert seen.add("b") and seen.add("c")
    assert seen.add("a")  # evicted by size
    expiring = SeenIds(ttl=0)
    assert expiring.add("x") and expiring.add("x")


def test_cached_token_is_fetched_once_until_invalidated() -> None:
    """Concurrent senders share one token fetch; invalidate() forces a new one."""
    fetched: list[int] = []

    async def fetch() -> tuple[str, float]:
        fetched.append(1)
        await asyncio.sleep(0)
        return f"tok{len(fetched)}", 7200

    token = CachedToken(fetch)

    async def run() -> list[str]:
        first = await asyncio.gather(*(token.get() for _ in range(5)))
        token.invalidate()
        return [*first, await token.get()]

    assert asyncio.run(run()) == ["tok1"] * 5 + ["tok2"]


# -- generic channel ------------------------------------------------------------------------
def generic_with(platform: FakePlatform, **fields: str) -> GenericChannel:
    config = ChannelsConfig(generic=GenericConfig(**fields), retries=1, backoff_seconds=0)
    return GenericChannel(config, platform.client())


def test_generic_callback_carries_a_verifiable_signature() -> None:
    """The callback body verifies with the shared secret and carries the reply."""
    platform = FakePlatform()
    platform.route("POST", "/autoreply", 204)
    channel = generic_with(platform, callback_url=CALLBACK, callback_secret="k3y")
    asyncio.run(channel.send(conversation_id="c1", user_id="u1", text="来自客服的回复"))
    (request,) = platform.calls("/autoreply")
    body = request.content
    header = request.headers["X-Autoreply-Signature"]
    assert header == "sha256=" + hmac.new(b"k3y", body, hashlib.sha256).hexdigest()
    assert verify_callback_signature(body, header, "k3y", max_age=60)
    assert int(request.headers["X-Autoreply-Timestamp"]) > 0
    data = json.loads(body)
    assert data["conversation_id"] == "c1" and data["user_id"] == "u1"
    assert data["text"] == "来自客服的回复" and data["sent_at"].endswith("Z")


def test_generic_signature_refuses_tampering_and_replays() -> None:
    """A changed body, another secret, a missing header or a stale sent_at do not verify."""
    sent_at = datetime.now(UTC).isoformat()
    body = json.dumps({"text": "hi", "sent_at": sent_at}).encode()
    header = "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()
    assert verify_callback_signature(body, header, "k", max_age=60)
    assert not verify_callback_signature(body + b" ", header, "k")
    assert not verify_callback_signature(body, header, "other")
    assert not verify_callback_signature(body, None, "k")
    old = json.dumps({"sent_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat()}).encode()
    old_header = "sha256=" + hmac.new(b"k", old, hashlib.sha256).hexdigest()
    assert verify_callback_signature(old, old_header, "k")
    assert not verify_callback_signature(old, old_header, "k", max_age=300)


def test_generic_without_callback_url_sends_nothing() -> None:
    """No callback URL: the reply is only kept for polling."""
    platform = FakePlatform()
    asyncio.run(generic_with(platform).send(conversation_id="c", user_id="u", text="x"))
    assert platform.requests == []


def test_generic_callback_retries_on_5xx() -> None:
    """Callbacks use the same retries as platform APIs."""
    platform = FakePlatform()
    platform.route("POST", "/autoreply", 500, 200)
    channel = generic_with(platform, callback_url=CALLBACK, callback_secret="k")
    asyncio.run(channel.send(conversation_id="c", user_id="u", text="x"))
    assert len(platform.calls("/autoreply")) == 2
