"""The channel contract, and what every adapter shares.

A ``Channel`` turns a platform's inbound request into a ``Message``, calls ``handle`` (the app
wires it to the bot) and delivers the ``Reply`` on the platform: in the HTTP response where the
platform allows it (WeCom, DingTalk), otherwise through the platform's send API. ``send`` delivers
an agent's reply later; the platform address is encoded in the conversation id
(``"telegram:12345"``, ``"slack:T1:C2"``, ...).

Shared here: 401 rejections with a log line (logger ``autoreply.channels``, fields ``channel``,
``reason``, ``remote_ip``), outbound requests with timeouts and retries (5xx, 429, timeouts and
network errors back off and retry; other 4xx never retry), dedupe of platform retries
(``SeenIds``) and cached access tokens (``CachedToken``).

Errors: ``ChannelError(AutoreplyError)``: a reply could not be delivered, or a channel is
misconfigured. ``send``, ``handoff`` and ``resolved`` raise it; inbound handlers never do (they
answer 400/401 or log).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

import httpx
from fastapi import APIRouter, HTTPException, Request
from pydantic import ValidationError

from autoreply.channels.config import ChannelsConfig
from autoreply.errors import AutoreplyError
from autoreply.models import Message, Reply, Ticket

log = logging.getLogger("autoreply.channels")

Handler = Callable[[Message], Awaitable[Reply]]
"""Answers one customer message (the app wires it to the bot)."""

MAX_RETRY_WAIT = 60.0
"""A ``Retry-After`` longer than this is cut to it: sends run in background tasks."""


class ChannelError(AutoreplyError):
    """A message could not be delivered to a platform, or a channel is misconfigured."""


class Rejected(HTTPException):
    """401 for a request that cannot prove who sent it. ``kind`` is machine-readable and
    stable, and the app renders it as the error type: ``missing_signature``,
    ``bad_signature``, ``stale_timestamp``, ``malformed_timestamp``, ``missing_token``,
    ``bad_token``, ``not_encrypted``, ``cannot_decrypt``."""

    def __init__(self, channel: str, kind: str, reason: str) -> None:
        super().__init__(401, f"{channel}: {reason}")
        self.kind = kind


def same(given: str | None, expected: str) -> bool:
    """Constant-time string comparison; a missing or empty value never matches."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8"))


