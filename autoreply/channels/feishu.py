"""Feishu / Lark events (schema 2.0): ``POST /channels/feishu/events``, replies via the message API.

With an Encrypt Key set, Feishu sends ``{"encrypt": base64(iv + AES-256-CBC(event))}`` with
key = sha256(encrypt_key) and PKCS#7 padding, plus ``X-Lark-Signature = sha256(timestamp +
nonce + encrypt_key + raw body)`` (hex); a plain body, a wrong signature or a timestamp more
than ``max_skew_seconds`` from now (a replay) then gets 401.
Either way the (decrypted) event's verification token must match, else 401. The
``url_verification`` challenge is echoed. ``im.message.receive_v1`` text messages are
acknowledged at once and answered in a background task (Feishu waits 3 s, then redelivers with
the same ``event_id``, which is deduplicated); the reply goes to
``im/v1/messages/{message_id}/reply`` with a cached ``tenant_access_token``.

Conversation ids: ``feishu:{chat_id}``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
from typing import Any

import httpx
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from fastapi import APIRouter, BackgroundTasks, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from autoreply.channels.base import (
    CachedToken,
    Channel,
    ChannelError,
    Handler,
    SeenIds,
    build_message,
    obj,
    parse_json,
    response_json,
    same,
    split_address,
)
from autoreply.channels.config import ChannelsConfig
from autoreply.models import Message

TOKEN_INVALID = {99991661, 99991663, 99991668}
MENTION = re.compile(r"@_user_\d+")
MESSAGE_ID = re.compile(r"[\w-]{1,200}")


class FeishuCipher:
    """Feishu event encryption: AES-256-CBC, key = sha256(encrypt_key), random IV in front."""

    def __init__(self, encrypt_key: str) -> None:
        self.key = hashlib.sha256(encrypt_key.encode()).digest()

    def encrypt(self, text: str) -> str:
        iv = os.urandom(16)
        padder = padding.PKCS7(128).padder()
        plain = padder.update(text.encode()) + padder.finalize()
        encryptor = Cipher(algorithms.AES(self.key), modes.CBC(iv)).encryptor()
        return base64.b64encode(iv + encryptor.update(plain) + encryptor.finalize()).decode()

    def decrypt(self, encrypted: str) -> str:
        """The event JSON text; ``ValueError`` if it was not encrypted with this key."""
        try:
            raw = base64.b64decode(encrypted, validate=True)
        except binascii.Error:
            raise ValueError("not base64") from None
        if len(raw) < 32 or len(raw) % 16:
            raise ValueError("not an IV followed by whole AES blocks")
        decryptor = Cipher(algorithms.AES(self.key), modes.CBC(raw[:16])).decryptor()
        padded = decryptor.update(raw[16:]) + decryptor.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        plain = unpadder.update(padded) + unpadder.finalize()  # ValueError on bad padding
        return plain.decode()  # UnicodeDecodeError is a ValueError


def lark_signature(timestamp: str, nonce: str, encrypt_key: str, body: bytes) -> str:
    """The ``X-Lark-Signature`` Feishu sends with an encrypted event."""
    return hashlib.sha256((timestamp + nonce + encrypt_key).encode() + body).hexdigest()


class FeishuChannel(Channel):
    """A Feishu / Lark custom app bot receiving ``im.message.receive_v1``."""

    name = "feishu"

    def __init__(self, config: ChannelsConfig, http: httpx.AsyncClient) -> None:
        super().__init__(config, http)
        self.seen = SeenIds()
        self.token = CachedToken(self._fetch_token)

    @classmethod
    def enabled(cls, config: ChannelsConfig) -> bool:
        cfg = config.feishu
        return bool(cfg.verification_token and cfg.app_id and cfg.app_secret)

    def router(self, handle: Handler) -> APIRouter:
        router = APIRouter()

        @router.post("/events", summary="Feishu / Lark event subscription request URL")
        async def events(request: Request, background: BackgroundTasks) -> Response:
            data = self._open(request, await request.body())
            if data.get("type") == "url_verification":
                if not same(data.get("token"), self.config.feishu.verification_token):
                    raise self.reject(request, "bad_token", "wrong verification token")
                return JSONResponse({"challenge": data.get("challenge", "")})
            header = data.get("header") if data.get("schema") == "2.0" else None
            token = header.get("token") if isinstance(header, dict) else data.get("token")
            if not same(token if isinstance(token, str) else None, self._vtoken):
                raise self.reject(request, "bad_token", "wrong or missing verification token")
            if not isinstance(header, dict) or header.get("event_type") != "im.message.receive_v1":
                return JSONResponse({"ok": True, "ignored": "not im.message.receive_v1"})
            event_id = header.get("event_id")
            event = data.get("event")
            if not isinstance(event_id, str) or not isinstance(event, dict):
                raise HTTPException(400, "event without header.event_id or event")
            parsed = self._message(event)
            if parsed is None:
                return JSONResponse({"ok": True, "ignored": "not a text message from a user"})
            if not self.seen.add(event_id):
                return JSONResponse({"ok": True, "ignored": "redelivered event"})
            message, message_id = parsed
            background.add_task(
                self.reply_later, handle, message, lambda text: self._reply(message_id, text)
            )
            return JSONResponse({"ok": True})

        return router

    @property
    def _vtoken(self) -> str:
        return self.config.feishu.verification_token

    def _open(self, request: Request, body: bytes) -> dict[str, Any]:
        """Check the signature and decrypt, when an encrypt key is configured."""
        key = self.config.feishu.encrypt_key
        data = parse_json(body)
        if not key:
            if "encrypt" in data:
                raise HTTPException(
                    400, "event is encrypted: set AUTOREPLY_CHANNELS__FEISHU__ENCRYPT_KEY"
                )
            return data
        # With an encrypt key, Feishu signs every event: one without the headers is a
        # forgery or a replay (it would skip the freshness check), never Feishu. Only the
        # one-off URL check may come unsigned: it acts on nothing, and it still has to be
        # encrypted with the key and carry the verification token.
        signature = request.headers.get("x-lark-signature")
        timestamp = request.headers.get("x-lark-request-timestamp", "")
        nonce = request.headers.get("x-lark-request-nonce", "")
        signed = bool(signature and timestamp and nonce)
        if signed and not same(signature, lark_signature(timestamp, nonce, key, body)):
            raise self.reject(request, "bad_signature", "bad X-Lark-Signature")
        if signed:
            self.check_fresh(request, timestamp, self.config.feishu.max_skew_seconds)
        encrypted = data.get("encrypt")
        if not isinstance(encrypted, str):
            raise self.reject(
                request, "not_encrypted", "body is not encrypted but an encrypt key is set"
            )
        try:
            opened = parse_json(FeishuCipher(key).decrypt(encrypted).encode())
        except ValueError:
            raise self.reject(
                request, "cannot_decrypt", "cannot decrypt with the configured encrypt key"
            ) from None
        if not signed and opened.get("type") != "url_verification":
            raise self.reject(
                request,
                "missing_signature",
                "missing X-Lark-Signature, X-Lark-Request-Timestamp or X-Lark-Request-Nonce "
                "(every event is signed once an encrypt key is set)",
            )
        return opened

    def _message(self, event: dict[str, Any]) -> tuple[Message, str] | None:
        sender = event.get("sender") or {}
        msg = event.get("message") or {}
        if not isinstance(sender, dict) or not isinstance(msg, dict):
            raise HTTPException(400, "event.sender and event.message must be objects")
        if sender.get("sender_type", "user") != "user" or msg.get("message_type") != "text":
            return None
        ids = obj(sender.get("sender_id"))
        user = ids.get("open_id") or ids.get("user_id") or ids.get("union_id")
        chat_id, message_id = msg.get("chat_id"), msg.get("message_id")
        try:
            content = json.loads(msg.get("content") or "")
        except (TypeError, ValueError):
            raise HTTPException(400, "message.content is not a JSON string") from None
        text = content.get("text") if isinstance(content, dict) else None
        if not all(isinstance(v, str) and v for v in (user, chat_id, message_id)):
            raise HTTPException(400, "message without sender id, chat_id or message_id")
        if not isinstance(text, str):
            raise HTTPException(400, "text message content has no 'text'")
        if not MESSAGE_ID.fullmatch(str(message_id)):
            raise HTTPException(400, "message_id has unexpected characters")
        message = build_message(
            text=MENTION.sub("", text).strip(),
            user_id=user,
            conversation_id=f"feishu:{chat_id}",
            channel=self.name,
            message_id=message_id,
            metadata={"chat_type": msg.get("chat_type"), "tenant_key": sender.get("tenant_key")},
        )
        return message, str(message_id)

    async def _fetch_token(self) -> tuple[str, float]:
        cfg = self.config.feishu
        resp = await self.call(
            "POST",
            f"{cfg.api_base}/auth/v3/tenant_access_token/internal",
            label="tenant_access_token",
            json={"app_id": cfg.app_id, "app_secret": cfg.app_secret},
            accept_4xx=True,
        )
        data = response_json(resp, self.name, "tenant_access_token")
        if data.get("code") != 0 or not data.get("tenant_access_token"):
            raise ChannelError(f"feishu: tenant_access_token refused: {data.get('msg', data)}")
        return str(data["tenant_access_token"]), float(data.get("expire", 7200))

    async def _api(self, path: str, *, label: str, **kwargs: Any) -> None:
        """POST to the Feishu API with the tenant token, fetching a new one once if it expired."""
        for attempt in range(2):
            token = await self.token.get()
            resp = await self.call(
                "POST",
                f"{self.config.feishu.api_base}{path}",
                label=label,
                headers={"Authorization": f"Bearer {token}"},
                accept_4xx=True,
                **kwargs,
            )
            data = response_json(resp, self.name, label)
            code = data.get("code")
            if code == 0 and resp.status_code < 400:
                return
            if code in TOKEN_INVALID and attempt == 0:
                self.token.invalidate()
                continue
            raise ChannelError(
                f"feishu: {label} refused (HTTP {resp.status_code}, code {code}): {data.get('msg')}"
            )

    async def _reply(self, message_id: str, text: str) -> None:
        await self._api(
            f"/im/v1/messages/{message_id}/reply",
            label="message reply",
            json={"msg_type": "text", "content": json.dumps({"text": text}, ensure_ascii=False)},
        )

    async def send(self, *, conversation_id: str, user_id: str, text: str) -> None:
        (chat_id,) = split_address(conversation_id, self.name, 1)
        await self._api(
            "/im/v1/messages",
            label="message create",
            params={"receive_id_type": "chat_id"},
            json={
                "receive_id": chat_id,
                "msg_type": "text",
                "content": json.dumps({"text": text}, ensure_ascii=False),
            },
        )
