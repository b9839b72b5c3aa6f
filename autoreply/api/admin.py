"""Admin routes (admin token): reload or upload knowledge, review FAQ candidates, stats, and
the VIP list.

Reloading swaps the engine atomically (``AutoReply.reload``): messages already being
answered finish on the old index, later ones use the new. An uploaded FAQ file is validated
on its own first (every problem returned as JSON with file, line and field), then written
into the knowledge folder atomically and the whole knowledge base reloaded; if that fails
(e.g. an id already used in another file) the folder is put back as it was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Query, UploadFile, status
from pydantic import BaseModel, ConfigDict, Field

from autoreply.api.auth import AdminDep
from autoreply.api.schemas import ReloadResult, Stats, UploadResult
from autoreply.errors import ConflictError, FAQFormatError, KnowledgeInvalid
from autoreply.faqchange import (
    check_draft,
    commit,
    core_variants,
    draft_for_topic,
    writable_root,
)
from autoreply.faqfiles import FAQ_SUFFIXES
from autoreply.faqjournal import Journal
from autoreply.faqwrite import write_atomic
from autoreply.gap_suggestions import suggest
from autoreply.knowledge import Conflict, bundled_knowledge_dir, check_replacement
from autoreply.knowledge_index import KnowledgeIndex
from autoreply.models import CandidateStatus, FAQCandidate, FAQEntry
from autoreply.service import AutoReply, resolve_knowledge_path
from autoreply.store import DeliveryStatus, Interception, Vip
from autoreply.web.batching import in_own_thread
from autoreply.web.errors import ERROR_RESPONSES, Invalid
from autoreply.web.state import StateDep

router = APIRouter(
    prefix="/v1/admin",
    tags=["admin"],
    responses={k: ERROR_RESPONSES[k] for k in (401, 403, 404, 422, 429)},
)


def reload_result(index: KnowledgeIndex) -> ReloadResult:
    info = index.info
    return ReloadResult(
        entries=len(index.kb.enabled),
        texts=info.texts,
        encoded=info.encoded,
        status=info.status,
        seconds=round(info.seconds, 3),
        fingerprint=index.kb.fingerprint,
    )


@router.post("/reload", response_model=ReloadResult, summary="Reload the knowledge base")
async def reload(admin: AdminDep, state: StateDep) -> ReloadResult:
    """Read the knowledge folder again and swap the index in without a restart. A broken
    knowledge base is refused (422 with every problem) and the old one keeps answering."""
    async with state.admin_lock:
        index = await in_own_thread(state.bot.reload, name="autoreply-reload")
    return reload_result(index)


@router.post("/knowledge", response_model=UploadResult, summary="Upload an FAQ file")
async def upload_knowledge(
    admin: AdminDep,
    state: StateDep,
    file: Annotated[UploadFile, File(description=f"An FAQ file: {', '.join(FAQ_SUFFIXES)}")],
    dry_run: Annotated[
        bool, Query(description="Check only: return the report, change nothing.")
    ] = False,
    accept_warnings: Annotated[
        bool,
        Query(description="Install even if the file's questions conflict with other entries."),
    ] = False,
) -> UploadResult:
    """Run the full ``autoreply check`` on the knowledge folder as it would be with this file
    (format, ids shared with other files, questions another entry also has), then write it
    into the folder (replacing a file of the same name) and reload. Problems come back as
    422 ``knowledge_invalid`` with ``problems: [{file, line, field, problem, hint,
    message}]``; conflicts do too unless ``accept_warnings``, and are then listed in
    ``warnings``. ``dry_run`` returns the report without changing anything."""
    name = Path(file.filename or "").name
    if not name or name.startswith((".", "~$")) or Path(name).suffix.lower() not in FAQ_SUFFIXES:
        raise Invalid(
            f"cannot use {file.filename!r} as an FAQ file; upload a file named like "
            f"faq.yaml ({', '.join(FAQ_SUFFIXES)})",
            errors=[{"field": "file", "problem": "not an FAQ file name"}],
        )
    data = await file.read()
    async with state.admin_lock:
        return await in_own_thread(
            lambda: _install(
                state.bot, name, data, dry_run=dry_run, accept_warnings=accept_warnings
            ),
            name="autoreply-reload",
        )


def _install(
    bot: AutoReply, name: str, data: bytes, *, dry_run: bool, accept_warnings: bool
) -> UploadResult:
    folder = resolve_knowledge_path(bot.settings.knowledge)
    if not folder.is_dir() or folder.resolve() == bundled_knowledge_dir().resolve():
        raise ConflictError(
            f"the service's knowledge is {folder}, not a folder of its own; start it with "
            "--knowledge FOLDER (or AUTOREPLY_KNOWLEDGE) to upload files"
        )
    try:
        entries, conflicts = check_replacement(folder, name, data)
    except KnowledgeInvalid as exc:
        raise KnowledgeInvalid([_relabel(p, folder) for p in exc.problems]) from None
    except FAQFormatError as exc:
        raise KnowledgeInvalid([_relabel(exc, folder)]) from None
    warnings = [_relabel(_conflict_problem(c), folder) for c in conflicts]
    if warnings and not accept_warnings and not dry_run:
        raise KnowledgeInvalid(warnings)
    report = [w.to_dict() for w in warnings]
    if dry_run:
        return UploadResult(file=name, entries=len(entries), warnings=report, dry_run=True)
    target = folder / name
    previous = target.read_bytes() if target.exists() else None
    write_atomic(target, data)
    try:
        index = bot.reload()
    except BaseException:
        write_atomic(target, previous)  # None: the file was new, so it goes again
        raise
    return UploadResult(
        file=name, entries=len(entries), warnings=report, reload=reload_result(index)
    )


def _conflict_problem(conflict: Conflict) -> FAQFormatError:
    """A conflict in the same file:line/field shape as every other knowledge problem."""
    file, _, line = conflict.second[1].rpartition(":")
    return FAQFormatError(
        file,
        line=int(line) if line.isdigit() else None,
        field="question",
        problem=(
            f"'{conflict.text}' of entry '{conflict.second[0]}' is also in entry "
            f"'{conflict.first[0]}' ({conflict.first[1]})"
        ),
        hint="keep it in one entry, or upload with accept_warnings=true to keep both",
    )


def _relabel(problem: FAQFormatError, folder: Path) -> FAQFormatError:
    """The same problem, located relative to the knowledge folder (no server paths)."""
    path = Path(problem.path)
    shown = path.relative_to(folder) if path.is_relative_to(folder) else Path(path.name)
    problem_text = problem.problem.replace(f"{folder}/", "")
    return FAQFormatError(
        shown, line=problem.line, field=problem.field, problem=problem_text, hint=problem.hint
    )


class AcceptRequest(BaseModel):
    """A person's edits of a gap topic's draft; anything left out is the draft's."""

    question: str | None = None
    answer: str | None = None
    category: str | None = None
    variants: list[str] | None = None
    """The variants to write; left out: the drafted ones close in meaning to the question."""
    into: str | None = None
    """A file in the knowledge folder for a new entry [default: accepted.yaml]."""
    dry_run: bool = False
    """Only check: the entry and the verdict, nothing written."""
    force: bool = False
    """Save despite warnings (conflicts with other entries); never despite errors."""


