"""Slack Events API: v0 signatures, replays, url_verification, retries, chat.postMessage."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from autoreply.channels.base import ChannelError
from autoreply.channels.config import ChannelsConfig, SlackConfig
from autoreply.channels.slack import SlackChannel
from autoreply.channels.testing import FakePlatform, RecordingHandler, mount

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
URL = "/channels/slack/events"


@pytest.fixture
def platform() -> FakePlatform:
    fake = FakePlatform()
    fake.route("POST", "/chat.postMessage", {"ok": True})
    return fake


@pytest.fixture
def handle() -> RecordingHandler:
    return RecordingHandler("refund answer")


@pytest.fixture
def client(platform: FakePlatform, handle: RecordingHandler) -> TestClient:
    config = ChannelsConfig(
        slack=SlackConfig(signing_secret=SECRET, bot_token="xoxb-1", api_base="https://slack.test"),
        retries=1,
        backoff_seconds=0,
    )
    return TestClient(mount([SlackChannel(config, platform.client())], handle))


def signed(payload: dict[str, Any] | bytes, *, at: float | None = None) -> dict[str, Any]:
    """Request kwargs for a body signed the way Slack signs it (independent of the adapter)."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    ts = str(int(at if at is not None else time.time()))
    mac = hmac.new(SECRET.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256)
    headers = {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": "v0=" + mac.hexdigest(),
        "Content-Type": "application/json",
    }
    return {"content": body, "headers": headers}


def event(text: str = "how do I get a refund?", event_id: str = "Ev1", **extra: Any) -> dict:
    return {
        "type": "event_callback",
        "team_id": "T1",
        "event_id": event_id,
        "event": {"type": "message", "channel": "C2", "user": "U3", "text": text, **extra},
    }


def test_url_verification_echoes_the_challenge(client: TestClient) -> None:
    """Slack's URL check gets its challenge back."""
    body = {"type": "url_verification", "challenge": "3eZbrw1aB", "token": "x"}
    resp = client.post(URL, **signed(body))
    assert resp.status_code == 200
    assert resp.json() == {"challenge": "3eZbrw1aB"}


def test_message_is_handled_and_answered_with_chat_post_message(
    client: TestClient, handle: RecordingHandler, platform: FakePlatform
) -> None:
    """A signed message event becomes a Message; the reply is posted to the channel."""
    resp = client.post(URL, **signed(event()))
    assert resp.status_code == 200
    (msg,) = handle.messages
    assert (msg.channel, msg.user_id, msg.conversation_id) == ("slack", "U3", "slack:T1:C2")
    assert msg.message_id == "Ev1" and msg.text == "how do I get a refund?"
    (call,) = platform.calls("/chat.postMessage")
    assert call.headers["Authorization"] == "Bearer xoxb-1"
    assert json.loads(call.content) == {"channel": "C2", "text": "refund answer"}


def test_thread_reply_stays_in_the_thread(
    client: TestClient, handle: RecordingHandler, platform: FakePlatform
) -> None:
    """A message in a thread is answered in that thread and has its own conversation."""
    client.post(URL, **signed(event(thread_ts="171.000100")))
    assert handle.messages[0].conversation_id == "slack:T1:C2:171.000100"
    assert platform.json("/chat.postMessage")[0]["thread_ts"] == "171.000100"


def test_forged_signature_is_401_and_logged(
    client: TestClient, handle: RecordingHandler, caplog: pytest.LogCaptureFixture
) -> None:
    """A body changed after signing gets 401, a log line, and never reaches handle."""
    req = signed(event())
    req["content"] = req["content"].replace(b"refund", b"hack!!")
    with caplog.at_level(logging.WARNING, logger="autoreply.channels"):
        resp = client.post(URL, **req)
    assert resp.status_code == 401
    assert handle.messages == []
    (record,) = [r for r in caplog.records if r.name == "autoreply.channels"]
    fields = record.__dict__
    assert (fields["channel"], fields["reason"], fields["remote_ip"]) == (
        "slack",
        "bad signature",
        "testclient",
    )


def test_missing_signature_is_401(client: TestClient, handle: RecordingHandler) -> None:
    """No signature headers at all: 401."""
    resp = client.post(URL, json=event())
    assert resp.status_code == 401
    assert handle.messages == []


def test_replayed_old_timestamp_is_401(client: TestClient, handle: RecordingHandler) -> None:
    """A correctly signed request from 10 minutes ago is a replay: 401."""
    resp = client.post(URL, **signed(event(), at=time.time() - 600))
    assert resp.status_code == 401
    assert handle.messages == []


def test_retries_are_deduplicated_by_event_id(
    client: TestClient, handle: RecordingHandler, platform: FakePlatform
) -> None:
    """Slack's retry of the same event is acknowledged but not answered twice."""
    first = client.post(URL, **signed(event()))
    retry = signed(event())
    retry["headers"] |= {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    second = client.post(URL, **retry)
    assert first.status_code == second.status_code == 200
    assert len(handle.messages) == 1
    assert len(platform.calls("/chat.postMessage")) == 1


@pytest.mark.parametrize(
    "extra",
    [{"bot_id": "B1"}, {"subtype": "message_changed"}, {"subtype": "channel_join"}],
)
def test_bot_messages_and_subtypes_are_ignored(
    client: TestClient, handle: RecordingHandler, extra: dict[str, str]
) -> None:
    """The bot's own messages, edits and joins are acknowledged and ignored."""
    resp = client.post(URL, **signed(event(**extra)))
    assert resp.status_code == 200
    assert handle.messages == []


def test_malformed_body_is_400(client: TestClient) -> None:
    """A signed body that is not JSON gets 400 with a reason, not 500."""
    resp = client.post(URL, **signed(b"{not json"))
    assert resp.status_code == 400
    assert "not valid JSON" in resp.json()["detail"]


def test_event_callback_without_event_is_400(client: TestClient) -> None:
    resp = client.post(URL, **signed({"type": "event_callback"}))
    assert resp.status_code == 400


def test_unknown_type_is_ignored(client: TestClient, handle: RecordingHandler) -> None:
    """Event types the adapter does not know are acknowledged with 200."""
    resp = client.post(URL, **signed({"type": "app_rate_limited", "team_id": "T1"}))
    assert resp.status_code == 200
    assert handle.messages == []


def test_send_posts_an_agent_reply_and_reports_refusals() -> None:
    """send() delivers to the encoded channel; Slack's ok=false becomes ChannelError."""
    platform = FakePlatform()
    platform.route("POST", "/chat.postMessage", {"ok": True}, {"ok": False, "error": "not_in"})
    config = ChannelsConfig(
        slack=SlackConfig(signing_secret=SECRET, bot_token="xoxb-1", api_base="https://slack.test")
    )
    slack = SlackChannel(config, platform.client())
    asyncio.run(slack.send(conversation_id="slack:T1:D9:1.5", user_id="U3", text="agent"))
    assert platform.json("/chat.postMessage")[0] == {
        "channel": "D9",
        "text": "agent",
        "thread_ts": "1.5",
    }
    with pytest.raises(ChannelError, match="not_in"):
        asyncio.run(slack.send(conversation_id="slack:T1:D9", user_id="U3", text="agent"))
