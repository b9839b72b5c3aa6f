"""Changing the knowledge base on a person's say-so: accept a gap topic's draft, add an entry,
edit one; each checked first, written carefully, journalled, and undoable.

The front doors (``autoreply gaps accept``, the admin API, the console) all come here:

1. ``draft_for_topic`` turns a topic's suggestion plus a person's edits (question, answer,
   category, the variants they ticked or wrote) into an entry and a target file. A new entry
   goes to a file of its own, ``accepted.yaml`` in the knowledge folder, so the files people
   wrote are not touched at all; a near miss adds its variants to the entry where it lives.
2. ``plan`` gives the target's new bytes (faqwrite: only the entry's lines change) and
   ``verdict`` runs what ``autoreply check`` runs (every file's format, ids used twice,
   texts two entries share) on the knowledge base with the change in it.
3. ``apply`` refuses errors, and warnings unless forced; otherwise writes the bytes and
   records the change in the journal: ``.autoreply-journal/`` in the knowledge folder (hidden,
   so never loaded), one JSON record per change (when, who, what, which file, the file's hash
   after) plus the file's bytes before. ``undo`` puts the newest change back byte for byte,
   if the file has not been changed since, and reopens its gap topic or FAQ candidate.
"""

from __future__ import annotations

import getpass
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from autoreply.errors import ConflictError, KnowledgeError
from autoreply.faqwrite import appended, replaced, write_atomic
from autoreply.gaps import Suggestion, TopicConfig, suggest
from autoreply.knowledge import KnowledgeBase, bundled_knowledge_dir, cross_check, parse_planned
from autoreply.models import CandidateStatus, FAQEntry
from autoreply.retriever import KnowledgeIndex
from autoreply.store.base import Store, TopicKind, TopicStatus

ACCEPTED_FILE = "accepted.yaml"
JOURNAL_DIR = ".autoreply-journal"


@dataclass(frozen=True)
class Verdict:
    """``autoreply check`` on the knowledge base with a change in it."""

    errors: list[str] = field(default_factory=list)
    """Problems that stop the knowledge base from loading: never saved."""
    warnings: list[str] = field(default_factory=list)
    """Conflicts the change brings (a text another entry has too): saved only when forced."""

    @property
    def ok(self) -> bool:
        return not self.errors and not self.warnings

    def refusal(self, *, force: bool) -> KnowledgeError | None:
        if self.errors:
            return KnowledgeError(f"not saved: {self.errors[0]}")
        if self.warnings and not force:
            return KnowledgeError(
                f"not saved: {self.warnings[0]} (save anyway with --force / 'save despite "
                "warnings')"
            )
        return None


@dataclass(frozen=True)
class Draft:
    """An entry about to be written, where, and in place of which entry (None: added)."""

    entry: FAQEntry
    path: Path
    replaces: str | None = None
    topic_id: int | None = None
    note: str = ""
    candidate_id: int | None = None
    """The agent's FAQ candidate it comes from (undo makes it pending again)."""


@dataclass(frozen=True)
class Change:
    """One journalled write into a knowledge file."""

    id: int
    at: str
    by: str
    action: str
    file: str
    entry_id: str
    after_sha256: str
    created: bool
    """The file did not exist before (undo deletes it)."""
    topic_id: int | None = None
    candidate_id: int | None = None
    undone_at: str | None = None
    undone_by: str | None = None


def writable_root(knowledge: Path) -> Path:
    """The knowledge path, if changes may be written there (not the bundled demo)."""
    if knowledge.resolve() == bundled_knowledge_dir().resolve():
        raise ConflictError(
            f"the knowledge is the bundled demo ({knowledge}); point autoreply at a folder of "
            "your own (--knowledge FOLDER or AUTOREPLY_KNOWLEDGE) to change it"
        )
    return knowledge


def knowledge_folder(knowledge: Path) -> Path:
    return knowledge if knowledge.is_dir() else knowledge.parent


def default_target(knowledge: Path) -> Path:
    """Where an accepted new entry goes: ``accepted.yaml`` in the knowledge folder (a single
    FAQ file: that file, since nothing beside it is loaded)."""
    return knowledge / ACCEPTED_FILE if knowledge.is_dir() else knowledge


def whoami() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def source_file(entry: FAQEntry) -> Path:
    """The file an entry was read from (``FAQEntry.source`` is ``file:line``)."""
    if not entry.source:
        raise KnowledgeError(f"entry '{entry.id}' has no source file; edit it where it lives")
    return Path(entry.source.rsplit(":", 1)[0])


def validated(data: dict[str, Any]) -> FAQEntry:
    """An FAQEntry from a person's input; KnowledgeError naming the first bad field."""
    try:
        return FAQEntry.model_validate(data)
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(p) for p in problem["loc"]) or "entry"
        raise KnowledgeError(f"field '{where}': {problem['msg']}") from None


# -- drafting ---------------------------------------------------------------------------------


