"""Learning from answered conversations: every sign that a customer's question belongs to an FAQ
entry becomes evidence, collected per entry as candidate variants; a person accepts one (or the
team lets those with enough evidence in automatically) and it is written into the entry.

Evidence (``LearningSource``), each a row in the store with the question redacted:

- ``picked``: the customer picked the entry from "did you mean": their question before it;
- ``agent_script``: an agent answered an escalated question with an entry's answer (a
  standard script, maybe lightly edited: normalized equal, or word overlap at least
  ``SCRIPT_OVERLAP`` with exactly one entry's answer, a short answer kept whole; not the
  answer the customer voted not helpful, unless sent unchanged);
- ``helpful``: the customer voted the entry's answer helpful: the question it answered;
- ``promote``: an agent promoted a ticket whose answer is an entry's answer.

A text that is already one of the entry's texts (after normalize) is not a candidate. Guard
against poisoning: a candidate is **flagged** (shown, never accepted automatically) when the
bot ranked another entry first for it, confidently enough to answer it
(``answer_threshold``), unless the customer voted that answer not helpful (then the agent's
script corrects the bot), or when it is a text of another entry (a conflict).

Accepting writes the variants into their entry in place (faqchange: only that entry's lines
change, ``autoreply check`` first, journalled, ``autoreply undo`` makes them pending again) and
reloads. Nothing goes in without a person's say-so unless ``learning.auto_accept_min_count``
is set (0, off, by default). The front doors (``autoreply learn``, the admin API, the
console's knowledge page, the weekly report) all come here.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoreply import faqchange
from autoreply.errors import AutoreplyError, ConflictError, KnowledgeError
from autoreply.faqjournal import Change, Journal
from autoreply.knowledge import KnowledgeBase
from autoreply.knowledge_index import KnowledgeIndex
from autoreply.models import Action, FAQCandidate, Reason, Role, StoredMessage, Ticket
from autoreply.redact import redact
from autoreply.store import LearnedVariant, LearningSource, Store, VariantStatus
from autoreply.text import normalize, to_simplified, tokenize

log = logging.getLogger(__name__)

SCRIPT_OVERLAP = 0.8
"""An agent reply shares at least this share of words (Jaccard) with one entry's answer: it is
that entry's script, lightly edited."""
SCRIPT_EDIT_WORDS = 10
"""An answer of fewer words than this is lightly edited only when the reply holds it whole as a
clause, words added before or after it (a greeting, a sign-off): in a short answer one word
changes what it says ("your balance" and "your rewards balance" are two answers). With
SCRIPT_OVERLAP, an answer of four to seven words takes one added word at most."""
_STOPS = "。.!！?？"
"""Closing marks an answer's last sentence may lose when an agent adds a sign-off."""

_NOT_A_QUESTION = re.compile(r"^[\d\s.,#]*$")
# A ticket opened for a complaint holds anger, not a question about an entry.
_NOT_EVIDENCE = {Reason.COMPLAINT.value}


@dataclass(frozen=True)
class Learned:
    """A question shown to belong to an entry, before it is stored."""

    entry_id: str
    text: str
    source: LearningSource
    conversation_id: str | None = None
    message_id: int | None = None
    candidates: Sequence[dict[str, Any]] = ()
    """The bot's ranked candidates for the question when it was asked (entry_id, confidence)."""


_owners_cache: list[tuple[KnowledgeBase, dict[str, set[str]]]] = []


def owners(kb: KnowledgeBase) -> dict[str, set[str]]:
    """Normalized question or variant -> the ids of the entries that have it (kept for the
    newest knowledge base: evidence arrives one message at a time)."""
    if _owners_cache and _owners_cache[0][0] is kb:
        return _owners_cache[0][1]
    found: dict[str, set[str]] = defaultdict(set)
    for entry in kb.entries:
        for text in _texts(entry.question, entry.variants):
            found[text].add(entry.id)
    _owners_cache[:] = [(kb, dict(found))]
    return _owners_cache[0][1]


