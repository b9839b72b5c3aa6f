"""The generic channel: agent replies POSTed to your callback URL, signed with HMAC-SHA256.

Inbound messages arrive on the app's own ``POST /v1/messages``, so this channel has no routes.
With ``AUTOREPLY_CHANNELS__GENERIC__WEBHOOK_SECRET`` set, every inbound request must be signed
(``sign_request``): ``X-Autoreply-Timestamp`` (unix seconds) and ``X-Autoreply-Signature:
sha256=<hex HMAC-SHA256 of "<timestamp>." + raw body>``; only signed requests may claim VIP,
priority or a customer identity.
When an agent replies later, ``send`` POSTs to ``AUTOREPLY_CHANNELS__GENERIC__CALLBACK_URL``::

    POST <callback_url>
    Content-Type: application/json
    X-Autoreply-Timestamp: 1718000000
    X-Autoreply-Signature: sha256=<hex HMAC-SHA256 of the raw body, key = callback_secret>

    {"conversation_id": "...", "user_id": "...", "text": "...", "sent_at": "2024-06-10T06:13:20Z"}

A receiver checks the signature over the exact bytes it received, before parsing them::

    from autoreply.channels.generic import verify_callback_signature
    if not verify_callback_signature(raw_body, request.headers.get("X-Autoreply-Signature"),
                                     secret, max_age=300):
        return 401

``sent_at`` is inside the signed body, so a receiver can refuse stale replays (``max_age``).
Without a callback URL, ``send`` does nothing: poll ``GET /v1/conversations/{id}`` instead.
Without a callback secret, callbacks go out unsigned (no signature header).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import UTC, datetime

from fastapi import APIRouter

from autoreply.channels.base import Channel, Handler, log
from autoreply.channels.config import ChannelsConfig

SIGNATURE_HEADER = "X-Autoreply-Signature"
TIMESTAMP_HEADER = "X-Autoreply-Timestamp"


def sign_callback(body: bytes, secret: str) -> str:
    """The ``X-Autoreply-Signature`` value for ``body``: ``sha256=<hex>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_callback_signature(
    body: bytes, header: str | None, secret: str, *, max_age: float | None = None
) -> bool:
    """True if ``header`` is the HMAC-SHA256 signature of ``body`` under ``secret``.

    Compares in constant time. With ``max_age`` (seconds), the body's ``sent_at`` must also be
    at most that old (and not in the future by more than it), which refuses replayed callbacks.
    """
    if not header or not secret:
        return False
    expected = sign_callback(body, secret)
    if not hmac.compare_digest(header.strip().encode("utf-8", "replace"), expected.encode()):
        return False
    if max_age is None:
        return True
    try:
        sent_at = datetime.fromisoformat(json.loads(body)["sent_at"])
    except (ValueError, KeyError, TypeError):
        return False
    if sent_at.tzinfo is None:
        return False
    return abs(time.time() - sent_at.timestamp()) <= max_age


def sign_request(body: bytes, secret: str, timestamp: int | str) -> str:
    """The ``X-Autoreply-Signature`` value a sender puts on a ``POST /v1/messages`` request:
    ``sha256=<hex>`` over ``"<timestamp>."`` followed by the exact body bytes."""
    signed = str(timestamp).encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


class GenericChannel(Channel):
    """Replies to ``/v1/messages`` conversations, delivered to a callback URL if one is set."""

    name = "generic"

    @classmethod
    def enabled(cls, config: ChannelsConfig) -> bool:
        return True  # always on: its inbound is the app's /v1/messages

    def router(self, handle: Handler) -> APIRouter:
        return APIRouter()

    async def send(self, *, conversation_id: str, user_id: str, text: str) -> None:
        cfg = self.config.generic
        if not cfg.callback_url:
            log.debug("generic: no callback URL; reply kept for polling")
            return
        now = datetime.now(UTC).replace(microsecond=0)
        payload = {
            "conversation_id": conversation_id,
            "user_id": user_id,
            "text": text,
            "sent_at": now.isoformat().replace("+00:00", "Z"),
        }
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(int(now.timestamp())),
        }
        if cfg.callback_secret:
            headers[SIGNATURE_HEADER] = sign_callback(body, cfg.callback_secret)
        await self.call("POST", cfg.callback_url, label="callback", content=body, headers=headers)
