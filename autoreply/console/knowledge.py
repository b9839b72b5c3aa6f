"""The knowledge pages: browse and search the FAQ by category tree, one entry with its
feedback and (for admins) an edit form, and the FAQ candidates agents promoted, which an
admin accepts into a knowledge file (reloaded at once) or dismisses.

Any signed-in agent may read; changing knowledge needs an admin, as in the API. Changes
run one at a time (the app's ``admin_lock``) and off the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request, Response

from autoreply import learning
from autoreply.console import editing
from autoreply.console.i18n import Translator, pick_language
from autoreply.console.render import field as form_field
from autoreply.console.render import page, read_form, redirect, render, state_of
from autoreply.console.sessions import Session, SessionDep
from autoreply.errors import AutoreplyError
from autoreply.models import CandidateStatus, FAQEntry
from autoreply.text import normalize
from autoreply.web.batching import in_own_thread

router = APIRouter(prefix="/console", include_in_schema=False)


@dataclass
class CategoryNode:
    name: str
    path: str
    count: int = 0
    children: dict[str, CategoryNode] = field(default_factory=dict)

    @property
    def sorted_children(self) -> list[CategoryNode]:
        return sorted(self.children.values(), key=lambda n: n.name)


def category_tree(categories: dict[str, int]) -> CategoryNode:
    """``{"支付/退款": 3, "支付/发票": 1}`` → 支付 (4) → 退款 (3), 发票 (1)."""
    root = CategoryNode(name="", path="")
    for path, count in categories.items():
        node = root
        root.count += count
        parts = [p for p in path.split("/") if p]
        for i, part in enumerate(parts):
            sub = "/".join(parts[: i + 1])
            node = node.children.setdefault(part, CategoryNode(name=part, path=sub))
            node.count += count
    return root


def _matches(entry: FAQEntry, query: str, category: str) -> bool:
    if category and not (entry.category == category or entry.category.startswith(category + "/")):
        return False
    if not query:
        return True
    haystack = normalize(" ".join([entry.id, *entry.texts, entry.answer, *entry.tags]))
    return all(word in haystack for word in normalize(query).split())


@router.get("/knowledge")
@page
async def knowledge_page(
    request: Request, session: SessionDep, q: str = "", category: str = ""
) -> Response:
    bot = state_of(request).bot
    kb = bot.kb
    entries = [e for e in kb.entries if _matches(e, q.strip(), category)]
    best: list[tuple[FAQEntry, float]] = []
    if q.strip():
        try:
            ranked = await in_own_thread(
                lambda: bot.engine.rank([q.strip()], k=5)[0], name="autoreply-console"
            )
        except AutoreplyError:
            ranked = []
        best = [(kb.get(c.entry_id), c.confidence) for c in ranked if c.entry_id in kb][:5]
    candidates = bot.store.list_candidates(status=CandidateStatus.PENDING)
    learned = learning.pending(bot.store)
    return render(
        request,
        "knowledge.html",
        session=session,
        tree=category_tree(kb.categories()),
        entries=entries[:300],
        total=len(entries),
        best=best,
        q=q,
        category=category,
        candidates=[(c, editing.new_entry_id(bot, f"promoted-{c.id}")) for c in candidates],
        targets=editing.target_names(bot),
        changes=_changes(bot),
        learned=learned[:100],
    )


@router.get("/knowledge/entry/{entry_id:path}")
@page
async def entry_page(request: Request, entry_id: str, session: SessionDep) -> Response:
    bot = state_of(request).bot
    entry = bot.kb.get(entry_id)
    feedback = bot.store.list_feedback(entry_id=entry_id)
    return render(
        request,
        "entry.html",
        session=session,
        entry=entry,
        feedback=feedback,
        up=sum(1 for f in feedback if f.helpful),
        down=sum(1 for f in feedback if not f.helpful),
        editable=session.is_admin and bool(editing.target_files(bot)),
        learned=learning.pending(bot.store, entry_id=entry_id),
    )


def _changes(bot: Any) -> list[Any]:
    try:
        return editing.journal(bot).changes()[:20]
    except AutoreplyError:
        return []


@router.post("/knowledge/undo")
@page
async def undo_change(request: Request, session: SessionDep) -> Response:
    """Undo the newest knowledge change still in effect (accept, add or edit), then reload."""
    await read_form(request, session)
    back = "/console/knowledge#changes"
    if not _admin(request, session):
        return redirect(back)
    state = state_of(request)
    t = Translator(pick_language(request))
    try:
        async with state.admin_lock:
            change, count = await in_own_thread(
                lambda: editing.undo(state.bot, by=session.agent or ""), name="autoreply-reload"
            )
    except AutoreplyError as exc:
        session.flash("error", str(exc))
    else:
        session.flash("ok", t("undone_ok", change=change.id, entry=change.entry_id, entries=count))
    return redirect(back)


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _admin(request: Request, session: Session) -> bool:
    if session.is_admin:
        return True
    session.flash("error", Translator(pick_language(request))("admin_only"))
    return False


@router.post("/knowledge/entry/{entry_id:path}")
@page
async def edit_entry(request: Request, entry_id: str, session: SessionDep) -> Response:
    form = await read_form(request, session)
    back = f"/console/knowledge/entry/{quote(entry_id)}"
    if not _admin(request, session):
        return redirect(back)
    state = state_of(request)
    changes: dict[str, Any] = {
        "question": form_field(form, "question"),
        "variants": _lines(form_field(form, "variants")),
        "answer": form_field(form, "answer"),
        "category": form_field(form, "category"),
        "tags": [t.strip() for t in form_field(form, "tags").split(",") if t.strip()],
        "escalate": form_field(form, "escalate") == "on",
        "enabled": form_field(form, "enabled") == "on",
    }
    t = Translator(pick_language(request))
    force = form_field(form, "force") == "on"
    try:
        async with state.admin_lock:
            path, count = await in_own_thread(
                lambda: editing.edit_entry(
                    state.bot, entry_id, changes, by=session.agent or "", force=force
                ),
                name="autoreply-reload",
            )
    except AutoreplyError as exc:
        session.flash("error", str(exc))
    else:
        session.flash("ok", t("saved_ok", file=path.name, entries=count))
    return redirect(back)


@router.post("/knowledge/candidates/{candidate_id}/{action}")
@page
async def candidate_action(
    request: Request, candidate_id: int, action: str, session: SessionDep
) -> Response:
    form = await read_form(request, session)
    back = "/console/knowledge"
    if not _admin(request, session) or action not in ("accept", "dismiss"):
        return redirect(back)
    state = state_of(request)
    store = state.bot.store
    t = Translator(pick_language(request))
    try:
        if action == "dismiss":
            store.set_candidate_status(candidate_id, CandidateStatus.DISMISSED)
            session.flash("ok", t("dismissed_ok"))
            return redirect(back)
        data = {
            "id": form_field(form, "id").strip(),
            "question": form_field(form, "question"),
            "variants": _lines(form_field(form, "variants")),
            "answer": form_field(form, "answer"),
            "category": form_field(form, "category") or "general",
        }
        into = editing.pick_target(state.bot, form_field(form, "into"))
        async with state.admin_lock:
            entry, count = await in_own_thread(
                lambda: editing.add_entry(
                    state.bot,
                    data,
                    into=into,
                    by=session.agent or "",
                    note=f"added by {session.agent} from FAQ candidate {candidate_id}",
                    candidate_id=candidate_id,
                ),
                name="autoreply-reload",
            )
        store.set_candidate_status(candidate_id, CandidateStatus.ACCEPTED)
        session.flash("ok", t("accepted_ok", entry=entry.id, file=into.name, entries=count))
    except AutoreplyError as exc:
        session.flash("error", str(exc))
    return redirect(back)


@router.post("/knowledge/learned/{variant_id}/{action}")
@page
async def learned_action(
    request: Request, variant_id: int, action: str, session: SessionDep
) -> Response:
    """Accept a learned phrasing into its entry (checked, journalled, reloaded) or dismiss it."""
    form = await read_form(request, session)
    back = form_field(form, "back")
    if not back.startswith("/console/knowledge") or "//" in back:
        back = "/console/knowledge#learned"
    if not _admin(request, session) or action not in ("accept", "dismiss"):
        return redirect(back)
    state = state_of(request)
    bot = state.bot
    t = Translator(pick_language(request))
    by = session.agent or ""
    try:
        if action == "dismiss":
            learning.dismiss(bot.store, [variant_id], by=by)
            session.flash("ok", t("dismissed_ok"))
            return redirect(back)
        async with state.admin_lock:
            [change] = await in_own_thread(
                lambda: learning.accept(
                    bot.store,
                    bot.kb,
                    [variant_id],
                    knowledge=editing.knowledge_root(bot),
                    reload=bot.reload,
                    by=by,
                    force=form_field(form, "force") == "on",
                ),
                name="autoreply-reload",
            )
        entries = len(bot.kb.enabled)
        name = change.file.rsplit("/", 1)[-1]
        session.flash("ok", t("learned_ok", entry=change.entry_id, file=name, entries=entries))
    except AutoreplyError as exc:
        session.flash("error", str(exc))
    return redirect(back)
