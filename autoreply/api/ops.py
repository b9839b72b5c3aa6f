"""Operations: liveness, readiness and Prometheus metrics. No authentication, no rate limit.

``/healthz`` is 200 while the process serves requests. ``/readyz`` is 200 when the knowledge
index is loaded and the database answers, else 503 naming the failing check: point the load
balancer at it. ``/metrics`` is the Prometheus text format (see ``autoreply.web.prometheus``).
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from autoreply.api.schemas import Health
from autoreply.errors import AutoreplyError

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health, summary="The process is up")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    responses={503: {"model": Health, "description": "index or database not ready"}},
    summary="Ready to answer: index loaded, database reachable",
)
async def readyz(request: Request) -> Response:
    state = getattr(request.app.state, "service", None)
    checks: dict[str, str] = {}
    if state is None:
        checks["service"] = "starting"
    else:
        try:
            index = state.bot.engine.index
            checks["index"] = f"ok ({len(index.kb.enabled)} entries)"
        except AttributeError as exc:  # a bot without an engine is not ready
            checks["index"] = f"missing: {exc}"
        try:
            await asyncio.to_thread(state.bot.store.ping)
            checks["database"] = "ok"
        except AutoreplyError as exc:
            checks["database"] = f"unreachable: {exc}"
    ready = all(v.startswith("ok") for v in checks.values())
    body = Health(status="ready" if ready else "not ready", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    state = request.app.state.service
    try:
        counts = await asyncio.to_thread(state.bot.store.counts)
    except AutoreplyError:
        pass  # the queue gauge keeps its last value; /readyz reports the database
    else:
        state.metrics.set_queue(counts)
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