class AcceptResult(BaseModel):
    entry: FAQEntry
    file: str
    saved: bool
    errors: list[str]
    warnings: list[str]
    change: int | None = None
    """The journal id of the change (POST /v1/admin/knowledge/undo takes it back)."""
    reload: ReloadResult | None = None


@router.post("/gaps/{topic_id}/accept", response_model=AcceptResult, summary="Accept a gap topic")
async def accept_topic(
    topic_id: int, body: AcceptRequest, admin: AdminDep, state: StateDep
) -> AcceptResult:
    """Write a gap topic's draft, with these edits, into the knowledge (a new entry into
    accepted.yaml, a near miss's variants into its entry's file; nothing else changes) and
    reload. The result is checked as ``autoreply check`` would first: errors are refused
    (422), warnings too unless ``force``; ``dry_run`` only returns the verdict."""
    async with state.admin_lock:
        return await in_own_thread(
            lambda: _accept(state.bot, topic_id, body, admin.name), name="autoreply-reload"
        )


def _accept(bot: AutoReply, topic_id: int, body: AcceptRequest, by: str) -> AcceptResult:
    root = writable_root(resolve_knowledge_path(bot.settings.knowledge))
    variants = body.variants
    if variants is None:
        draft = suggest(bot.store, bot.store.get_gap_topic(topic_id), kb=bot.kb)
        ticks = core_variants(draft, bot.engine.index)
        variants = [v for v, on in zip(draft.variants, ticks, strict=True) if on]
    into = None
    if body.into:
        into = root / Path(body.into).name if root.is_dir() else root
    chosen = draft_for_topic(
        bot.store,
        topic_id,
        kb=bot.kb,
        knowledge=root,
        variants=variants,
        question=body.question,
        answer=body.answer,
        category=body.category,
        into=into,
        by=by,
    )
    _, verdict = check_draft(bot.kb, chosen)
    result = AcceptResult(
        entry=chosen.entry,
        file=chosen.path.name,
        saved=False,
        errors=verdict.errors,
        warnings=verdict.warnings,
    )
    if body.dry_run:
        return result
    change, index = commit(
        bot.kb,
        chosen,
        journal=Journal(root),
        reload=bot.reload,
        action="accept",
        by=by,
        force=body.force,
        store=bot.store,
    )
    return result.model_copy(
        update={"saved": True, "change": change.id, "reload": reload_result(index)}
    )


