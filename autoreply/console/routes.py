"""The console's router: sign-in and sign-out, static files, and the page routers.

``autoreply.app`` includes ``router`` once; every console path starts with ``/console``
(each page router carries the prefix itself, so logs and metrics name whole route templates)
and none appears in the OpenAPI schema. Static files are served from the package's
``static/`` folder by name (no directory listing, nothing outside it).
"""

from __future__ import annotations

import mimetypes
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse

from autoreply.console import knowledge, reports, tickets
from autoreply.console.i18n import Translator, pick_language
from autoreply.console.render import HERE, field, page, read_form, redirect, render, secure
from autoreply.console.sessions import (
    check_token,
    clear_cookie,
    current_session,
    sessions_of,
    set_cookie,
)

router = APIRouter(include_in_schema=False)
STATIC = HERE / "static"


def _safe_next(target: str | None) -> str:
    """Only a console path: never an absolute or protocol-relative URL (open redirect)."""
    if target and target.startswith("/console") and not target.startswith("//"):
        return target
    return "/console/inbox"


@router.get("/console")
@router.get("/console/")
def home() -> Response:
    return redirect("/console/inbox")


@router.get("/console/signin")
def sign_in_page(
    request: Request, next: Annotated[str | None, Query()] = None, ended: bool = False
) -> Response:
    session = current_session(request)
    if session is not None and session.agent is not None:
        return redirect(_safe_next(next))
    if session is None:
        session = sessions_of(request).new()
    t = Translator(pick_language(request))
    if ended:
        session.flash("ok", t("signed_out"))
    response = render(
        request, "signin.html", session=session, next=_safe_next(next), error=None, token=""
    )
    set_cookie(request, response, session)
    return response


@router.post("/console/signin")
@page
async def sign_in(request: Request) -> Response:
    session = current_session(request)
    if session is None:
        # No session: the sign-in page was not loaded from here (or it expired).
        fresh = sessions_of(request).new()
        t = Translator(pick_language(request))
        response = render(
            request,
            "signin.html",
            session=fresh,
            status_code=403,
            next="/console/inbox",
            error=t("csrf_failed"),
            token="",
        )
        set_cookie(request, response, fresh)
        return response
    form = await read_form(request, session)
    store = request.app.state.service.bot.store
    agent, why = check_token(store, field(form, "token"))
    target = _safe_next(field(form, "next"))
    if agent is None:
        return render(
            request,
            "signin.html",
            session=session,
            status_code=401,
            next=target,
            error=why,
            token="",
        )
    signed = sessions_of(request).sign_in(session, agent, field(form, "token").strip())
    redirected = redirect(target)
    set_cookie(request, redirected, signed)
    return redirected


@router.post("/console/signout")
@page
async def sign_out(request: Request) -> Response:
    session = current_session(request)
    if session is not None:
        await read_form(request, session)
        sessions_of(request).drop(session)
    response = redirect("/console/signin?ended=1")
    clear_cookie(response)
    return response


@router.get("/console/static/{name}")
def static(name: str) -> Response:
    path = STATIC / name
    if "/" in name or name.startswith(".") or not path.is_file():
        return secure(Response("not found", status_code=404, media_type="text/plain"))
    media = mimetypes.guess_type(name)[0] or "application/octet-stream"
    response = FileResponse(path, media_type=media, headers={"Cache-Control": "max-age=300"})
    return secure(response)


router.include_router(tickets.router)
router.include_router(reports.router)
router.include_router(knowledge.router)
