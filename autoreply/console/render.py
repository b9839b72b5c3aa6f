"""Rendering console pages: the Jinja2 environment, page context, errors as pages, SLA colours.

Templates are autoescaped (every ``{{ }}`` is HTML-escaped; nothing a customer or agent wrote
is ever marked ``|safe``) and undefined names fail loudly. Every console response gets a
strict Content-Security-Policy (scripts only from ``/console/static``), ``nosniff`` and
same-origin framing. ``@page`` turns a CSRF failure into a 403 page and a missing ticket,
entry or topic into a 404 page instead of the API's JSON.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ParamSpec
from zoneinfo import ZoneInfo

from fastapi import Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.datastructures import FormData

from autoreply.console.i18n import LANG_COOKIE, Lang, Translator, pick_language
from autoreply.console.sessions import CsrfFailed, Session, check_csrf, current_session
from autoreply.errors import KnowledgeError, NotFoundError
from autoreply.models import Ticket
from autoreply.web.state import ServiceState

HERE = Path(__file__).parent
SLA_MINUTES = {"vip": 5, "normal": 30}
"""First reply due this many minutes after a ticket opens."""

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; frame-ancestors 'self'; form-action 'self'; base-uri 'none'"
)

env = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
env.filters["tojson_pretty"] = lambda v: json.dumps(v, ensure_ascii=False, indent=2, default=str)


def state_of(request: Request) -> ServiceState:
    service: ServiceState = request.app.state.service
    return service


def secure(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def render(
    request: Request,
    template: str,
    *,
    session: Session | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """The page ``template`` in the request's language, with the nav and flashes."""
    lang = pick_language(request)
    t = Translator(lang)
    state = state_of(request)
    tz = ZoneInfo(state.settings.hours.timezone)

    def when(value: datetime | None) -> str:
        return value.astimezone(tz).strftime("%Y-%m-%d %H:%M") if value else ""

    switch = request.url.include_query_params(lang=(Lang.EN if lang is Lang.ZH else Lang.ZH).value)
    html = env.get_template(template).render(
        request=request,
        t=t,
        lang=lang.value,
        other_lang=(Lang.EN if lang is Lang.ZH else Lang.ZH).value,
        session=session,
        flashes=session.take_flashes() if session else [],
        when=when,
        path=request.url.path,
        switch_url=f"{switch.path}?{switch.query}",
        **context,
    )
    response = HTMLResponse(html, status_code=status_code)
    if request.query_params.get("lang") == lang.value:
        response.set_cookie(LANG_COOKIE, lang.value, samesite="lax", max_age=365 * 86400)
    return secure(response)  # type: ignore[return-value]


def redirect(url: str) -> RedirectResponse:
    """After a POST: 303 so the browser GETs the page (no resubmission on reload)."""
    return secure(RedirectResponse(url, status_code=303))  # type: ignore[return-value]


async def read_form(request: Request, session: Session) -> FormData:
    """The posted form, after its CSRF token checks out (CsrfFailed otherwise)."""
    form = await request.form()
    supplied = form.get("csrf")
    check_csrf(session, supplied if isinstance(supplied, str) else None)
    return form


def field(form: FormData, name: str, default: str = "") -> str:
    value = form.get(name)
    return value if isinstance(value, str) else default


P = ParamSpec("P")


def page(
    handler: Callable[P, Awaitable[Response]],
) -> Callable[P, Awaitable[Response]]:
    """CSRF failures become a 403 page, unknown objects a 404 page."""

    @functools.wraps(handler)
    async def wrapped(*args: P.args, **kwargs: P.kwargs) -> Response:
        request = kwargs.get("request")
        assert isinstance(request, Request), "console handlers take request: Request"
        try:
            return await handler(*args, **kwargs)
        except CsrfFailed:
            t = Translator(pick_language(request))
            return error_page(request, 403, t("csrf_failed"))
        except NotFoundError as exc:
            return error_page(request, 404, str(exc))
        except KnowledgeError as exc:
            if "unknown entry" not in str(exc):
                raise
            return error_page(request, 404, str(exc))

    return wrapped


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    session = current_session(request)
    return render(
        request, "error.html", session=session, status_code=status, status=status, message=message
    )


# -- queue helpers ---------------------------------------------------------------------------


def sla(ticket: Ticket, t: Translator, now: datetime | None = None) -> tuple[str, str]:
    """(css class, label) of the first-reply SLA: ok / soon / overdue / met / late / none."""
    now = now or datetime.now(UTC)
    allowed = timedelta(minutes=SLA_MINUTES["vip" if ticket.vip else "normal"])
    due = ticket.created_at + allowed
    if ticket.first_reply_at is not None:
        kind = "met" if ticket.first_reply_at <= due else "late"
        return kind, t(f"sla_{kind}")
    if ticket.resolved_at is not None:
        return "none", t("sla_none")
    left = (due - now).total_seconds()
    if left < 0:
        return "overdue", t("sla_overdue", minutes=int(-left // 60) + 1)
    kind = "ok" if left > allowed.total_seconds() / 2 else "soon"
    return kind, t(f"sla_{kind}", minutes=int(left // 60) + 1)


def waited(ticket: Ticket, now: datetime | None = None) -> float:
    """Seconds the customer has waited for (or waited until) the first reply."""
    end = ticket.first_reply_at or ticket.resolved_at or now or datetime.now(UTC)
    return max(0.0, (end - ticket.created_at).total_seconds())


def spark_points(values: list[int], *, width: int = 80, height: int = 20) -> str:
    """SVG polyline points for a sparkline of ``values`` (oldest first)."""
    top = max(values, default=0) or 1
    step = width / max(len(values) - 1, 1)
    return " ".join(
        f"{i * step:.0f},{height - 2 - (height - 4) * v / top:.1f}" for i, v in enumerate(values)
    )
