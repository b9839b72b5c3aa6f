"""WeCom (企业微信) self-built app callback: ``/channels/wecom/callback``, encrypted both ways.

``GET`` is the URL check: ``msg_signature = sha1("".join(sorted([token, timestamp, nonce,
echostr])))``; the decrypted ``echostr`` goes back as plain text. ``POST`` carries
``<xml><Encrypt>…</Encrypt></xml>``, signed the same way over ``Encrypt`` (a ``timestamp`` more
than ``max_skew_seconds`` from now is refused as a replay); the decrypted message
(``MsgType`` text) is answered in the HTTP response as an encrypted passive reply (WeCom waits
5 s, so ``handle`` must be quick). Agent replies later go through ``message/send`` with an
access token from ``gettoken`` (cached until it expires).

The crypto (``WeComCrypto``) is in ``wecom_crypto``.

Conversation ids: ``wecom:{userid}``.
"""

from __future__ import annotations

import secrets
import time
from xml.etree import ElementTree

import httpx
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import PlainTextResponse, Response

from autoreply.channels.base import (
    CachedToken,
    Channel,
    ChannelError,
    Handler,
    build_message,
    response_json,
    split_address,
)
from autoreply.channels.config import ChannelsConfig
from autoreply.channels.wecom_crypto import WeComCrypto, WeComCryptoError

TOKEN_EXPIRED = {40001, 40014, 42001}


def parse_xml(text: str) -> dict[str, str]:
    """Top-level children of a flat WeCom XML document, or 400 (no DTDs or entities)."""
    if "<!" in text.replace("<![CDATA[", ""):
        raise HTTPException(400, "XML with a DOCTYPE or entity declarations is not accepted")
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as exc:
        raise HTTPException(400, f"body is not valid XML: {exc}") from None
    return {child.tag: (child.text or "") for child in root}


def _cdata(value: str) -> str:
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


