"""Changing the knowledge base from the console: edit an entry, add an accepted FAQ
candidate, accept a gap topic's draft; each written to its knowledge file, then reloaded.

A change is validated first (FAQEntry), written atomically (``write_entries``), then the
whole knowledge base is reloaded without a restart (``AutoReply.reload``). If the reload
fails (say, an id now used twice) the file is put back as it was and the error raised, so
the old knowledge keeps answering. Only YAML, JSON and JSONL files inside the service's own
knowledge folder are written; the bundled demo knowledge is never changed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from autoreply.cli_gaps import WRITABLE, accept_suggestion
from autoreply.errors import ConflictError, KnowledgeError
from autoreply.knowledge import bundled_knowledge_dir, parse_entries, write_entries
from autoreply.models import FAQEntry
from autoreply.retriever import KnowledgeIndex
from autoreply.service import AutoReply, resolve_knowledge_path
from autoreply.store import TopicStatus

NEW_FILE = "promoted.yaml"


def knowledge_root(bot: AutoReply) -> Path:
    """The service's knowledge path; ConflictError for the bundled demo knowledge."""
    root = resolve_knowledge_path(bot.settings.knowledge)
    if root.resolve() == bundled_knowledge_dir().resolve():
        raise ConflictError(
            f"the service's knowledge is the bundled demo ({root}); start it with --knowledge "
            "FOLDER (or AUTOREPLY_KNOWLEDGE) to edit knowledge from the console"
        )
    return root


def target_files(bot: AutoReply) -> list[Path]:
    """Files an accepted entry may be written into: the writable FAQ files in use, then a new
    ``promoted.yaml`` in the knowledge folder if there is none yet."""
    try:
        root = knowledge_root(bot)
    except ConflictError:
        return []
    files = [Path(s) for s in bot.kb.sources if Path(s).suffix.lower() in WRITABLE]
    if root.is_dir() and (root / NEW_FILE) not in files:
        files.append(root / NEW_FILE)
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
    """One of target_files() by its shown name; KnowledgeError listing them otherwise."""
    files = target_files(bot)
    for path in files:
        if _name(bot, path) == name:
            return path
    known = ", ".join(_name(bot, f) for f in files) or "none (the bundled knowledge is read-only)"
    raise KnowledgeError(f"cannot write into '{name}'; choose one of: {known}")


def source_file(entry: FAQEntry) -> Path:
    """The file an entry was read from (``FAQEntry.source`` is ``file:line``)."""
    if not entry.source:
        raise KnowledgeError(f"entry '{entry.id}' has no source file; edit it where it lives")
    return Path(entry.source.rsplit(":", 1)[0])


def change_file(
    bot: AutoReply, path: Path, change: Callable[[list[FAQEntry]], list[FAQEntry]]
) -> KnowledgeIndex:
    """Rewrite ``path`` with ``change(entries)`` and reload; the file is restored if the
    reload fails."""
    knowledge_root(bot)
    if path.suffix.lower() not in WRITABLE:
        raise KnowledgeError(
            f"{path}: the console writes only {', '.join(WRITABLE)} files; edit this one "
            "in a spreadsheet or editor and reload"
        )
    previous = path.read_bytes() if path.exists() else None
    entries = parse_entries(path) if previous is not None else []
    write_entries(path, change(entries))
    try:
        return bot.reload()
    except BaseException:
        _restore(path, previous)
        raise


def _restore(path: Path, previous: bytes | None) -> None:
    if previous is None:
        path.unlink(missing_ok=True)
    else:
        path.write_bytes(previous)


def validated(data: dict[str, Any]) -> FAQEntry:
    """An FAQEntry from form data; KnowledgeError naming the first bad field."""
    try:
        return FAQEntry.model_validate(data)
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(p) for p in problem["loc"]) or "entry"
        raise KnowledgeError(f"field '{where}': {problem['msg']}") from None


def edit_entry(bot: AutoReply, entry_id: str, changes: dict[str, Any]) -> tuple[Path, int]:
    """Apply ``changes`` to an entry in its own file and reload: (file, entries now)."""
    old = bot.kb.get(entry_id)
    new = validated(old.model_dump() | changes | {"id": entry_id})
    path = source_file(old)

    def replace(entries: list[FAQEntry]) -> list[FAQEntry]:
        if not any(e.id == entry_id for e in entries):
            raise KnowledgeError(f"entry '{entry_id}' is no longer in {path}; reload the page")
        return [new if e.id == entry_id else e for e in entries]

    index = change_file(bot, path, replace)
    return path, len(index.kb.enabled)


def add_entry(bot: AutoReply, data: dict[str, Any], *, into: Path) -> tuple[FAQEntry, int]:
    """Append a new entry to ``into`` and reload: (entry, entries now)."""
    entry = validated(data)
    if entry.id in bot.kb:
        raise KnowledgeError(f"entry id '{entry.id}' is taken; choose another id")
    index = change_file(bot, into, lambda entries: [*entries, entry])
    return entry, len(index.kb.enabled)


def accept_topic(
    bot: AutoReply, topic_id: int, *, into: Path, answer: str | None
) -> tuple[FAQEntry, int]:
    """``autoreply gaps accept`` from the console: write the topic's draft into ``into``,
    mark the topic accepted, reload; everything is undone if the reload fails."""
    knowledge_root(bot)
    previous = into.read_bytes() if into.exists() else None
    entry = accept_suggestion(bot.store, topic_id, into=into, kb=bot.kb, answer=answer)
    try:
        index = bot.reload()
    except BaseException:
        _restore(into, previous)
        bot.store.set_gap_topic_status(topic_id, TopicStatus.OPEN)
        raise
    return entry, len(index.kb.enabled)


def new_entry_id(bot: AutoReply, base: str) -> str:
    """``base``, or ``base-2``, ``base-3``... whichever is not taken yet."""
    candidate, n = base, 1
    while candidate in bot.kb:
        n += 1
        candidate = f"{base}-{n}"
    return candidate
