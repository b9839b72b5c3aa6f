"""The product pages: FAQ gap topics (counts, an 8-week sparkline, examples, the suggested
entry to accept or dismiss) and the weekly report (week picker, charts, downloads).

The same data as ``/v1/insights``: listing topics clusters new gaps first, and the report
is ``autoreply.weekly_data.weekly_report`` rendered by ``autoreply.weekly_render`` (the
HTML report is shown in a frame exactly as downloaded). Accepting a topic is ``autoreply gaps
accept`` (autoreply.faqchange) from a review form where an admin edits the entry, picks its
variants and sees the check's verdict before saving; then the index reloads.
"""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from autoreply.console import editing
from autoreply.console.i18n import Translator, pick_language
from autoreply.console.render import field, page, read_form, redirect, render, secure, spark_points
from autoreply.console.render import state_of as _state
from autoreply.console.sessions import SessionDep
from autoreply.errors import AutoreplyError, ConfigError
from autoreply.faqchange import Draft, Verdict, core_variants
from autoreply.gap_suggestions import Suggestion, suggest
from autoreply.store import TopicKind, TopicStatus
from autoreply.web.batching import in_own_thread
from autoreply.web.state import ServiceState
from autoreply.weekly_data import Week, WeeklyReport, parse_week, week_of, weekly_report
from autoreply.weekly_render import to_csv, to_html, to_markdown

router = APIRouter(prefix="/console", include_in_schema=False)
WEEKS = 8


def _update(state: ServiceState) -> None:
    state.bot.update_gap_topics()


def weekly_counts(created: list[datetime], *, now: datetime, weeks: int = WEEKS) -> list[int]:
    """Gaps per 7-day window ending now, oldest first."""
    counts = [0] * weeks
    for when in created:
        age = (now - when).days // 7
        if 0 <= age < weeks:
            counts[weeks - 1 - age] += 1
    return counts


@router.get("/gaps")
@page
async def gaps_page(request: Request, session: SessionDep, status: str = "open") -> Response:
    state = _state(request)
    async with state.admin_lock:
        await in_own_thread(lambda: _update(state), name="autoreply-topics")
    wanted = TopicStatus(status) if status in TopicStatus.__members__.values() else None
    store, kb = state.bot.store, state.bot.kb
    now = datetime.now(UTC)
    topics: list[dict[str, Any]] = []
    for topic in store.gap_topics(status=wanted)[:50]:
        gaps = store.topic_gaps(topic_id=topic.id)
        counts = weekly_counts([g.created_at for g in gaps], now=now)
        topics.append(
            {
                "topic": topic,
                "counts": counts,
                "spark": spark_points(counts),
                "examples": list(dict.fromkeys(g.question for g in gaps))[:5],
                "suggestion": suggest(store, topic, kb=kb),
            }
        )
    return render(
        request,
        "gaps.html",
        session=session,
        topics=topics,
        status=status,
        statuses=["open", "accepted", "dismissed", "all"],
        targets=editing.target_names(state.bot),
    )


def _edits(form: Any) -> dict[str, Any]:
    """A person's edits of a draft: the texts, the ticked (and edited) suggested variants,
    and the ones they added, one per line."""
    ticked = [
        field(form, f"variant_{i}")
        for i in range(int(field(form, "variant_count") or 0))
        if field(form, f"use_{i}") == "on"
    ]
    added = [line.strip() for line in field(form, "more_variants").splitlines()]
    return {
        "question": field(form, "question"),
        "answer": field(form, "answer"),
        "category": field(form, "category"),
        "variants": [v for v in [*ticked, *added] if v.strip()],
    }


@router.get("/gaps/{topic_id}/review")
@page
async def review_page(request: Request, topic_id: int, session: SessionDep) -> Response:
    """The accept form: the draft, editable, variants ticked only where they ask what the
    question asks."""
    state = _state(request)
    bot = state.bot
    topic = bot.store.get_gap_topic(topic_id)
    draft = suggest(bot.store, topic, kb=bot.kb)
    ticks = await in_own_thread(
        lambda: core_variants(draft, bot.engine.index), name="autoreply-console"
    )
    form = {
        "question": draft.question,
        "answer": draft.answer,
        "category": draft.category,
        "variants": list(zip(draft.variants, ticks, strict=True)),
        "more_variants": "",
        "into": "",
    }
    return _review(request, session, topic_id, draft, form, None, None)


def _review(
    request: Request,
    session: Any,
    topic_id: int,
    draft: Suggestion,
    form: dict[str, Any],
    verdict: Verdict | None,
    target: Draft | None,
) -> Response:
    state = _state(request)
    kb = state.bot.kb
    near = (
        kb.get(draft.entry_id)
        if draft.kind is TopicKind.NEAR_MISS and draft.entry_id in kb
        else None
    )
    return render(
        request,
        "review.html",
        session=session,
        near_file=Path((near.source or "").rsplit(":", 1)[0]).name if near else "",
        topic=state.bot.store.get_gap_topic(topic_id),
        draft=draft,
        form=form,
        verdict=verdict,
        target=target,
        targets=editing.target_names(state.bot),
    )


