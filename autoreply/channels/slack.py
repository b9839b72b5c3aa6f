"""Slack Events API: ``POST /channels/slack/events``, replies through ``chat.postMessage``.

Every request carries ``X-Slack-Signature: v0=HMAC_SHA256(signing_secret,
"v0:{X-Slack-Request-Timestamp}:{raw body}")``; a wrong signature or a timestamp further than
``max_skew_seconds`` from now (a replay) gets 401. ``url_verification`` echoes the challenge.
Slack wants an answer within 3 s, so ``message`` events are acknowledged at once and answered in
a background task; its retries (``X-Slack-Retry-Num``) carry the same ``event_id`` and are
dropped. Messages from bots (``bot_id``) and with a ``subtype`` (edits, joins, ...) are ignored.

Conversation ids: ``slack:{team}:{channel}``, or ``slack:{team}:{channel}:{thread_ts}`` for a
message in a thread (the reply goes into the thread).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import httpx
from fastapi import APIRouter, BackgroundTasks, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from autoreply.channels.base import (
    Channel,
    ChannelError,
    Handler,
    SeenIds,
    build_message,
    parse_json,
    response_json,
    same,
    split_address,
)
from autoreply.channels.config import ChannelsConfig
from autoreply.models import Message


def slack_signature(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Slack-Signature`` Slack sends for ``body`` at ``timestamp``."""
    base = f"v0:{timestamp}:".encode() + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


class SlackChannel(Channel):
    """Slack app with the Events API (``message.im`` / ``message.channels`` subscriptions)."""

    name = "slack"

    def __init__(self, config: ChannelsConfig, http: httpx.AsyncClient) -> None:
        super().__init__(config, http)
        self.seen = SeenIds()

    @classmethod
    def enabled(cls, config: ChannelsConfig) -> bool:
        return bool(config.slack.signing_secret and config.slack.bot_token)

    def router(self, handle: Handler) -> APIRouter:
        router = APIRouter()

        @router.post("/events", summary="Slack Events API request URL")
        async def events(request: Request, background: BackgroundTasks) -> Response:
            body = await request.body()
            self._verify(request, body)
            data = parse_json(body)
            kind = data.get("type")
            if kind == "url_verification":
                challenge = data.get("challenge")
                if not isinstance(challenge, str):
                    raise HTTPException(400, "url_verification without a challenge")
                return JSONResponse({"challenge": challenge})
            if kind != "event_callback":
                return JSONResponse({"ok": True, "ignored": f"type {kind!r}"})
            event = data.get("event")
            event_id = data.get("event_id")
            if not isinstance(event, dict) or not isinstance(event_id, str):
                raise HTTPException(400, "event_callback without an event or event_id")
            if not self._is_customer_message(event):
                return JSONResponse({"ok": True, "ignored": "not a user message"})
            if not self.seen.add(event_id):
                return JSONResponse({"ok": True, "ignored": "retry of a seen event"})
            message, channel, thread = self._message(data, event, event_id)
            background.add_task(
                self.reply_later,
                handle,
                message,
                lambda text: self._post(channel=channel, thread_ts=thread, text=text),
            )
            return JSONResponse({"ok": True})

        return router

    def _verify(self, request: Request, body: bytes) -> None:
        cfg = self.config.slack
        timestamp = request.headers.get("x-slack-request-timestamp", "")
        signature = request.headers.get("x-slack-signature")
        if not signature or not timestamp:
            raise self.reject(request, "missing_signature", "missing signature headers")
        self.check_fresh(request, timestamp, cfg.max_skew_seconds)
        if not same(signature, slack_signature(cfg.signing_secret, timestamp, body)):
            raise self.reject(request, "bad_signature", "bad signature")

    @staticmethod
    def _is_customer_message(event: dict[str, Any]) -> bool:
        return (
            event.get("type") == "message"
            and not event.get("subtype")
            and not event.get("bot_id")
            and isinstance(event.get("user"), str)
            and isinstance(event.get("channel"), str)
            and isinstance(event.get("text"), str)
        )

    def _message(
        self, data: dict[str, Any], event: dict[str, Any], event_id: str
    ) -> tuple[Message, str, str | None]:
        team = str(data.get("team_id") or event.get("team") or "-")
        channel = event["channel"]
        thread = event.get("thread_ts") if isinstance(event.get("thread_ts"), str) else None
        conversation = f"slack:{team}:{channel}" + (f":{thread}" if thread else "")
        message = build_message(
            text=event["text"],
            user_id=event["user"],
            conversation_id=conversation,
            channel=self.name,
            message_id=event_id,
            metadata={
                "team_id": team,
                "channel": channel,
                "thread_ts": thread,
                "channel_type": event.get("channel_type"),
            },
        )
        return message, channel, thread

    async def send(self, *, conversation_id: str, user_id: str, text: str) -> None:
        _team, rest = split_address(conversation_id, self.name, 2)
        channel, _, thread = rest.partition(":")
        await self._post(channel=channel, thread_ts=thread or None, text=text)

    async def _post(self, *, channel: str, thread_ts: str | None, text: str) -> None:
        cfg = self.config.slack
        payload: dict[str, Any] = {"channel": channel, "text": text}
        if thread_ts:
            payload["thread_ts"] = thread_ts
        resp = await self.call(
            "POST",
            f"{cfg.api_base}/chat.postMessage",
            label="chat.postMessage",
            json=payload,
            headers={"Authorization": f"Bearer {cfg.bot_token}"},
        )
        data = response_json(resp, self.name, "chat.postMessage")
        if not data.get("ok"):
            raise ChannelError(f"slack: chat.postMessage refused: {data.get('error', data)}")