def core_variants(
    suggestion: Suggestion, index: KnowledgeIndex | None, *, threshold: float | None = None
) -> list[bool]:
    """Which suggested variants to tick by default: those that ask what the question asks
    (cosine to it at least the topic-joining ``assign_threshold``) and are nearer to it than
    to any entry already in the knowledge base. A topic of unrelated questions ticks few."""
    if not suggestion.variants:
        return []
    if index is None:
        return [False] * len(suggestion.variants)
    limit = TopicConfig().assign_threshold if threshold is None else threshold
    vectors = index.encoder.encode([suggestion.question, *suggestion.variants])
    own = vectors[1:] @ vectors[0]
    faq = index.index.vectors()  # the knowledge base's texts, encoded when it was indexed
    other = (vectors[1:] @ faq.T).max(axis=1) if len(faq) else np.full(len(own), -1.0)
    if suggestion.kind is TopicKind.NEAR_MISS:
        return [bool(s >= limit) for s in own]
    return [bool(s >= limit and s > o) for s, o in zip(own, other, strict=True)]


def draft_for_topic(
    store: Store,
    topic_id: int,
    *,
    kb: KnowledgeBase,
    knowledge: Path,
    variants: list[str],
    question: str | None = None,
    answer: str | None = None,
    category: str | None = None,
    into: Path | None = None,
    by: str = "",
) -> Draft:
    """The entry a person accepts from a topic: the suggestion with their edits. ``variants``
    are the ones they chose (ticked, edited, added), never all by default."""
    topic = store.get_gap_topic(topic_id)
    if topic.status is TopicStatus.ACCEPTED:
        raise ConflictError(f"gap topic {topic_id} was accepted already")
    draft = suggest(store, topic, kb=kb)
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    note = f"accepted {when} by {by or whoami()} from gap topic {topic_id}"
    chosen = list(dict.fromkeys(v.strip() for v in variants if v.strip()))
    if topic.kind is TopicKind.NEAR_MISS and draft.entry_id in kb:
        old = kb.get(draft.entry_id)
        data = old.model_dump() | {"variants": (*old.variants, *chosen)}
        data |= {k: v for k, v in _edits(question, answer, category).items() if v}
        path = source_file(old)
        if into is not None and into.resolve() != path.resolve():
            raise KnowledgeError(
                f"entry '{old.id}' is in {path}; its new variants go there, not into {into}"
            )
        return Draft(validated(data), path, old.id, topic_id, note)
    text = (answer if answer is not None else draft.answer).strip()
    if not text:
        raise KnowledgeError(
            f"gap topic {topic_id} has no answer yet (no resolved ticket gave one); write one "
            '(autoreply gaps accept ... --answer "...")'
        )
    entry_id, n = draft.entry_id, 1
    while entry_id in kb:
        n += 1
        entry_id = f"{draft.entry_id}-{n}"
    data = {
        "id": entry_id,
        "question": (question or draft.question).strip(),
        "variants": chosen,
        "answer": text,
        "category": (category or draft.category).strip(),
    }
    return Draft(validated(data), into or default_target(knowledge), None, topic_id, note)


def _edits(question: str | None, answer: str | None, category: str | None) -> dict[str, str]:
    return {
        "question": (question or "").strip(),
        "answer": (answer or "").strip(),
        "category": (category or "").strip(),
    }


# -- checking and writing ---------------------------------------------------------------------


def plan(draft: Draft) -> bytes:
    """The target file's bytes with the draft in it (only the entry's lines differ)."""
    if draft.replaces is None:
        return appended(draft.path, draft.entry, note=draft.note)
    return replaced(draft.path, draft.replaces, draft.entry)


def verdict(kb: KnowledgeBase, draft: Draft, data: bytes) -> Verdict:
    """``autoreply check`` on ``kb`` with the target file's content replaced by ``data``:
    problems in that file and ids used twice are errors; texts the changed entry shares with
    another entry are warnings (conflicts already there before are not this change's)."""
    target = draft.path.resolve()
    entries, problems = parse_planned(draft.path, data)
    others = [e for e in kb.entries if not e.source or source_file(e).resolve() != target]
    duplicates, conflicts = cross_check([*others, *entries])
    mine = draft.entry.id
    warnings = [c.render() for c in conflicts if mine in (c.first[0], c.second[0])]
    return Verdict([p.render() for p in [*problems, *duplicates]], warnings)


def check_draft(kb: KnowledgeBase, draft: Draft) -> tuple[bytes | None, Verdict]:
    """The planned bytes and their verdict; a draft that cannot be written is an error."""
    try:
        data = plan(draft)
    except KnowledgeError as exc:
        return None, Verdict([str(exc)])
    return data, verdict(kb, draft, data)


