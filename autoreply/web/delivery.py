"""The app's chat channels: mounting their inbound routes, delivering agent replies, and
telling a channel about handoffs and resolutions.

The adapters live in ``autoreply.channels`` (``build_channels`` gives the enabled ones,
``"generic"`` always among them). It is imported lazily: without it the service still runs,
and agent replies wait in the conversation for ``GET /v1/conversations/{id}`` (status
``poll``). Each delivery is recorded in the store with its outcome.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

import httpx
from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.routing import BaseRoute

from autoreply import csat
from autoreply.channels.config import ChannelsConfig
from autoreply.errors import AutoreplyError
from autoreply.models import Message, Reply, StoredMessage, Ticket
from autoreply.store import Delivery, DeliveryStatus, Store
from autoreply.web.prometheus import Metrics

if TYPE_CHECKING:
    from autoreply.channels.base import Channel

log = logging.getLogger("autoreply.api")

Handler = Callable[[Message], Awaitable[Reply]]
SHUTDOWN_GRACE_SECONDS = 10.0
"""How long shutdown waits for handoff and resolve notices still being sent."""


class Channels:
    """The enabled channels of one running app and the HTTP client they share."""

    def __init__(self, config: ChannelsConfig, *, store: Store, metrics: Metrics) -> None:
        self.config = config
        self.store = store
        self.metrics = metrics
        self.channels: dict[str, Channel] = {}
        self.http: httpx.AsyncClient | None = None
        self._routes: list[BaseRoute] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, app: FastAPI, handle: Handler) -> None:
        """Build the enabled channels and mount their routes under ``/channels/{name}``."""
        self.http = httpx.AsyncClient(timeout=self.config.timeout_seconds)
        try:
            from autoreply.channels.registry import build_channels
        except ImportError as exc:
            log.warning(
                "chat channels unavailable (%s); agent replies wait in the conversation", exc
            )
            return
        self.channels = build_channels(self.config, self.http)
        for name, channel in self.channels.items():
            before = len(app.router.routes)
            app.include_router(channel.router(handle), prefix=f"/channels/{name}")
            self._routes += app.router.routes[before:]
        app.openapi_schema = None
        log.info("channels mounted", extra={"channels": sorted(self.channels)})

    async def close(self, app: FastAPI) -> None:
        """Unmount the routes, let pending notices finish (briefly), close the client."""
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=SHUTDOWN_GRACE_SECONDS)
        for route in self._routes:
            if route in app.router.routes:
                app.router.routes.remove(route)
        self._routes.clear()
        app.openapi_schema = None
        if self.http is not None:
            await self.http.aclose()

    def channel_for(self, name: str) -> Channel | None:
        """The adapter that reaches conversations from ``name`` (generic for the API)."""
        return self.channels.get(name) or self.channels.get("generic")

    async def deliver(self, ticket: Ticket, message: StoredMessage) -> Delivery:
        """Send an agent's reply through the conversation's channel and record how it went."""
        channel = self.channel_for(ticket.channel)
        name = channel.name if channel is not None else ticket.channel
        status, error = DeliveryStatus.SENT, None
        if channel is None or (name == "generic" and not self.config.generic.callback_url):
            status = DeliveryStatus.POLL
        else:
            try:
                await channel.send(
                    conversation_id=ticket.conversation_id,
                    user_id=ticket.user_id,
                    text=message.text,
                )
            except (AutoreplyError, httpx.HTTPError) as exc:
                status, error = DeliveryStatus.FAILED, str(exc) or type(exc).__name__
                log.warning(
                    "delivery failed",
                    extra={"ticket_id": ticket.id, "channel": name, "problem": error},
                )
        self.metrics.deliveries.labels(name, status.value).inc()
        return await run_in_threadpool(
            lambda: self.store.add_delivery(
                message_id=message.id, channel=name, status=status, error=error
            )
        )

    def announces_handoff(self, channel: str) -> bool:
        """Whether the adapter for ``channel`` tells its platform about new tickets: it
        overrides ``Channel.handoff`` (whose default does nothing). Only then does the
        service read a new ticket back from the store to pass it."""
        from autoreply.channels.base import Channel

        adapter = self.channel_for(channel)
        handoff = getattr(type(adapter), "handoff", None)
        return adapter is not None and handoff is not None and handoff is not Channel.handoff

    def handoff(self, ticket: Ticket) -> None:
        """Tell the conversation's channel a ticket was opened (in the background)."""
        if (channel := self.channel_for(ticket.channel)) is not None:
            self._spawn(channel.handoff(ticket), "handoff", ticket)

    def resolved(self, ticket: Ticket) -> None:
        """Tell the conversation's channel the ticket was resolved, then send the customer
        the rating question the bot asked on resolve (in the background)."""
        if (channel := self.channel_for(ticket.channel)) is not None:
            self._spawn(self._resolved(channel, ticket), "resolved", ticket)

    async def _resolved(self, channel: Channel, ticket: Ticket) -> None:
        await channel.resolved(ticket)
        # The question resolve() stored; the customer may have written since.
        recent = await run_in_threadpool(self.store.history, ticket.conversation_id, limit=5)
        asked = [m for m in recent if (m.details or {}).get(csat.KEY) == ticket.id]
        if asked:
            await self.deliver(ticket, asked[-1])

    def _spawn(self, coro: Coroutine[Any, Any, None], what: str, ticket: Ticket) -> None:
        async def run() -> None:
            try:
                await coro
            except Exception:
                log.exception(
                    "%s notice failed", what, extra={"ticket_id": ticket.id, "what": what}
                )

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settle(self) -> None:
        """Wait for the background notices started so far (tests)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))