def flag_for(
    kb: KnowledgeBase,
    entry_id: str,
    norm: str,
    candidates: Sequence[dict[str, Any]],
    *,
    answer_threshold: float,
) -> str | None:
    """Why a candidate must wait for a person, or None: it is another entry's text (a
    conflict), or the bot ranked another entry first with confidence to answer it."""
    others = sorted(owners(kb).get(norm, set()) - {entry_id})
    if others:
        return f"conflict: it is a text of entry '{others[0]}'"
    if candidates:
        top = candidates[0]
        confidence = float(top.get("confidence") or 0.0)
        if top.get("entry_id") != entry_id and confidence >= answer_threshold:
            return f"closer to entry '{top.get('entry_id')}' ({confidence:.2f})"
    return None


def _texts(question: str, variants: Iterable[str]) -> set[str]:
    return {normalize(t) for t in (question, *variants)}


def record(
    store: Store, kb: KnowledgeBase, learned: Learned | None, *, answer_threshold: float
) -> LearnedVariant | None:
    """Store one piece of evidence (redacted); None when it teaches nothing (no evidence, an
    unknown entry, a number or empty text, a text the entry has already, counted already)."""
    if learned is None or learned.entry_id not in kb:
        return None
    text = redact(learned.text.strip())
    norm = normalize(text)
    if not norm or _NOT_A_QUESTION.match(norm):
        return None
    if learned.entry_id in owners(kb).get(norm, set()):
        return None
    flag = flag_for(
        kb, learned.entry_id, norm, learned.candidates, answer_threshold=answer_threshold
    )
    return store.add_evidence(
        entry_id=learned.entry_id,
        text=text,
        normalized=norm,
        source=learned.source,
        conversation_id=learned.conversation_id,
        message_id=learned.message_id,
        flag=flag,
    )


# -- recognising evidence -------------------------------------------------------------------


def from_pick(
    entry_id: str, history: Sequence[StoredMessage], pick: StoredMessage
) -> Learned | None:
    """The question a "did you mean" pick answers: the customer message the newest
    clarification that offered ``entry_id`` replied to. None if no clarification offered it
    (a pick from nowhere is no evidence)."""
    by_id = {m.id: m for m in history}
    for bot in reversed(history):
        if bot.role is not Role.BOT or bot.action is not Action.CLARIFY:
            continue
        offered = (bot.details or {}).get("candidates") or []
        if not any(c.get("entry_id") == entry_id for c in offered):
            return None
        asked = by_id.get(bot.reply_to) if bot.reply_to is not None else None
        if asked is None:
            return None
        return Learned(
            entry_id, asked.text, LearningSource.PICKED, pick.conversation_id, pick.id, offered
        )
    return None


def script_entry(kb: KnowledgeBase, reply: str, *, disputed: Iterable[str] = ()) -> str | None:
    """The entry whose answer an agent's reply is: normalized equal, or lightly edited
    (``lightly_edited``) from exactly one entry's answer. An entry in ``disputed``
    (the customer voted its answer not helpful) counts only for its exact answer: a reply that
    merely resembles it is the agent's correction ("your *rewards* balance ..."), not its
    script."""
    norm = normalize(reply)
    if not norm:
        return None
    equal = [e.id for e in kb.enabled if normalize(e.answer) == norm]
    if equal:
        return equal[0] if len(equal) == 1 else None
    skip = set(disputed)
    close = [e.id for e in kb.enabled if e.id not in skip and lightly_edited(reply, e.answer)]
    return close[0] if len(close) == 1 else None


def lightly_edited(reply: str, answer: str) -> bool:
    """Whether ``reply`` is ``answer`` lightly edited: word overlap (after normalize) at least
    SCRIPT_OVERLAP and, for an answer of fewer than SCRIPT_EDIT_WORDS words, the answer (its
    closing full stop aside) whole in the reply as a clause: not glued to a word before it, and
    followed by the end of the reply or a punctuation mark. "Go to Billing → Cancel. Thanks!"
    holds "Go to Billing → Cancel."; "Your balance is in the app settings" does not hold "Your
    balance is in the app", nor "[… calendar_update]" "[… calendar]"."""
    mine, theirs = tokenize(normalize(reply)), tokenize(normalize(answer))
    if not mine or not theirs:
        return False
    if len(set(mine) & set(theirs)) / len(set(mine) | set(theirs)) < SCRIPT_OVERLAP:
        return False
    return len(theirs) >= SCRIPT_EDIT_WORDS or _holds_clause(_squash(reply), _squash(answer))


