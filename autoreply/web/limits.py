"""Request limits: body size (413) and token-bucket rate limits per IP and per user (429).

``BodyLimit`` is ASGI middleware: a declared ``Content-Length`` over the limit is refused
before reading; a body without one (chunked) is read up to the limit and refused the moment
it goes over, so neither way lets a large body reach the app. ``IpRateLimit`` is ASGI
middleware too; the per-user bucket is checked where the user id is known
(``ServiceState.handle``). Buckets are in memory, per process.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from autoreply.web.errors import RateLimited, error_body
from autoreply.web.prometheus import Metrics

UPLOAD_PATHS = ("/v1/admin/knowledge",)
UPLOAD_MAX_BYTES = 16 * 1024 * 1024
"""Knowledge file uploads may be larger than messages: up to 16 MiB."""
EXEMPT_PREFIXES = ("/healthz", "/readyz", "/metrics", "/channels/")
"""Not limited per IP: probes and scrapers, and chat platforms (one IP sends for all users;
their messages are limited per user instead)."""


class TokenBuckets:
    """One token bucket per key: ``rate`` tokens a second, at most ``burst`` saved up.

    A bucket that has filled up again is dropped (one that is missing counts as full), so
    memory holds only the keys still refilling (at most ``burst / rate`` seconds after their
    last request), and never more than the ``max_keys`` most recently used.
    """

    def __init__(
        self,
        *,
        rate: float,
        burst: int,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Take one token: 0.0 if allowed, else the seconds until one is available."""
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.pop(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / self.rate
            self._buckets[key] = (tokens, now)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
            # Least recently used first: drop up to two buckets from the front that are full
            # again. Each call adds at most one, so the dict shrinks to the keys in use.
            for _ in range(2):
                oldest, (saved, at) = next(iter(self._buckets.items()))
                if oldest == key or saved + (now - at) * self.rate < self.burst:
                    break
                del self._buckets[oldest]
        return wait

    def __len__(self) -> int:
        """How many buckets are held (the keys not full)."""
        return len(self._buckets)

    def check(self, key: str, *, what: str) -> None:
        """Raise RateLimited (429 with Retry-After) when ``key`` has no token left."""
        wait = self.take(key)
        if wait > 0:
            raise RateLimited(
                f"too many requests for {what} (limit {self.rate:g}/s, burst {self.burst}); "
                f"retry in {wait:.1f}s",
                retry_after=wait,
            )


async def _send_error(send: Send, status: int, body: dict[str, object], **headers: str) -> None:
    raw = json.dumps(body, ensure_ascii=False).encode("utf-8")
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    head += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": raw})


class BodyLimit:
    """413 for request bodies over ``max_bytes`` (``UPLOAD_MAX_BYTES`` on upload routes)."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = UPLOAD_MAX_BYTES if scope["path"] in UPLOAD_PATHS else self.max_bytes
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(send, limit, declared.decode("latin-1"))
            return
        # Read the whole body here (it is small by definition) and replay it to the app.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:
                await self._refuse(send, limit, f"more than {limit}")
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(send: Send, limit: int, size: str) -> None:
        message = (
            f"the request body is too large ({size} bytes; the limit is {limit}); "
            "send less, e.g. split the text"
        )
        await _send_error(send, 413, error_body("too_large", message, limit=limit))


class IpRateLimit:
    """429 with Retry-After when one client IP sends faster than its bucket allows."""

    def __init__(self, app: ASGIApp, *, buckets: TokenBuckets, metrics: Metrics) -> None:
        self.app = app
        self.buckets = buckets
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(EXEMPT_PREFIXES):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        ip = client[0] if client else "unknown"
        try:
            self.buckets.check(ip, what=f"IP {ip}")
        except RateLimited as exc:
            self.metrics.rate_limited.labels("ip").inc()
            body = error_body(exc.type, str(exc), **exc.extra)
            await _send_error(send, 429, body, **exc.headers())
            return
        await self.app(scope, receive, send)
