"""DingTalk (钉钉) outgoing robot: ``POST /channels/dingtalk/webhook``, answered in the response.

DingTalk signs each request with headers ``timestamp`` (ms epoch) and
``sign = base64(HMAC_SHA256(app_secret, f"{timestamp}\\n{app_secret}"))``; a wrong sign, or a
timestamp further than ``max_skew_seconds`` from now (a replay), gets 401. A text message is
answered synchronously: ``{"msgtype": "text", "text": {"content": reply}}``.

Agent replies later go to the conversation's ``sessionWebhook``, which DingTalk sends with every
message and which expires (``sessionWebhookExpiredTime``, about 90 minutes). Only webhooks on the
``api_base`` host are remembered, in memory; with none (expired, or after a restart) ``send``
logs that it cannot deliver and raises ``ChannelError``.

Conversation ids: ``dingtalk:{conversationId}``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

import httpx
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from autoreply.channels.base import (
    Channel,
    ChannelError,
    Handler,
    build_message,
    log,
    parse_json,
    response_json,
    same,
    split_address,
)
from autoreply.channels.config import ChannelsConfig

MAX_SESSIONS = 10_000


def dingtalk_sign(secret: str, timestamp: str) -> str:
    """The ``sign`` header DingTalk sends with ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


class DingTalkChannel(Channel):
    """A DingTalk enterprise robot in outgoing (HTTP callback) mode."""

    name = "dingtalk"

    def __init__(self, config: ChannelsConfig, http: httpx.AsyncClient) -> None:
        super().__init__(config, http)
        self.sessions: dict[str, tuple[str, float]] = {}
        """conversationId → (sessionWebhook, expiry as epoch seconds)."""

    @classmethod
    def enabled(cls, config: ChannelsConfig) -> bool:
        return bool(config.dingtalk.app_secret)

    def router(self, handle: Handler) -> APIRouter:
        router = APIRouter()

        @router.post("/webhook", summary="DingTalk robot outgoing webhook")
        async def webhook(request: Request) -> Response:
            self._verify(request)
            data = parse_json(await request.body())
            if data.get("msgtype") != "text":
                return JSONResponse({})  # pictures, files, ...: no reply
            text = data.get("text")
            content = text.get("content") if isinstance(text, dict) else None
            conversation = data.get("conversationId")
            user = data.get("senderStaffId") or data.get("senderId")
            if not isinstance(content, str) or not isinstance(conversation, str):
                raise HTTPException(400, "text message without text.content or conversationId")
            if not isinstance(user, str) or not user:
                raise HTTPException(400, "message without senderStaffId or senderId")
            self._remember(conversation, data)
            message = build_message(
                text=content.strip(),
                user_id=user,
                conversation_id=f"dingtalk:{conversation}",
                channel=self.name,
                message_id=str(data["msgId"]) if data.get("msgId") else None,
                metadata={
                    "name": data.get("senderNick"),
                    "conversation_type": data.get("conversationType"),
                    "conversation_title": data.get("conversationTitle"),
                },
            )
            reply = await handle(message)
            if not reply.text.strip():
                return JSONResponse({})
            return JSONResponse({"msgtype": "text", "text": {"content": reply.text}})

        return router

    def _verify(self, request: Request) -> None:
        cfg = self.config.dingtalk
        timestamp = request.headers.get("timestamp", "")
        sign = request.headers.get("sign")
        if not timestamp or not sign:
            raise self.reject(request, "missing_signature", "missing timestamp or sign header")
        self.check_fresh(request, timestamp, cfg.max_skew_seconds, millis=True)
        if not same(sign, dingtalk_sign(cfg.app_secret, timestamp)):
            raise self.reject(request, "bad_signature", "bad sign")

    def _remember(self, conversation: str, data: dict[str, Any]) -> None:
        url = data.get("sessionWebhook")
        expires = data.get("sessionWebhookExpiredTime")
        if not isinstance(url, str) or not isinstance(expires, int | float):
            return
        allowed = httpx.URL(self.config.dingtalk.api_base)
        target = httpx.URL(url)
        if (target.scheme, target.host, target.port) != (
            allowed.scheme,
            allowed.host,
            allowed.port,
        ):
            log.warning(
                "dingtalk: sessionWebhook on unexpected host %s ignored",
                target.host,
                extra={"channel": self.name, "host": target.host},
            )
            return
        now = time.time()
        if len(self.sessions) >= MAX_SESSIONS:
            self.sessions = {k: v for k, v in self.sessions.items() if v[1] > now}
        if len(self.sessions) >= MAX_SESSIONS:
            self.sessions.pop(next(iter(self.sessions)))
        self.sessions[conversation] = (url, expires / 1000)

    async def send(self, *, conversation_id: str, user_id: str, text: str) -> None:
        (conversation,) = split_address(conversation_id, self.name, 1)
        url, expires = self.sessions.get(conversation, ("", 0.0))
        if not url or expires <= time.time():
            log.warning(
                "dingtalk: cannot deliver to %s: no live sessionWebhook "
                "(the customer has not written in the last ~90 minutes)",
                conversation_id,
                extra={"channel": self.name, "conversation_id": conversation_id},
            )
            raise ChannelError(
                f"dingtalk: cannot deliver to {conversation_id}: its sessionWebhook expired or "
                "was never seen; the reply can be sent after the customer writes again"
            )
        resp = await self.call(
            "POST",
            url,
            label="sessionWebhook",
            json={"msgtype": "text", "text": {"content": text}},
        )
        data = response_json(resp, self.name, "sessionWebhook")
        if data.get("errcode", 0) != 0:
            raise ChannelError(f"dingtalk: sessionWebhook refused: {data.get('errmsg', data)}")