@router.post("/gaps/{topic_id}/review")
@page
async def review_action(request: Request, topic_id: int, session: SessionDep) -> Response:
    """``do=check``: show the verdict on the edited entry; ``do=save``: write it if the
    verdict allows (warnings only with 'save despite warnings')."""
    form = await read_form(request, session)
    t = Translator(pick_language(request))
    state = _state(request)
    back = f"/console/gaps/{topic_id}/review"
    if not session.is_admin:
        session.flash("error", t("admin_only"))
        return redirect(back)
    edits = _edits(form)
    by = session.agent or ""
    draft = suggest(state.bot.store, state.bot.store.get_gap_topic(topic_id), kb=state.bot.kb)
    shown = {
        "question": edits["question"],
        "answer": edits["answer"],
        "category": edits["category"],
        "variants": [
            (field(form, f"variant_{i}"), field(form, f"use_{i}") == "on")
            for i in range(int(field(form, "variant_count") or 0))
        ],
        "more_variants": field(form, "more_variants"),
        "into": field(form, "into"),
    }
    try:
        into = editing.pick_target(state.bot, field(form, "into")) if field(form, "into") else None
        async with state.admin_lock:
            target = await in_own_thread(
                lambda: editing.topic_draft(state.bot, topic_id, into=into, edits=edits, by=by),
                name="autoreply-console",
            )
            verdict = await in_own_thread(
                lambda: editing.check(state.bot, target), name="autoreply-console"
            )
            if field(form, "do") != "save" or verdict.refusal(force=field(form, "force") == "on"):
                return _review(request, session, topic_id, draft, shown, verdict, target)
            _, count = await in_own_thread(
                lambda: editing.commit(
                    state.bot, target, action="accept", by=by, force=field(form, "force") == "on"
                ),
                name="autoreply-reload",
            )
    except AutoreplyError as exc:
        session.flash("error", str(exc))
        return _review(request, session, topic_id, draft, shown, None, None)
    name = target.path.name
    session.flash("ok", t("accepted_ok", entry=target.entry.id, file=name, entries=count))
    return redirect("/console/gaps")


@router.post("/gaps/{topic_id}/dismiss")
@page
async def dismiss_topic(request: Request, topic_id: int, session: SessionDep) -> Response:
    await read_form(request, session)
    t = Translator(pick_language(request))
    state = _state(request)
    if not session.is_admin:
        session.flash("error", t("admin_only"))
        return redirect("/console/gaps")
    try:
        state.bot.store.set_gap_topic_status(topic_id, TopicStatus.DISMISSED)
        session.flash("ok", t("dismissed_ok"))
    except AutoreplyError as exc:
        session.flash("error", str(exc))
    return redirect("/console/gaps")


# -- the weekly report -----------------------------------------------------------------------


def _week(state: ServiceState, week: str) -> Week:
    tz = state.settings.hours.timezone
    return parse_week(week, tz=tz) if week.strip() else week_of(datetime.now(UTC), tz=tz)


async def _report(state: ServiceState, week: Week) -> WeeklyReport:
    def build() -> WeeklyReport:
        _update(state)
        return weekly_report(state.bot.store, week, kb=state.bot.kb)

    async with state.admin_lock:
        return await in_own_thread(build, name="autoreply-report")


def _neighbour(week: Week, days: int, tz: str) -> str:
    return week_of(week.start + timedelta(days=days), tz=tz).label


@router.get("/report")
@page
async def report_page(request: Request, session: SessionDep, week: str = "") -> Response:
    state = _state(request)
    try:
        period = _week(state, week)
    except ConfigError as exc:
        session.flash("error", str(exc))
        period = _week(state, "")
    data = await _report(state, period)
    tz = state.settings.hours.timezone
    return render(
        request,
        "report.html",
        session=session,
        report=data,
        week=period.label,
        previous=_neighbour(period, -7, tz),
        next=_neighbour(period, 7, tz),
    )


@router.get("/report/download")
@page
async def report_download(
    request: Request, session: SessionDep, week: str = "", format: str = "html"
) -> Response:
    """The report as a file: ``html`` (inline also shown in the report page's frame),
    ``md`` or ``csv`` (a zip of one CSV per table)."""
    state = _state(request)
    try:
        period = _week(state, week)
    except ConfigError as exc:
        return secure(Response(str(exc), status_code=422, media_type="text/plain"))
    data = await _report(state, period)
    stem = f"weekly-{period.label}"
    inline = request.query_params.get("inline") == "1"
    if format == "md":
        body, media, name = to_markdown(data).encode(), "text/markdown; charset=utf-8", "md"
    elif format == "csv":
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for file, text in to_csv(data).items():
                archive.writestr(f"{stem}/{file}", text.encode("utf-8"))
        body, media, name = buffer.getvalue(), "application/zip", "zip"
    else:
        response = HTMLResponse(to_html(data))
        if not inline:
            response.headers["Content-Disposition"] = f'attachment; filename="{stem}.html"'
        return secure(response)
    return secure(
        Response(
            body,
            media_type=media,
            headers={"Content-Disposition": f'attachment; filename="{stem}.{name}"'},
        )
    )