def parse_json(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or 400 with the reason."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise HTTPException(400, f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise HTTPException(400, "request body must be a JSON object")
    return data


def obj(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one (for optional nested fields)."""
    return value if isinstance(value, dict) else {}


def response_json(resp: httpx.Response, channel: str, label: str) -> dict[str, Any]:
    """A platform API response's JSON object, or ``ChannelError``."""
    try:
        data = resp.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise ChannelError(f"{channel}: {label} answered with something other than a JSON object")
    return data


def build_message(**fields: Any) -> Message:
    """A ``Message`` from platform fields, or 400 naming the field that does not fit."""
    try:
        return Message(**fields)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise HTTPException(400, f"message cannot be accepted: {problems}") from None


def reject(request: Request, channel: str, kind: str, reason: str) -> Rejected:
    """Log a refused request and build its 401 for ``channel`` (raise the result)."""
    ip = request.client.host if request.client else None
    log.warning(
        "%s: request rejected (%s: %s) from %s",
        channel,
        kind,
        reason,
        ip,
        extra={"channel": channel, "reason": reason, "kind": kind, "remote_ip": ip},
    )
    return Rejected(channel, kind, reason)


def check_fresh(
    request: Request,
    channel: str,
    timestamp: str,
    max_skew_seconds: float,
    *,
    millis: bool = False,
) -> None:
    """Refuse (401) a signed request whose timestamp is malformed or further than
    ``max_skew_seconds`` from now: a correct signature on an old request is a replay."""
    try:
        sent = int(timestamp) / (1000 if millis else 1)
    except ValueError:
        raise reject(
            request, channel, "malformed_timestamp", f"malformed timestamp {timestamp[:20]!r}"
        ) from None
    skew = abs(time.time() - sent)
    if skew > max_skew_seconds:
        raise reject(
            request, channel, "stale_timestamp", f"timestamp {skew:.0f}s away from now (replay?)"
        )


def split_address(conversation_id: str, channel: str, parts: int) -> list[str]:
    """``"slack:T1:C2"`` → ``["T1", "C2"]``; the last part may itself contain colons."""
    prefix, _, rest = conversation_id.partition(":")
    fields = rest.split(":", parts - 1) if rest else []
    if prefix != channel or len(fields) != parts or not all(fields):
        raise ChannelError(
            f"conversation id {conversation_id!r} is not a {channel} address: "
            f"expected '{channel}:' followed by {parts} part(s) separated by ':'"
        )
    return fields


class SeenIds:
    """Ids seen in the last ``ttl`` seconds, at most ``max_size`` of them: platform retries."""

    def __init__(self, *, ttl: float = 3600.0, max_size: int = 10_000) -> None:
        self.ttl = ttl
        self.max_size = max_size
        self._seen: OrderedDict[str, float] = OrderedDict()

    def add(self, key: str) -> bool:
        """Remember ``key``; False if it was already seen (a retry)."""
        now = time.monotonic()
        while self._seen:
            oldest, at = next(iter(self._seen.items()))
            if now - at <= self.ttl and len(self._seen) < self.max_size:
                break
            del self._seen[oldest]
        if key in self._seen:
            return False
        self._seen[key] = now
        return True


class CachedToken:
    """An access token fetched on demand and reused until shortly before it expires.

    ``fetch`` returns ``(token, lifetime_seconds)``.
    """

    def __init__(
        self, fetch: Callable[[], Awaitable[tuple[str, float]]], *, margin: float = 120.0
    ) -> None:
        self._fetch = fetch
        self._margin = margin
        self._token = ""
        self._expires = 0.0
        self._lock: asyncio.Lock | None = None

    async def get(self) -> str:
        if self._token and time.monotonic() < self._expires:
            return self._token
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # one refresh for many concurrent senders
            if not self._token or time.monotonic() >= self._expires:
                token, lifetime = await self._fetch()
                self._token = token
                self._expires = time.monotonic() + max(lifetime - self._margin, lifetime / 2)
        return self._token

    def invalidate(self) -> None:
        """Forget the token (the platform said it expired); the next ``get`` fetches anew."""
        self._token = ""


class Channel(ABC):
    """One chat platform. Subclasses set ``name`` and implement the abstract methods."""

    name: ClassVar[str]

    def __init__(self, config: ChannelsConfig, http: httpx.AsyncClient) -> None:
        self.config = config
        self.http = http

    @classmethod
    @abstractmethod
    def enabled(cls, config: ChannelsConfig) -> bool:
        """True when the channel's secrets are set (a disabled channel is not mounted)."""

    @abstractmethod
    def router(self, handle: Handler) -> APIRouter:
        """Inbound routes; the server mounts them under ``/channels/{name}``."""

    @abstractmethod
    async def send(self, *, conversation_id: str, user_id: str, text: str) -> None:
        """Deliver an agent's reply to the conversation. Raises ``ChannelError``."""

    async def handoff(self, ticket: Ticket) -> None:
        """A ticket was opened for one of this channel's conversations (default: nothing)."""
        return None

    async def resolved(self, ticket: Ticket) -> None:
        """An agent resolved the ticket; the conversation is the bot's again (default: nothing)."""
        return None

    # -- for subclasses -------------------------------------------------------------------
    def reject(self, request: Request, kind: str, reason: str) -> Rejected:
        """Log a refused request and build its 401 (raise the result). ``kind`` is the error
        type the caller sees: ``missing_signature``, ``bad_signature``, ``stale_timestamp``,
        ``malformed_timestamp``, ``missing_token``, ``bad_token``, ``not_encrypted``,
        ``cannot_decrypt``."""
        return reject(request, self.name, kind, reason)

    def check_fresh(
        self, request: Request, timestamp: str, max_skew_seconds: float, *, millis: bool = False
    ) -> None:
        """Refuse (401) a signed request whose timestamp is missing, malformed or further than
        ``max_skew_seconds`` from now: a correct signature on an old request is a replay."""
        check_fresh(request, self.name, timestamp, max_skew_seconds, millis=millis)

    async def reply_later(
        self, handle: Handler, message: Message, deliver: Callable[[str], Awaitable[None]]
    ) -> None:
        """Answer ``message`` and deliver the reply; run as a background task, so never raises.

        A duplicate (the bot saw this message id before) was delivered the first time.
        """
        try:
            reply = await handle(message)
            if reply.duplicate:
                log.info(
                    "%s: duplicate message %s not answered again",
                    self.name,
                    message.message_id,
                    extra={"channel": self.name, "message_id": message.message_id},
                )
                return
            if not reply.text.strip():
                # Every platform refuses an empty message; there is nothing to show.
                log.info("%s: empty reply not sent", self.name, extra={"channel": self.name})
                return
            await deliver(reply.text)
        except Exception:
            log.exception(
                "%s: could not answer message %s",
                self.name,
                message.message_id,
                extra={"channel": self.name, "message_id": message.message_id},
            )

    async def call(
        self, method: str, url: str, *, label: str, accept_4xx: bool = False, **kwargs: Any
    ) -> httpx.Response:
        """One platform API request with the configured timeout and retries.

        Retries (``config.retries`` times, exponential backoff from ``config.backoff_seconds``,
        or the server's ``Retry-After``) on 5xx, 429, timeouts and network errors; any other 4xx
        raises at once, or is returned with ``accept_4xx`` (for APIs that explain errors in the
        body). ``label`` names the call in logs and errors (URLs may carry tokens).
        """
        attempts = 1 + max(0, self.config.retries)
        problem = ""
        for attempt in range(attempts):
            wait = min(self.config.backoff_seconds * 2**attempt, MAX_RETRY_WAIT)
            try:
                resp = await self.http.request(
                    method, url, timeout=self.config.timeout_seconds, **kwargs
                )
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                problem = type(exc).__name__
            except httpx.HTTPError as exc:
                raise ChannelError(f"{self.name}: {label} failed: {exc}") from exc
            else:
                status = resp.status_code
                if status < 400 or (accept_4xx and status < 500 and status != 429):
                    return resp
                if status != 429 and status < 500:
                    raise ChannelError(
                        f"{self.name}: {label} was refused with HTTP {status}: {resp.text[:300]}"
                    )
                problem = f"HTTP {status}"
                wait = _retry_after(resp) or wait
            if attempt + 1 < attempts:
                log.warning(
                    "%s: %s failed (%s), retry %d of %d in %.1fs",
                    self.name,
                    label,
                    problem,
                    attempt + 1,
                    attempts - 1,
                    wait,
                    extra={"channel": self.name, "call": label, "problem": problem},
                )
                await asyncio.sleep(wait)
        raise ChannelError(f"{self.name}: {label} failed after {attempts} attempt(s): {problem}")


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_WAIT)