def _holds_clause(text: str, answer: str) -> bool:
    body = answer.rstrip(_STOPS + " ")
    at = text.find(body) if body else -1
    while at >= 0:
        end = at + len(body)
        glued_before = at > 0 and text[at - 1].isalnum()
        glued_after = end < len(text) and (text[end].isalnum() or text[end].isspace())
        if not glued_before and not glued_after:
            return True
        at = text.find(body, at + 1)
    return False


def _squash(text: str) -> str:
    """NFKC, simplified Chinese, casefolded, spaces collapsed: punctuation kept."""
    return " ".join(to_simplified(unicodedata.normalize("NFKC", text)).casefold().split())


def _disputed(ticket: Ticket) -> list[str]:
    """The entry of the bot's last answer before the ticket when the customer voted it not
    helpful."""
    attempts = ticket.context.get("attempts") or []
    return [
        str(a["entry_id"]) for a in attempts[-1:] if a.get("entry_id") and a.get("helpful") is False
    ]


def from_agent_reply(kb: KnowledgeBase, ticket: Ticket, reply: StoredMessage) -> Learned | None:
    """An agent's reply that is an entry's script answers the ticket's question (for a
    request for a person, the customer's message before it; a complaint is no question).
    The bot's answer to that message is what the reply is checked against for a flag, unless
    the customer voted it not helpful: then the customer disputed it, and the agent's choice
    is the correction, not a rival."""
    question = ticket.context.get("question")
    candidates = ticket.context.get("candidates") or []
    if ticket.reason is Reason.ASKED_FOR_HUMAN:
        asked = ticket.context.get("messages") or []
        question = asked[-2].get("text") if len(asked) >= 2 else None
        attempts = ticket.context.get("attempts") or []
        candidates = [
            {"entry_id": a.get("entry_id"), "confidence": a.get("confidence")}
            for a in attempts[-1:]
            if a.get("entry_id") and a.get("helpful") is not False
        ]
    elif ticket.reason.value in _NOT_EVIDENCE:
        return None
    entry_id = script_entry(kb, reply.text, disputed=_disputed(ticket))
    if not question or entry_id is None:
        return None
    return Learned(
        entry_id,
        str(question),
        LearningSource.AGENT_SCRIPT,
        ticket.conversation_id,
        reply.id,
        candidates,
    )


def from_feedback(
    answer: StoredMessage, question: StoredMessage | None, *, helpful: bool
) -> Learned | None:
    """A helpful vote on an answer: its question belongs to the answer's entry."""
    if not helpful or answer.entry_id is None or answer.action is not Action.ANSWER:
        return None
    if question is None or answer.reason is Reason.CLARIFY_PICKED:
        return None  # a pick's text is the option's number; the pick itself is the evidence
    candidates = (answer.details or {}).get("candidates") or []
    return Learned(
        answer.entry_id,
        question.text,
        LearningSource.HELPFUL,
        answer.conversation_id,
        answer.id,
        candidates,
    )


def from_promote(kb: KnowledgeBase, candidate: FAQCandidate, ticket: Ticket) -> Learned | None:
    """A promoted answer that is an entry's answer: the question belongs to that entry."""
    entry_id = script_entry(kb, candidate.answer, disputed=_disputed(ticket))
    if entry_id is None:
        return None
    return Learned(
        entry_id,
        candidate.question,
        LearningSource.PROMOTE,
        ticket.conversation_id,
        candidate.id,
        ticket.context.get("candidates") or [],
    )


# -- review ---------------------------------------------------------------------------------


def pending(store: Store, *, entry_id: str | None = None) -> list[LearnedVariant]:
    """Candidate variants waiting for a person, most evidence first."""
    return store.learned_variants(entry_id=entry_id, status=VariantStatus.PENDING)


def by_entry(variants: Iterable[LearnedVariant]) -> dict[str, list[LearnedVariant]]:
    grouped: dict[str, list[LearnedVariant]] = defaultdict(list)
    for v in variants:
        grouped[v.entry_id].append(v)
    return dict(grouped)


