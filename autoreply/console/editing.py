"""Changing the knowledge base from the console: edit an entry, add an accepted FAQ
candidate, accept a gap topic's draft, undo; each through autoreply.faqchange (checked,
written without touching anything else in the file, journalled), then reloaded.

If the reload fails the change is undone from the journal and the error raised, so the old
knowledge keeps answering. Only files inside the service's own knowledge folder are written;
the bundled demo knowledge is never changed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autoreply import faqchange
from autoreply.errors import ConflictError, KnowledgeError
from autoreply.faqchange import (
    Draft,
    Verdict,
    add_draft,
    check_draft,
    default_target,
    draft_for_topic,
    edit_draft,
    writable_root,
)
from autoreply.faqjournal import Change, Journal
from autoreply.faqwrite import EDITABLE
from autoreply.models import FAQEntry
from autoreply.service import AutoReply, resolve_knowledge_path


def knowledge_root(bot: AutoReply) -> Path:
    """The service's knowledge path; ConflictError for the bundled demo knowledge."""
    return writable_root(resolve_knowledge_path(bot.settings.knowledge))


def journal(bot: AutoReply) -> Journal:
    return Journal(knowledge_root(bot))


def target_files(bot: AutoReply) -> list[Path]:
    """Files a new entry may be written into: ``accepted.yaml`` in the knowledge folder (a
    file of its own, the default), then the FAQ files in use."""
    try:
        root = knowledge_root(bot)
    except ConflictError:
        return []
    first = default_target(root)
    files = [first] + [
        Path(s) for s in bot.kb.sources if Path(s).suffix.lower() in EDITABLE and Path(s) != first
    ]
    return files


def target_names(bot: AutoReply) -> list[str]:
    """target_files() as shown on the page: relative to the knowledge folder."""
    return [_name(bot, p) for p in target_files(bot)]


def _name(bot: AutoReply, path: Path) -> str:
    root = resolve_knowledge_path(bot.settings.knowledge)
    base = root if root.is_dir() else root.parent
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return str(path)


def pick_target(bot: AutoReply, name: str) -> Path:
    """One of target_files() by its shown name (empty: the default); KnowledgeError listing
    them otherwise."""
    files = target_files(bot)
    if not name and files:
        return files[0]
    for path in files:
        if _name(bot, path) == name:
            return path
    known = ", ".join(_name(bot, f) for f in files) or "none (the bundled knowledge is read-only)"
    raise KnowledgeError(f"cannot write into '{name}'; choose one of: {known}")


def commit(
    bot: AutoReply, draft: Draft, *, action: str, by: str, force: bool = False
) -> tuple[Change, int]:
    """Apply a draft and reload: (the journalled change, entries now). A failed reload undoes
    the change (and reopens its topic)."""
    change, index = faqchange.commit(
        bot.kb,
        draft,
        journal=journal(bot),
        reload=bot.reload,
        action=action,
        by=by,
        force=force,
        store=bot.store,
    )
    return change, len(index.kb.enabled)


def edit_entry(
    bot: AutoReply, entry_id: str, changes: dict[str, Any], *, by: str, force: bool = False
) -> tuple[Path, int]:
    """Apply ``changes`` to an entry in its own file (only its lines change) and reload."""
    knowledge_root(bot)
    draft = edit_draft(bot.kb, entry_id, changes)
    _, count = commit(bot, draft, action="edit", by=by, force=force)
    return draft.path, count


def add_entry(
    bot: AutoReply,
    data: dict[str, Any],
    *,
    into: Path,
    by: str,
    note: str = "",
    candidate_id: int | None = None,
) -> tuple[FAQEntry, int]:
    """Append a new entry to ``into`` and reload: (entry, entries now)."""
    knowledge_root(bot)
    draft = add_draft(bot.kb, data, into=into, note=note, candidate_id=candidate_id)
    _, count = commit(bot, draft, action="add", by=by)
    return draft.entry, count


def topic_draft(
    bot: AutoReply, topic_id: int, *, into: Path | None, edits: dict[str, Any], by: str
) -> Draft:
    """The entry a person is accepting from a topic, with their edits and chosen variants."""
    return draft_for_topic(
        bot.store,
        topic_id,
        kb=bot.kb,
        knowledge=knowledge_root(bot),
        variants=edits.get("variants", []),
        question=edits.get("question"),
        answer=edits.get("answer"),
        category=edits.get("category"),
        into=into,
        by=by,
    )


def check(bot: AutoReply, draft: Draft) -> Verdict:
    """What ``autoreply check`` would say with the draft saved."""
    return check_draft(bot.kb, draft)[1]


def undo(bot: AutoReply, *, by: str) -> tuple[Change, int]:
    """Undo the newest change still in effect and reload."""
    change = journal(bot).undo(by=by, store=bot.store)
    return change, len(bot.reload().kb.enabled)


def new_entry_id(bot: AutoReply, base: str) -> str:
    """``base``, or ``base-2``, ``base-3``... whichever is not taken yet."""
    candidate, n = base, 1
    while candidate in bot.kb:
        n += 1
        candidate = f"{base}-{n}"
    return candidate
