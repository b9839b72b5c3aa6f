"""Insight routes (any agent token): gap topics, suggested FAQ entries, the weekly report.

The same data as ``autoreply gaps topics``, ``gaps suggest`` and ``autoreply report``, read
from the service's store. Listing topics first clusters the gaps logged since the last run
(``update=false`` skips that); clustering and report building run off the event loop.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from pydantic import BaseModel

from autoreply.api.auth import AgentDep
from autoreply.errors import ConfigError
from autoreply.gap_suggestions import Suggestion, suggest
from autoreply.store import GapTopic, TopicKind, TopicStatus
from autoreply.web.batching import in_own_thread
from autoreply.web.errors import ERROR_RESPONSES, Invalid
from autoreply.web.state import ServiceState, StateDep
from autoreply.weekly_data import WeeklyReport, parse_week, week_of, weekly_report
from autoreply.weekly_render import render

router = APIRouter(
    prefix="/v1/insights",
    tags=["insights"],
    responses={k: ERROR_RESPONSES[k] for k in (401, 403, 404, 422, 429)},
)


class TopicView(BaseModel):
    """A gap topic as the API shows it (no centroid)."""

    id: int
    kind: TopicKind
    status: TopicStatus
    size: int
    representative: str
    keywords: list[str]
    category: str | None
    entry_id: str | None
    first_seen: datetime
    last_seen: datetime

    @classmethod
    def of(cls, topic: GapTopic) -> TopicView:
        return cls.model_validate(topic.model_dump(exclude={"centroid", "encoder", "updated_at"}))


class TopicDetail(BaseModel):
    topic: TopicView
    suggestion: Suggestion
    examples: list[str]
    """The topic's most recent distinct questions (redacted when logged)."""


class ReportFormat(StrEnum):
    JSON = "json"
    MD = "md"
    HTML = "html"


def _update(state: ServiceState) -> None:
    state.bot.update_gap_topics()


@router.get("/gaps", response_model=list[TopicView], summary="Gap topics, largest first")
async def gap_topics(
    agent: AgentDep,
    state: StateDep,
    status: Annotated[TopicStatus | None, Query(description="Only topics in this status.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    update: Annotated[
        bool, Query(description="Cluster the gaps logged since the last run first.")
    ] = True,
) -> list[TopicView]:
    """The FAQ gap topics: what customers ask that the FAQ does not answer (kind ``new``) or
    nearly answers (``near_miss``, with the entry that needs more variants)."""
    if update:
        async with state.admin_lock:
            await in_own_thread(lambda: _update(state), name="autoreply-topics")
    topics = state.bot.store.gap_topics(status=status)
    return [TopicView.of(t) for t in topics[:limit]]


@router.get("/gaps/{topic_id}", response_model=TopicDetail, summary="One topic and its draft")
async def gap_topic(topic_id: int, agent: AgentDep, state: StateDep) -> TopicDetail:
    """A topic with its suggested FAQ change and example questions (404 if unknown)."""
    store = state.bot.store
    topic = store.get_gap_topic(topic_id)
    draft = suggest(store, topic, kb=state.bot.kb)
    examples = list(dict.fromkeys(g.question for g in store.topic_gaps(topic_id=topic_id)))
    return TopicDetail(topic=TopicView.of(topic), suggestion=draft, examples=examples[:10])


@router.get("/report", summary="The weekly product report", response_model=WeeklyReport)
async def report(
    agent: AgentDep,
    state: StateDep,
    week: Annotated[
        str | None, Query(description="ISO week such as 2026-W47 [default: this week]")
    ] = None,
    format: Annotated[ReportFormat, Query(description="json, md or html")] = ReportFormat.JSON,
    top: Annotated[int, Query(ge=1, le=100)] = 10,
) -> Any:
    """Volumes, escalations by reason and category, gap topics with trends, hot issues,
    tickets, feedback, interceptions and FAQ suggestions for one week (Monday to Monday in
    the business-hours time zone). Gaps are clustered first."""
    tz = state.settings.hours.timezone
    try:
        period = parse_week(week, tz=tz) if week else week_of(datetime.now(UTC), tz=tz)
    except ConfigError as exc:
        raise Invalid(str(exc), errors=[{"field": "week", "problem": str(exc)}]) from exc

    def build() -> WeeklyReport:
        _update(state)
        return weekly_report(state.bot.store, period, kb=state.bot.kb, top=top)

    async with state.admin_lock:
        data = await in_own_thread(build, name="autoreply-report")
    if format is ReportFormat.MD:
        return PlainTextResponse(render(data, "md"), media_type="text/markdown; charset=utf-8")
    if format is ReportFormat.HTML:
        return HTMLResponse(render(data, "html"))
    return Response(data.model_dump_json(), media_type="application/json")
