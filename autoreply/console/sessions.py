"""Console sign-in: server-side sessions, the session cookie and CSRF checks.

A session lives in the app's memory (``Sessions``, one per app, made on first use); the
browser holds only its random id in the ``autoreply_console`` cookie (HttpOnly, SameSite=Lax,
Secure over HTTPS, path ``/console``). Signing in with an agent token (the API's tokens,
``autoreply agents add NAME``) starts a new session id, so an id planted before sign-in is
useless. The token is kept server-side and checked on every request exactly as the API
checks a bearer token: a disabled, expired or replaced token ends the session.

Every POST carries the session's CSRF token, in a hidden ``csrf`` form field or the
``X-CSRF-Token`` header (fetch calls); a missing or different one is refused with 403. The
sign-in form is covered too, through the anonymous session the sign-in page starts.
Sessions end after ``IDLE`` seconds without a request, or ``LIFETIME`` after sign-in.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request, Response

from autoreply.store import Agent, AgentRole
from autoreply.store import Store as StoreProtocol

COOKIE = "autoreply_console"
COOKIE_PATH = "/console"
IDLE = 8 * 3600
LIFETIME = 24 * 3600
MAX_SESSIONS = 10_000


@dataclass
class Session:
    """One browser's session. ``token`` never leaves the server."""

    id: str
    csrf: str
    created: float
    seen: float
    token: str | None = None
    agent: str | None = None
    role: AgentRole | None = None
    flashes: list[tuple[str, str]] = field(default_factory=list)
    """(kind, text) shown once on the next page: kind is ``ok`` or ``error``."""
    drafts: dict[int, str] = field(default_factory=dict)
    """Reply text refused for a prohibited phrase, per ticket, put back in the box."""

    @property
    def is_admin(self) -> bool:
        return self.role is AgentRole.ADMIN

    def flash(self, kind: str, text: str) -> None:
        self.flashes.append((kind, text))

    def take_flashes(self) -> list[tuple[str, str]]:
        taken, self.flashes = self.flashes, []
        return taken


class Sessions:
    """The sessions of one app, in memory (thread-safe)."""

    def __init__(self) -> None:
        self._by_id: dict[str, Session] = {}
        self._lock = threading.Lock()

    def new(self) -> Session:
        now = time.monotonic()
        session = Session(
            id=secrets.token_urlsafe(32), csrf=secrets.token_urlsafe(32), created=now, seen=now
        )
        with self._lock:
            self._expire(now)
            if len(self._by_id) >= MAX_SESSIONS:
                oldest = min(self._by_id.values(), key=lambda s: s.seen)
                del self._by_id[oldest.id]
            self._by_id[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        now = time.monotonic()
        with self._lock:
            session = self._by_id.get(session_id)
            if session is None:
                return None
            if now - session.seen > IDLE or now - session.created > LIFETIME:
                del self._by_id[session_id]
                return None
            session.seen = now
            return session

    def sign_in(self, old: Session | None, agent: Agent, token: str) -> Session:
        """A fresh session (new id and CSRF token) for ``agent``; the old one ends."""
        self.drop(old)
        session = self.new()
        session.token, session.agent, session.role = token, agent.name, agent.role
        return session

    def drop(self, session: Session | None) -> None:
        if session is not None:
            with self._lock:
                self._by_id.pop(session.id, None)

    def _expire(self, now: float) -> None:
        stale = [
            s.id for s in self._by_id.values() if now - s.seen > IDLE or now - s.created > LIFETIME
        ]
        for sid in stale:
            del self._by_id[sid]


def sessions_of(request: Request) -> Sessions:
    """The app's session table, made on first use."""
    state = request.app.state
    sessions: Sessions | None = getattr(state, "console_sessions", None)
    if sessions is None:
        sessions = Sessions()
        state.console_sessions = sessions
    return sessions


def current_session(request: Request) -> Session | None:
    return sessions_of(request).get(request.cookies.get(COOKIE))


def set_cookie(request: Request, response: Response, session: Session) -> None:
    response.set_cookie(
        COOKIE,
        session.id,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path=COOKIE_PATH,
    )


def clear_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="lax")


def check_token(store: StoreProtocol, token: str) -> tuple[Agent | None, str]:
    """The agent for ``token`` if it may sign in, else None and why (the API's wording)."""
    agent = store.agent_for_token(token.strip()) if token.strip() else None
    if agent is None:
        return None, "unknown token: check it was copied whole, or ask an admin for one"
    if agent.disabled:
        return None, f"agent '{agent.name}' is disabled; ask an admin for a new token"
    if agent.expired(datetime.now(UTC)):
        return None, f"the token of agent '{agent.name}' expired; ask an admin for a new one"
    return agent, ""


def _redirect_to_sign_in(request: Request) -> HTTPException:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    # The app's HTTPException handler keeps the status and headers: a browser follows it.
    return HTTPException(
        status_code=303,
        detail="sign in first",
        headers={"Location": f"{COOKIE_PATH}/signin?next={quote(target)}"},
    )


def signed_in(request: Request) -> Session:
    """The signed-in session, re-checking its token; else a redirect to the sign-in page
    (or 401 for the console's fetch endpoints, which send ``Accept: application/json``)."""
    session = current_session(request)
    wants_json = "application/json" in request.headers.get("accept", "")
    if session is not None and session.token is not None:
        store: StoreProtocol = request.app.state.service.bot.store
        agent, why = check_token(store, session.token)
        if agent is not None:
            session.role = agent.role
            return session
        sessions_of(request).drop(session)
    if wants_json:
        raise HTTPException(status_code=401, detail="sign in to the console first")
    raise _redirect_to_sign_in(request)


class CsrfFailed(Exception):
    """A POST without this session's CSRF token (the console answers 403)."""


def check_csrf(session: Session, supplied: str | None) -> None:
    """CsrfFailed unless ``supplied`` is this session's CSRF token."""
    if not supplied or not hmac.compare_digest(supplied.encode(), session.csrf.encode()):
        raise CsrfFailed()


SessionDep = Annotated[Session, Depends(signed_in)]
