"""``create_app()``: the FastAPI service, wired once.

The lifespan builds the bot (``AutoReply.from_settings``: knowledge, index, store), the
micro-batcher and the chat channels, and keeps them on ``app.state.service``; handlers reach
them through ``Depends`` (``autoreply.web.state``). A background task checks the store's
knowledge version every few seconds, so a reload on one replica reaches all of them.
Middleware, outermost first: request id, JSON log line and request metrics; per-IP rate
limit; body size limit.

    uvicorn server:app            # settings from AUTOREPLY_* / autoreply.toml
    autoreply serve --port 8000   # the same, with options
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI

import autoreply
from autoreply.api import admin, agents, customer, learning, ops, reports, satisfaction
from autoreply.api.docs import install_docs
from autoreply.console import router as console_router
from autoreply.encoder import Encoder
from autoreply.errors import AutoreplyError
from autoreply.models import Message, Reply
from autoreply.service import AutoReply
from autoreply.settings import Settings
from autoreply.web.batching import (
    MicroBatcher,
    blas_on_one_thread,
    in_own_thread,
    single_threaded_math,
)
from autoreply.web.delivery import Channels
from autoreply.web.errors import install_error_handlers
from autoreply.web.limits import BodyLimit, IpRateLimit, TokenBuckets
from autoreply.web.logs import RequestContext, configure_logging
from autoreply.web.memory import limit_malloc_arenas
from autoreply.web.prometheus import Metrics
from autoreply.web.state import ServiceState

log = logging.getLogger("autoreply.api")

KNOWLEDGE_POLL_SECONDS = 5.0
"""How often each replica checks whether another one reloaded the knowledge base."""

DESCRIPTION = """\
FAQ auto-reply for customer service: answers what it knows, hands the rest to a person.

* **customer**: `POST /v1/messages` returns the bot's reply; agent replies appear in
  `GET /v1/conversations/{id}`.
* **agents** (bearer token from `autoreply agents add NAME`): work the ticket queue.
* **admin** (admin token): reload or upload knowledge, review FAQ candidates, stats.
* **insights** (any agent token): FAQ gap topics, suggested entries, the weekly report.
* **operations**: `/healthz`, `/readyz`, `/metrics`.

Every error is `{"error": {"type": ..., "message": ...}}`.
"""


def create_app(
    settings: Settings | None = None,
    *,
    bot: AutoReply | None = None,
    encoder: Encoder | None = None,
    knowledge_poll_seconds: float | None = KNOWLEDGE_POLL_SECONDS,
) -> FastAPI:
    """The service app. ``settings`` default to the environment (``Settings()``); pass a
    ready ``bot`` to serve it (it is not closed at shutdown), or an ``encoder`` to build the
    bot with (tests pass ``HashingEncoder()``). Every ``knowledge_poll_seconds`` the app
    reloads if another replica did (``AutoReply.sync_knowledge``); None turns that off."""
    settings = settings or (bot.settings if bot is not None else Settings())
    limits = settings.server
    metrics = Metrics()
    ip_buckets = TokenBuckets(rate=limits.rate_per_ip, burst=limits.burst_per_ip)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        limit_malloc_arenas()  # before our threads start: memory stays flat (web/memory.py)
        with blas_on_one_thread():  # the whole process, put back at shutdown
            async with serving(app):
                yield

    @asynccontextmanager
    async def serving(app: FastAPI) -> AsyncIterator[None]:
        configure_logging()
        if bot is not None:
            served = bot
        else:
            served = await in_own_thread(
                lambda: AutoReply.from_settings(settings, encoder=encoder), name="autoreply-load"
            )

        def process(messages: Sequence[Message]) -> list[Reply | AutoreplyError]:
            return served.handle_many(messages, return_exceptions=True)

        def on_batch(size: int, seconds: float) -> None:
            metrics.batch_size.observe(size)
            metrics.batch_seconds.observe(seconds)

        batcher = MicroBatcher(
            process,
            window_ms=limits.batch_window_ms,
            max_batch=limits.max_batch,
            on_batch=on_batch,
            thread_setup=single_threaded_math,
        )
        channels = Channels(settings.channels, store=served.store, metrics=metrics)
        state = ServiceState(
            settings=settings,
            bot=served,
            metrics=metrics,
            batcher=batcher,
            channels=channels,
            user_buckets=TokenBuckets(rate=limits.rate_per_user, burst=limits.burst_per_user),
            ip_buckets=ip_buckets,
        )
        batcher.start()
        app.state.service = state
        follower = (
            None
            if knowledge_poll_seconds is None
            else asyncio.create_task(follow_reloads(state, every=knowledge_poll_seconds))
        )
        try:
            await channels.start(app, state.handle)
            yield
        finally:
            if follower is not None:
                follower.cancel()
                await asyncio.gather(follower, return_exceptions=True)
            await batcher.close()
            await channels.close(app)
            del app.state.service
            if bot is None:
                served.close()

    app = FastAPI(
        title="autoreply",
        version=autoreply.__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served offline by install_docs, not from a CDN
        redoc_url=None,
    )
    install_docs(app)
    install_error_handlers(app)
    for module in (customer, satisfaction, agents, admin, learning, reports, ops):
        app.include_router(module.router)
    app.include_router(console_router)  # the agent console and dashboard, under /console
    # add_middleware wraps: the last added runs first.
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)
    app.add_middleware(IpRateLimit, buckets=ip_buckets, metrics=metrics)
    app.add_middleware(RequestContext, metrics=metrics)
    return app


async def follow_reloads(state: ServiceState, *, every: float) -> None:
    """Forever: every ``every`` seconds, reload if the knowledge base was reloaded elsewhere.
    Runs under the admin lock, so it never overlaps this replica's own reload or upload; a
    failure is logged and tried again at the next version change, the old index serving."""
    while True:
        await asyncio.sleep(every)
        try:
            async with state.admin_lock:
                await in_own_thread(state.bot.sync_knowledge, name="autoreply-sync")
        except Exception as exc:  # keep following: the next bump may well load
            log.warning("knowledge sync failed", extra={"error": str(exc)})