def apply(
    kb: KnowledgeBase,
    draft: Draft,
    *,
    journal: Journal,
    action: str,
    by: str = "",
    force: bool = False,
    store: Store | None = None,
) -> Change:
    """Check the draft, write it and journal it (and mark its topic accepted); a
    KnowledgeError saying why if the verdict does not allow it."""
    data, found = check_draft(kb, draft)
    refusal = found.refusal(force=force)
    if refusal is not None or data is None:
        raise refusal or KnowledgeError("not saved")
    before = draft.path.read_bytes() if draft.path.exists() else None
    write_atomic(draft.path, data)
    change = journal.record(
        draft.path, before, data, action=action, entry_id=draft.entry.id, by=by or whoami()
    )
    if draft.topic_id is not None or draft.candidate_id is not None:
        change = journal.update(change, topic_id=draft.topic_id, candidate_id=draft.candidate_id)
    if draft.topic_id is not None and store is not None:
        store.set_gap_topic_status(draft.topic_id, TopicStatus.ACCEPTED)
    return change


def commit(
    kb: KnowledgeBase,
    draft: Draft,
    *,
    journal: Journal,
    reload: Callable[[], KnowledgeIndex],
    action: str,
    by: str = "",
    force: bool = False,
    store: Store | None = None,
) -> tuple[Change, KnowledgeIndex]:
    """apply(), then ``reload()`` the knowledge base; if that fails the change is undone
    (file and topic as before) and the error raised, so the old knowledge keeps answering."""
    change = apply(kb, draft, journal=journal, action=action, by=by, force=force, store=store)
    try:
        return change, reload()
    except BaseException:
        journal.undo(by=f"{by or whoami()} (reload failed)", store=store)
        raise


def edit_draft(kb: KnowledgeBase, entry_id: str, changes: dict[str, Any]) -> Draft:
    """An existing entry with ``changes``, to be written in place in its own file."""
    old = kb.get(entry_id)
    new = validated(old.model_dump() | changes | {"id": entry_id})
    return Draft(new, source_file(old), entry_id)


def add_draft(
    kb: KnowledgeBase,
    data: dict[str, Any],
    *,
    into: Path,
    note: str = "",
    candidate_id: int | None = None,
) -> Draft:
    """A new entry from a person's input, appended to ``into``."""
    entry = validated(data)
    if entry.id in kb:
        raise KnowledgeError(f"entry id '{entry.id}' is taken; choose another id")
    return Draft(entry, into, None, None, note, candidate_id)


# -- the journal ------------------------------------------------------------------------------


class Journal:
    """Every change written into a knowledge folder, newest last, and how to take it back."""

    def __init__(self, knowledge: Path) -> None:
        self.folder = knowledge_folder(Path(knowledge)) / JOURNAL_DIR

    def _path(self, change_id: int, kind: str) -> Path:
        return self.folder / f"{change_id:06d}.{kind}"

    def changes(self) -> list[Change]:
        """All changes, newest first."""
        if not self.folder.is_dir():
            return []
        found = [Change(**json.loads(p.read_text("utf-8"))) for p in self.folder.glob("*.json")]
        return sorted(found, key=lambda c: c.id, reverse=True)

    def record(
        self, path: Path, before: bytes | None, after: bytes, *, action: str, entry_id: str, by: str
    ) -> Change:
        self.folder.mkdir(parents=True, exist_ok=True)
        latest = self.changes()
        change = Change(
            id=latest[0].id + 1 if latest else 1,
            at=datetime.now(UTC).isoformat(timespec="seconds"),
            by=by,
            action=action,
            file=str(Path(path).resolve()),
            entry_id=entry_id,
            after_sha256=hashlib.sha256(after).hexdigest(),
            created=before is None,
        )
        if before is not None:
            self._path(change.id, "before").write_bytes(before)
        return self._save(change)

    def update(self, change: Change, **fields: Any) -> Change:
        return self._save(Change(**(change.__dict__ | fields)))

    def _save(self, change: Change) -> Change:
        text = json.dumps(change.__dict__, ensure_ascii=False, indent=2) + "\n"
        write_atomic(self._path(change.id, "json"), text.encode("utf-8"))
        return change

    def undo(self, *, by: str = "", store: Store | None = None) -> Change:
        """Put the newest change not undone yet back: the file's exact bytes before it (or no
        file), and its gap topic open again. ConflictError if the file changed since."""
        pending = [c for c in self.changes() if c.undone_at is None]
        if not pending:
            raise ConflictError("nothing to undo: no change in the journal is still in effect")
        change = pending[0]
        path = Path(change.file)
        now = path.read_bytes() if path.exists() else b""
        if hashlib.sha256(now).hexdigest() != change.after_sha256:
            raise ConflictError(
                f"{path} changed after change {change.id} ({change.action} '{change.entry_id}'); "
                "undoing it would lose that; edit the file by hand"
            )
        before = None if change.created else self._path(change.id, "before").read_bytes()
        write_atomic(path, before)
        if change.topic_id is not None and store is not None:
            store.set_gap_topic_status(change.topic_id, TopicStatus.OPEN)
        if change.candidate_id is not None and store is not None:
            store.set_candidate_status(change.candidate_id, CandidateStatus.PENDING)
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        return self.update(change, undone_at=stamp, undone_by=by or whoami())