def drafts(store: Store, kb: KnowledgeBase, variant_ids: Sequence[int]) -> list[faqchange.Draft]:
    """One in-place edit per entry adding the chosen pending variants to it."""
    chosen = [store.get_learned_variant(i) for i in dict.fromkeys(variant_ids)]
    for v in chosen:
        if v.status is not VariantStatus.PENDING:
            raise ConflictError(f"candidate variant {v.id} is {v.status.value} already")
        if v.entry_id not in kb:
            raise KnowledgeError(
                f"candidate variant {v.id} belongs to entry '{v.entry_id}', which is no "
                "longer in the knowledge base; dismiss it"
            )
    owner: dict[str, int] = {}
    for v in chosen:
        if owner.setdefault(v.normalized, v.id) != v.id:
            raise ConflictError(
                f"candidate variants {owner[v.normalized]} and {v.id} are one text for two "
                "entries; accept one of them"
            )
    out = []
    for entry_id, variants in by_entry(chosen).items():
        entry = kb.get(entry_id)
        have = _texts(entry.question, entry.variants)
        new = [v for v in variants if v.normalized not in have]
        draft = faqchange.edit_draft(
            kb, entry_id, {"variants": [*entry.variants, *(v.text for v in new)]}
        )
        out.append(
            faqchange.Draft(
                draft.entry, draft.path, draft.replaces, variant_ids=tuple(v.id for v in variants)
            )
        )
    return out


def accept(
    store: Store,
    kb: KnowledgeBase,
    variant_ids: Sequence[int],
    *,
    knowledge: Path,
    reload: Callable[[], KnowledgeIndex],
    by: str,
    force: bool = False,
) -> list[Change]:
    """Write the variants into their entries (one journalled in-place edit per entry), mark
    them accepted and reload. Conflicts refuse the write unless ``force``; a failed reload
    undoes it. The engine answers the new phrasings from the reload on."""
    faqchange.writable_root(knowledge)
    journal = Journal(knowledge)
    changes = []
    for draft in drafts(store, kb, variant_ids):
        # One entry per draft, each edited once, read from its file as the earlier drafts
        # left it; a text chosen for two entries was refused by drafts().
        changes.append(
            faqchange.apply(
                kb, draft, journal=journal, action="learn", by=by, force=force, store=store
            )
        )
    try:
        reload()
    except BaseException:
        for _ in changes:
            journal.undo(by=f"{by} (reload failed)", store=store)
        raise
    return changes


def dismiss(store: Store, variant_ids: Sequence[int], *, by: str) -> list[LearnedVariant]:
    """Leave candidate variants out of the knowledge base (they stay listed as dismissed)."""
    return store.set_variant_status(list(variant_ids), VariantStatus.DISMISSED, by=by)


def due(store: Store, *, min_count: int, kb: KnowledgeBase | None = None) -> list[LearnedVariant]:
    """Pending, unflagged variants with at least ``min_count`` pieces of evidence (none when
    ``min_count`` is 0: automation off); with ``kb``, only those of its entries whose text no
    other entry of it has now (the knowledge may have grown since the evidence came in)."""
    if min_count <= 0:
        return []
    found = [v for v in pending(store) if v.flag is None and v.count >= min_count]
    if kb is None:
        return found
    taken = owners(kb)
    return [
        v for v in found if v.entry_id in kb and not (taken.get(v.normalized, set()) - {v.entry_id})
    ]


def auto_accept(
    store: Store,
    kb: KnowledgeBase,
    variant: LearnedVariant | None,
    *,
    min_count: int,
    knowledge: Path,
    reload: Callable[[], KnowledgeIndex],
) -> bool:
    """With ``min_count`` set (``learning.auto_accept_min_count``), accept a pending,
    unflagged variant that reached it and no other entry has by now, as ``auto``. A refusal
    is logged, never raised: the customer's or agent's action that brought it stands."""
    if variant is None or min_count <= 0 or variant.flag or variant.count < min_count:
        return False
    if variant.status is not VariantStatus.PENDING:
        return False
    if owners(kb).get(variant.normalized, set()) - {variant.entry_id}:
        return False
    try:
        accept(store, kb, [variant.id], knowledge=knowledge, reload=reload, by="auto")
    except AutoreplyError as exc:
        log.warning("auto-accept refused", extra={"variant_id": variant.id, "error": str(exc)})
        return False
    log.info("auto-accepted", extra={"variant_id": variant.id, "entry_id": variant.entry_id})
    return True
