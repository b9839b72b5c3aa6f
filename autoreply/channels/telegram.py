"""Telegram Bot API webhook: ``POST /channels/telegram/webhook``, replies with ``sendMessage``.

Register the webhook with a secret (``setWebhook?url=...&secret_token=...``); Telegram then sends
it in ``X-Telegram-Bot-Api-Secret-Token`` and anything without it gets 401. Text messages from
people are answered in a background task after a quick 200; other updates (edits, stickers,
bots, channel posts) are acknowledged and ignored. Telegram redelivers an update until it gets a
2xx, so ``update_id`` (the message id) is deduplicated.

Conversation ids: ``telegram:{chat_id}``. The bot token is part of every API URL: it never
appears in autoreply's logs or errors, but keep the ``httpx`` logger at WARNING in production.
"""

from __future__ import annotations

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

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


class TelegramChannel(Channel):
    """A Telegram bot answering private and group chats."""

    name = "telegram"

    def __init__(self, config: ChannelsConfig, http: httpx.AsyncClient) -> None:
        super().__init__(config, http)
        self.seen = SeenIds()

    @classmethod
    def enabled(cls, config: ChannelsConfig) -> bool:
        return bool(config.telegram.secret_token and config.telegram.bot_token)

    def router(self, handle: Handler) -> APIRouter:
        router = APIRouter()

        @router.post("/webhook", summary="Telegram Bot API webhook")
        async def webhook(request: Request, background: BackgroundTasks) -> Response:
            given = request.headers.get(SECRET_HEADER)
            if not given:
                raise self.reject(request, "missing_token", "missing secret token header")
            if not same(given, self.config.telegram.secret_token):
                raise self.reject(request, "bad_token", "wrong secret token")
            update = parse_json(await request.body())
            update_id = update.get("update_id")
            if not isinstance(update_id, int):
                raise HTTPException(400, "update without an integer update_id")
            msg = update.get("message")
            if not isinstance(msg, dict) or not isinstance(msg.get("text"), str):
                return JSONResponse({"ok": True, "ignored": "not a text message"})
            chat = msg.get("chat")
            sender = msg.get("from")
            if not isinstance(chat, dict) or not isinstance(chat.get("id"), int):
                raise HTTPException(400, "message without chat.id")
            if not isinstance(sender, dict) or sender.get("is_bot"):
                return JSONResponse({"ok": True, "ignored": "not from a person"})
            if not self.seen.add(str(update_id)):
                return JSONResponse({"ok": True, "ignored": "redelivered update"})
            chat_id = chat["id"]
            name = " ".join(
                str(sender[k]) for k in ("first_name", "last_name") if sender.get(k)
            ).strip()
            message = build_message(
                text=msg["text"],
                user_id=str(sender.get("id", chat_id)),
                conversation_id=f"telegram:{chat_id}",
                channel=self.name,
                message_id=str(update_id),
                metadata={
                    "chat_type": chat.get("type"),
                    "username": sender.get("username"),
                    "name": name or None,
                    "language": sender.get("language_code"),
                },
            )
            background.add_task(
                self.reply_later,
                handle,
                message,
                lambda text: self._send_message(chat_id, text),
            )
            return JSONResponse({"ok": True})

        return router

    async def send(self, *, conversation_id: str, user_id: str, text: str) -> None:
        (chat,) = split_address(conversation_id, self.name, 1)
        try:
            chat_id = int(chat)
        except ValueError:
            raise ChannelError(f"telegram: chat id {chat!r} is not an integer") from None
        await self._send_message(chat_id, text)

    async def _send_message(self, chat_id: int, text: str) -> None:
        cfg = self.config.telegram
        resp = await self.call(
            "POST",
            f"{cfg.api_base}/bot{cfg.bot_token}/sendMessage",
            label="sendMessage",
            json={"chat_id": chat_id, "text": text},
        )
        data = response_json(resp, self.name, "sendMessage")
        if not data.get("ok"):
            raise ChannelError(f"telegram: sendMessage refused: {data.get('description', data)}")