class WeComChannel(Channel):
    """A WeCom self-built app (自建应用) answering its members' messages."""

    name = "wecom"

    def __init__(self, config: ChannelsConfig, http: httpx.AsyncClient) -> None:
        super().__init__(config, http)
        cfg = self.config.wecom
        self.crypto = WeComCrypto(
            token=cfg.token, encoding_aes_key=cfg.encoding_aes_key, receive_id=cfg.corp_id
        )
        self.token = CachedToken(self._fetch_token)

    @classmethod
    def enabled(cls, config: ChannelsConfig) -> bool:
        cfg = config.wecom
        return bool(cfg.token and cfg.encoding_aes_key and cfg.corp_id)

    def router(self, handle: Handler) -> APIRouter:
        router = APIRouter()

        @router.get("/callback", summary="WeCom callback URL verification")
        async def verify_url(request: Request) -> Response:
            q = request.query_params
            echostr = q.get("echostr", "")
            timestamp, nonce = q.get("timestamp", ""), q.get("nonce", "")
            if not q.get("msg_signature"):
                raise self.reject(request, "missing_signature", "missing msg_signature")
            if not echostr or not self.crypto.verify(
                q.get("msg_signature"), timestamp, nonce, echostr
            ):
                raise self.reject(request, "bad_signature", "bad msg_signature")
            return PlainTextResponse(self._decrypt(request, echostr))

        @router.post("/callback", summary="WeCom message callback")
        async def callback(request: Request) -> Response:
            q = request.query_params
            timestamp, nonce = q.get("timestamp", ""), q.get("nonce", "")
            body = (await request.body()).decode("utf-8", "replace")
            encrypted = parse_xml(body).get("Encrypt", "")
            if not encrypted:
                raise HTTPException(400, "callback body has no <Encrypt> element")
            if not q.get("msg_signature"):
                raise self.reject(request, "missing_signature", "missing msg_signature")
            if not self.crypto.verify(q.get("msg_signature"), timestamp, nonce, encrypted):
                raise self.reject(request, "bad_signature", "bad msg_signature")
            self.check_fresh(request, timestamp, self.config.wecom.max_skew_seconds)
            inner = parse_xml(self._decrypt(request, encrypted))
            if inner.get("MsgType") != "text" or not inner.get("FromUserName"):
                return PlainTextResponse("")  # events, images, ...: no passive reply
            user = inner["FromUserName"]
            message = build_message(
                text=inner.get("Content", ""),
                user_id=user,
                conversation_id=f"wecom:{user}",
                channel=self.name,
                message_id=inner.get("MsgId") or None,
                metadata={"wecom_agent_id": inner.get("AgentID")},
            )
            reply = await handle(message)
            if not reply.text.strip():
                return PlainTextResponse("")
            return Response(self.passive_reply(user, reply.text), media_type="application/xml")

        return router

    def _decrypt(self, request: Request, encrypted: str) -> str:
        try:
            return self.crypto.decrypt(encrypted)
        except WeComCryptoError as exc:
            raise self.reject(request, "cannot_decrypt", str(exc).removeprefix("wecom: ")) from None

    def passive_reply(self, user: str, text: str, *, timestamp: str | None = None) -> str:
        """The encrypted reply XML for ``text`` to ``user`` (WeCom shows it at once)."""
        timestamp = timestamp or str(int(time.time()))
        nonce = secrets.token_hex(8)
        inner = (
            f"<xml><ToUserName>{_cdata(user)}</ToUserName>"
            f"<FromUserName>{_cdata(self.crypto.receive_id)}</FromUserName>"
            f"<CreateTime>{timestamp}</CreateTime><MsgType>{_cdata('text')}</MsgType>"
            f"<Content>{_cdata(text)}</Content></xml>"
        )
        encrypted = self.crypto.encrypt(inner)
        signature = self.crypto.signature(timestamp, nonce, encrypted)
        return (
            f"<xml><Encrypt>{_cdata(encrypted)}</Encrypt>"
            f"<MsgSignature>{_cdata(signature)}</MsgSignature>"
            f"<TimeStamp>{timestamp}</TimeStamp><Nonce>{_cdata(nonce)}</Nonce></xml>"
        )

    async def _fetch_token(self) -> tuple[str, float]:
        cfg = self.config.wecom
        if not (cfg.corp_secret and cfg.agent_id):
            raise ChannelError(
                "wecom: sending needs AUTOREPLY_CHANNELS__WECOM__CORP_SECRET and "
                "AUTOREPLY_CHANNELS__WECOM__AGENT_ID"
            )
        resp = await self.call(
            "GET",
            f"{cfg.api_base}/gettoken",
            label="gettoken",
            params={"corpid": cfg.corp_id, "corpsecret": cfg.corp_secret},
        )
        data = response_json(resp, self.name, "gettoken")
        if data.get("errcode", 0) != 0 or not data.get("access_token"):
            raise ChannelError(f"wecom: gettoken refused: {data.get('errmsg', data)}")
        return str(data["access_token"]), float(data.get("expires_in", 7200))

    async def send(self, *, conversation_id: str, user_id: str, text: str) -> None:
        (user,) = split_address(conversation_id, self.name, 1)
        cfg = self.config.wecom
        try:
            agent_id: int | str = int(cfg.agent_id)
        except ValueError:
            agent_id = cfg.agent_id
        payload = {
            "touser": user,
            "msgtype": "text",
            "agentid": agent_id,
            "text": {"content": text},
        }
        for attempt in range(2):  # a second time only if the cached token had expired
            token = await self.token.get()
            resp = await self.call(
                "POST",
                f"{cfg.api_base}/message/send",
                label="message/send",
                params={"access_token": token},
                json=payload,
            )
            data = response_json(resp, self.name, "message/send")
            code = data.get("errcode", 0)
            if code == 0:
                return
            if code in TOKEN_EXPIRED and attempt == 0:
                self.token.invalidate()
                continue
            raise ChannelError(f"wecom: message/send refused ({code}): {data.get('errmsg')}")
