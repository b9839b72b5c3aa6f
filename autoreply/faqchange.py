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
   records the change in the journal (faqjournal: who, when, what, the file's bytes before),
   from which ``Journal.undo`` puts the newest change back byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from autoreply.errors import ConflictError, KnowledgeError
from autoreply.faqjournal import Change, Journal, whoami
from autoreply.faqwrite import appended, replaced, write_atomic
from autoreply.gap_clustering import TopicConfig
from autoreply.gap_suggestions import Suggestion, suggest
from autoreply.knowledge import KnowledgeBase, bundled_knowledge_dir, cross_check, parse_planned
from autoreply.knowledge_index import KnowledgeIndex
from autoreply.models import FAQEntry
from autoreply.store import Store, TopicKind, TopicStatus, VariantStatus

ACCEPTED_FILE = "accepted.yaml"


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
    variant_ids: tuple[int, ...] = ()
    """The learned variants it writes into the entry (autoreply.learning; undo makes them
    pending again)."""


def writable_root(knowledge: Path) -> Path:
    """The knowledge path, if changes may be written there (not the bundled demo)."""
    if knowledge.resolve() == bundled_knowledge_dir().resolve():
        raise ConflictError(
            f"the knowledge is the bundled demo ({knowledge}); point autoreply at a folder of "
            "your own (--knowledge FOLDER or AUTOREPLY_KNOWLEDGE) to change it"
        )
    return knowledge


def default_target(knowledge: Path) -> Path:
    """Where an accepted new entry goes: ``accepted.yaml`` in the knowledge folder (a single
    FAQ file: that file, since nothing beside it is loaded)."""
    return knowledge / ACCEPTED_FILE if knowledge.is_dir() else knowledge


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
    (cosine at least the topic-joining ``assign_threshold``) and are nearer to it than to any
    entry already in the knowledge base. "What the question asks" is the question itself,
    then the centre of the question and the paraphrases found that way: a variant worded
    differently from the question but as close to its paraphrases' centre is ticked too. The
    centre is built from the question's paraphrases only, so a topic of unrelated questions
    cannot pull it their way and still ticks few."""
    if not suggestion.variants:
        return []
    if index is None:
        return [False] * len(suggestion.variants)
    limit = TopicConfig().assign_threshold if threshold is None else threshold
    vectors = index.encoder.encode([suggestion.question, *suggestion.variants])
    own = vectors[1:] @ vectors[0]
    if suggestion.kind is TopicKind.NEAR_MISS:
        return [bool(s >= limit) for s in own]
    faq = index.index.vectors()  # the knowledge base's texts, encoded when it was indexed
    other = (vectors[1:] @ faq.T).max(axis=1) if len(faq) else np.full(len(own), -1.0)
    paraphrase = (own >= limit) & (own > other)
    centre = vectors[0] + vectors[1:][paraphrase].sum(axis=0)
    near = vectors[1:] @ (centre / max(float(np.linalg.norm(centre)), 1e-12))
    return [
        bool(p or (n >= limit and n > o)) for p, n, o in zip(paraphrase, near, other, strict=True)
    ]


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
    if draft.variant_ids:
        change = journal.update(change, variant_ids=list(draft.variant_ids))
    if draft.topic_id is not None and store is not None:
        store.set_gap_topic_status(draft.topic_id, TopicStatus.ACCEPTED)
    if draft.variant_ids and store is not None:
        store.set_variant_status(list(draft.variant_ids), VariantStatus.ACCEPTED, by=by or whoami())
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
