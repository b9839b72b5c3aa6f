"""Engine.decide(message, history) -> Decision: answer, clarify or escalate. No I/O.

Order of checks, first match wins:
1. empty message → clarify (ask for the question);
2. an explicit request for a person (phrases/human.txt) → escalate ``asked_for_human``;
3. complaint or anger (phrases/complaint.txt, or shouting) → a calming line, escalate
   ``complaint`` with high priority;
4. retrieval: the best entry and its calibrated confidence;
   - an entry marked ``escalate`` or in a sensitive category → escalate ``sensitive_category``;
   - confidence ≥ answer threshold and no runner-up nearly as likely → answer;
   - otherwise, after ``max_failures`` non-answers in a row → escalate ``repeated_failure``;
   - confidence ≥ clarify threshold → clarify with up to ``max_candidates`` questions;
   - below → the fallback reply, escalate ``low_confidence``.
VIP customers get one priority step up on every escalation.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from typing import Any

from autoreply.knowledge_index import EntryMatch, KnowledgeIndex, match_text
from autoreply.models import (
    Action,
    Candidate,
    Decision,
    FAQEntry,
    Message,
    Priority,
    Reason,
    Role,
    StoredMessage,
)
from autoreply.settings import EngineConfig
from autoreply.text import has_han, normalize

_RANK = (Priority.LOW, Priority.NORMAL, Priority.HIGH, Priority.URGENT)
_PRIORITY_UP = {
    Priority.LOW: Priority.NORMAL,
    Priority.NORMAL: Priority.HIGH,
    Priority.HIGH: Priority.URGENT,
    Priority.URGENT: Priority.URGENT,
}
_NON_ANSWER = {Reason.LOW_CONFIDENCE, Reason.AMBIGUOUS}
_SHOUT = re.compile(r"[!！]{3,}")

TEMPLATES: dict[str, dict[str, str]] = {
    "zh": {
        "empty": "您好，请问有什么可以帮您？请描述一下您的问题。",
        "clarify": "您想问的是下面哪一个？回复编号即可：",
        "fallback": "抱歉，这个问题我暂时回答不了，已为您转接人工客服，请稍候。",
        "human": "好的，正在为您转接人工客服，请稍候。",
        "sensitive": "这个问题需要由人工客服为您处理，已为您转接，请稍候。",
        "repeated": "抱歉没能帮到您，已为您转接人工客服，请稍候。",
        "calming": "非常抱歉给您带来不好的体验，已为您加急转接人工客服。",
    },
    "en": {
        "empty": "Hi! What can I help you with? Please describe your question.",
        "clarify": "Did you mean one of these? Reply with the number:",
        "fallback": "Sorry, I can't answer that yet. I've passed your question to a person "
        "who will reply shortly.",
        "human": "Sure, I'm connecting you with a person. Please wait a moment.",
        "sensitive": "A person needs to handle this one. I've passed it on; please wait a moment.",
        "repeated": "Sorry I couldn't help. I've passed your question to a person.",
        "calming": "I'm very sorry about this experience. I've passed your message to a "
        "person as a priority.",
    },
}


def language(text: str) -> str:
    """``zh`` if the text has Chinese characters, else ``en``."""
    return "zh" if has_han(text) else "en"


def consecutive_failures(history: Sequence[StoredMessage]) -> int:
    """How many bot replies in a row, counting back from the newest, were non-answers."""
    count = 0
    for msg in reversed(history):
        if msg.role is Role.AGENT:
            break  # a person answered in between: start counting afresh
        if msg.role is not Role.BOT:
            continue
        if msg.action is Action.ANSWER or msg.reason not in _NON_ANSWER:
            break
        count += 1
    return count


class Engine:
    """Decides what to do with a message, from the knowledge index alone."""

    def __init__(
        self,
        index: KnowledgeIndex,
        *,
        config: EngineConfig | None = None,
    ) -> None:
        self.index = index
        self.kb = index.kb
        self.config = config or EngineConfig()

    # -- public -------------------------------------------------------------------------
    def decide(self, message: Message | str, *, history: Sequence[StoredMessage] = ()) -> Decision:
        """The decision for one message, given the conversation so far."""
        msg = message if isinstance(message, Message) else Message(text=message)
        return self.decide_many([msg], histories=[history])[0]

    def decide_many(
        self,
        messages: Sequence[Message | str],
        *,
        histories: Sequence[Sequence[StoredMessage]] | None = None,
    ) -> list[Decision]:
        """Decisions for many messages with one batched encoder call (eval, micro-batching)."""
        msgs = [m if isinstance(m, Message) else Message(text=m) for m in messages]
        hist = histories or [() for _ in msgs]
        decisions: list[Decision | None] = [self._rule_based(m) for m in msgs]
        todo = [i for i, d in enumerate(decisions) if d is None]
        if todo:
            matches = self.rank([msgs[i].text for i in todo])
            for i, ranked in zip(todo, matches, strict=True):
                decisions[i] = self._from_matches(msgs[i], ranked, hist[i])
        return [d for d in decisions if d is not None]

    def rank(self, texts: Sequence[str], *, k: int = 10) -> list[list[Candidate]]:
        """The best ``k`` entries for each text with calibrated confidences, best first."""
        ranked = self.index.search(texts, k=k)
        return [self._candidates(matches) for matches in ranked]

    # -- steps --------------------------------------------------------------------------
    def _rule_based(self, msg: Message) -> Decision | None:
        norm = normalize(msg.text)
        lang = language(msg.text)
        t = TEMPLATES[lang]
        if not norm:
            return Decision(
                action=Action.CLARIFY, reason=Reason.EMPTY_MESSAGE, text=t["empty"], normalized=""
            )
        picked = msg.metadata.get("picked")
        if isinstance(picked, str) and picked in self.kb:
            entry = self.kb.get(picked)
            if entry.enabled and not self._sensitive(entry):
                return Decision(
                    action=Action.ANSWER,
                    reason=Reason.CLARIFY_PICKED,
                    text=entry.answer,
                    entry_id=entry.id,
                    confidence=1.0,
                    normalized=norm,
                )
        human = self.kb.phrases.get("human")
        if human is not None and human.find(msg.text):
            return Decision(
                action=Action.ESCALATE,
                reason=Reason.ASKED_FOR_HUMAN,
                text=t["human"],
                priority=self._priority(Priority.NORMAL, msg),
                normalized=norm,
            )
        complaint = self.kb.phrases.get("complaint")
        if (complaint is not None and complaint.find(msg.text)) or _SHOUT.search(msg.text):
            return Decision(
                action=Action.ESCALATE,
                reason=Reason.COMPLAINT,
                text=self._calming(lang, msg.text),
                priority=self._priority(Priority.HIGH, msg),
                normalized=norm,
            )
        return None

    def _from_matches(
        self, msg: Message, candidates: list[Candidate], history: Sequence[StoredMessage]
    ) -> Decision:
        cfg = self.config
        lang = language(msg.text)
        t = TEMPLATES[lang]
        norm = match_text(msg.text, self.kb.synonyms)
        top = candidates[0] if candidates else None
        conf = top.confidence if top else 0.0
        runner_up = candidates[1].probability if len(candidates) > 1 else 0.0
        close_call = top is not None and runner_up >= cfg.runner_up_ratio * top.probability
        base: dict[str, Any] = {"candidates": candidates[: cfg.max_candidates], "normalized": norm}
        if top is not None and conf >= cfg.clarify_threshold:
            entry = self.kb.get(top.entry_id)
            if self._sensitive(entry):
                return Decision(
                    action=Action.ESCALATE,
                    reason=Reason.SENSITIVE_CATEGORY,
                    text=t["sensitive"],
                    entry_id=entry.id,
                    confidence=conf,
                    priority=self._priority(Priority.HIGH, msg),
                    **base,
                )
        if top is not None and conf >= cfg.answer_threshold and not close_call:
            entry = self.kb.get(top.entry_id)
            return Decision(
                action=Action.ANSWER,
                reason=Reason.CONFIDENT,
                text=entry.answer,
                entry_id=entry.id,
                confidence=conf,
                **base,
            )
        if consecutive_failures(history) >= cfg.max_failures:
            return Decision(
                action=Action.ESCALATE,
                reason=Reason.REPEATED_FAILURE,
                text=t["repeated"],
                entry_id=top.entry_id if top else None,
                confidence=conf,
                priority=self._priority(Priority.HIGH, msg),
                **base,
            )
        if top is not None and conf >= cfg.clarify_threshold:
            # Offer the top entry and every runner-up with a real chance (a third of the
            # clarify threshold), never an entry that must go to a person.
            floor = cfg.clarify_threshold / 3
            options = [top] + [
                c
                for c in candidates[1:]
                if c.confidence >= floor and not self._sensitive(self.kb.get(c.entry_id))
            ]
            options = options[: cfg.max_candidates]
            lines = [t["clarify"]] + [f"{i}. {c.question}" for i, c in enumerate(options, 1)]
            return Decision(
                action=Action.CLARIFY,
                reason=Reason.AMBIGUOUS,
                text="\n".join(lines),
                entry_id=top.entry_id,
                confidence=conf,
                candidates=options,
                normalized=norm,
            )
        return Decision(
            action=Action.ESCALATE,
            reason=Reason.LOW_CONFIDENCE,
            text=t["fallback"],
            entry_id=top.entry_id if top else None,
            confidence=conf,
            priority=self._priority(Priority.NORMAL, msg),
            **base,
        )

    # -- helpers ------------------------------------------------------------------------
    @staticmethod
    def _candidates(matches: list[EntryMatch]) -> list[Candidate]:
        return [
            Candidate(
                entry_id=m.entry.id,
                question=m.entry.question,
                category=m.entry.category,
                confidence=round(m.confidence, 4),
                probability=round(m.probability, 4),
                similarity=round(m.similarity, 4),
                matched_text=m.text,
            )
            for m in matches
        ]

    def _sensitive(self, entry: FAQEntry) -> bool:
        if entry.escalate:
            return True
        return any(
            entry.category == c or entry.category.startswith(c.rstrip("/") + "/")
            for c in self.config.sensitive_categories
        )

    def _calming(self, lang: str, text: str) -> str:
        lines = self.kb.calming.get(lang)
        if not lines:
            return TEMPLATES[lang]["calming"]
        # Vary the line, but deterministically: the same message always gets the same one.
        return lines[zlib.crc32(text.encode("utf-8")) % len(lines)]

    @staticmethod
    def _priority(base: Priority, msg: Message) -> Priority:
        priority = _PRIORITY_UP[base] if msg.vip else base
        asked = msg.priority  # a verified sender's floor, never lowers the engine's
        if asked is not None and _RANK.index(asked) > _RANK.index(priority):
            return asked
        return priority