@router.post("/knowledge/undo", summary="Undo the newest knowledge change")
async def undo_change(admin: AdminDep, state: StateDep) -> dict[str, object]:
    """Put the file of the newest change still in effect back exactly as it was (409 if it
    was changed since), reopen its gap topic, reload."""

    def run() -> dict[str, object]:
        root = writable_root(resolve_knowledge_path(state.bot.settings.knowledge))
        change = Journal(root).undo(by=admin.name, store=state.bot.store)
        index = state.bot.reload()
        return {"undone": change.__dict__, "reload": reload_result(index).model_dump()}

    async with state.admin_lock:
        return await in_own_thread(run, name="autoreply-reload")


@router.get("/candidates", response_model=list[FAQCandidate], summary="FAQ candidates")
def candidates(
    admin: AdminDep, state: StateDep, status: CandidateStatus | None = CandidateStatus.PENDING
) -> list[FAQCandidate]:
    """Answers agents promoted, oldest first; ``pending`` by default."""
    return state.bot.store.list_candidates(status=status)


@router.post("/candidates/{candidate_id}/accept", response_model=FAQCandidate)
def accept(candidate_id: int, admin: AdminDep, state: StateDep) -> FAQCandidate:
    """Mark a candidate accepted (add it to an FAQ file and upload or reload to use it)."""
    return state.bot.store.set_candidate_status(candidate_id, CandidateStatus.ACCEPTED)


@router.post("/candidates/{candidate_id}/dismiss", response_model=FAQCandidate)
def dismiss(candidate_id: int, admin: AdminDep, state: StateDep) -> FAQCandidate:
    return state.bot.store.set_candidate_status(candidate_id, CandidateStatus.DISMISSED)


@router.get("/interceptions", response_model=list[Interception], summary="Blocked replies")
def interceptions(
    admin: AdminDep,
    state: StateDep,
    agent: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[Interception]:
    """Agent replies refused for a prohibited phrase: who, when, which phrase; newest first."""
    return state.bot.store.list_interceptions(agent=agent, limit=limit)


@router.get("/stats", response_model=Stats, summary="Counts for the dashboard")
def stats(admin: AdminDep, state: StateDep) -> Stats:
    store = state.bot.store
    counts = store.counts()
    state.metrics.set_queue(counts)
    failed = store.list_deliveries(status=DeliveryStatus.FAILED, limit=100_000)
    return Stats(
        counts=counts,
        decisions=store.decision_counts(),
        interceptions_by_agent=store.count_interceptions(by="agent"),
        interceptions_by_phrase=store.count_interceptions(by="phrase"),
        deliveries_failed=len(failed),
        knowledge=reload_result(state.bot.engine.index),
    )


class VipIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(default=None, max_length=500)


@router.get("/vips", response_model=list[Vip], summary="The VIP list")
def list_vips(admin: AdminDep, state: StateDep) -> list[Vip]:
    """Customers whose escalations get priority and stick to their last agent, as (channel,
    user id). They count only for senders the channel proves: platform channels, and
    ``POST /v1/messages`` when it is signed with the webhook secret."""
    return state.bot.store.list_vips()


@router.put(
    "/vips/{channel}/{user_id:path}", response_model=Vip, summary="Put a customer on the VIP list"
)
def put_vip(
    channel: str, user_id: str, admin: AdminDep, state: StateDep, body: VipIn | None = None
) -> Vip:
    """Add (or update) a VIP; the admin's name is kept with the entry."""
    note = body.note if body is not None else None
    return state.bot.store.add_vip(channel, user_id, added_by=admin.name, note=note)


@router.delete(
    "/vips/{channel}/{user_id:path}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Take a customer off the VIP list",
)
def delete_vip(channel: str, user_id: str, admin: AdminDep, state: StateDep) -> None:
    """404 when the customer is not on the list."""
    state.bot.store.remove_vip(channel, user_id)
