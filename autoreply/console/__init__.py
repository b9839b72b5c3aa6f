"""The agent console and insights dashboard: server-rendered pages on the service's own app.

``autoreply.app`` includes ``router`` (every path under ``/console``). Pages: sign-in
with an agent token, the inbox (live queue with SLA colours), a ticket (conversation,
handoff payload, claim / transfer / resolve / reply / promote), FAQ gaps, the weekly report
and the knowledge base. Jinja2 templates and one small vanilla-JS file ship in the package;
nothing is fetched from elsewhere. The UI speaks English and Chinese.

    sessions.py   server-side sessions, the cookie, CSRF
    i18n.py       language choice and labels
    render.py     templates, page context, SLA colours
    routes.py     sign-in, static files, the page routers below
    tickets.py    inbox and ticket pages
    reports.py    gaps and report pages
    knowledge.py  knowledge pages and FAQ candidates
    editing.py    writing entries back to knowledge files, then reloading
"""

from autoreply.console.routes import router

__all__ = ["router"]
