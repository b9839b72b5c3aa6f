"""AutoReply: the engine and the store wired together. The library's entry point.

``bot = AutoReply.from_path("knowledge/")`` then ``bot.handle(Message(...))``: reads the
conversation from the store, asks the pure engine, writes the messages, opens (or joins) a
ticket on escalation and logs FAQ gaps with personal data redacted.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from autoreply import csat, learning
from autoreply.encoder import Encoder, get_encoder
from autoreply.engine import Engine, language
from autoreply.errors import AutoreplyError, ConflictError
from autoreply.gap_log import log_rejected, log_unanswered
from autoreply.handoff import handoff_payload
from autoreply.hours import BusinessHours
from autoreply.knowledge import KnowledgeBase, bundled_knowledge_dir, load_knowledge
from autoreply.knowledge_index import KnowledgeIndex
from autoreply.models import (
    Action,
    Decision,
    FAQCandidate,
    Feedback,
    Message,
    Reason,
    Reply,
    Role,
    StoredMessage,
    Ticket,
)
from autoreply.settings import Settings
from autoreply.store import LearnedVariant, Store, open_store
from autoreply.tuning.cache import encoder_for

if TYPE_CHECKING:
    from autoreply.gap_topics import TopicRun

log = logging.getLogger(__name__)

# Non-answers that say something is missing from the FAQ (a person asking for a human, or
# an angry message, is not a gap in the knowledge base).
GAP_REASONS = {Reason.LOW_CONFIDENCE, Reason.AMBIGUOUS, Reason.REPEATED_FAILURE}
HISTORY_TURNS = 20
TOPIC_ATTEMPTS = 3
"""update_gap_topics() tries this often when another replica's update collides with its own."""

_WITH_AGENT = {
    "zh": "您的消息已转给人工客服，请稍候。",
    "en": "Your message has been passed to the person handling your request.",
}
_OUT_OF_HOURS = {
    "zh": "现在是非工作时间，人工客服将于 {when} 回复您。",
    "en": "We're outside business hours; a person will reply from {when}.",
}


def resolve_knowledge_path(path: str | Path) -> Path:
    """The given path, or the bundled demo knowledge base when the default is absent."""
    path = Path(path)
    if path.exists() or path != Path("knowledge"):
        return path
    return bundled_knowledge_dir()


class AutoReply:
    """The bot: answers, clarifies or escalates each message and keeps the record."""

    def __init__(
        self,
        engine: Engine,
        store: Store,
        *,
        settings: Settings | None = None,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self._engine = engine
        self.store = store
        self.hours = BusinessHours(self.settings.hours)
        self._now = now or (lambda: datetime.now(UTC))
        self._swap = threading.Lock()
        self._knowledge_version: int | None = None
        """The store's knowledge version this bot's engine reflects (None: not read yet)."""

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_settings(
        cls,
        settings: Settings | None = None,
        *,
        encoder: Encoder | None = None,
        store: Store | None = None,
        now: Callable[[], datetime] | None = None,
    ) -> AutoReply:
        """Load the knowledge base, build or reuse the index, open the store."""
        settings = settings or Settings()
        opened = store is None
        store = store or open_store(settings.db)
        try:
            # Read before loading: a reload elsewhere while we load is then seen by
            # sync_knowledge() instead of being missed.
            version = store.knowledge_version()
            engine = build_engine(settings, encoder=encoder)
        except BaseException:
            if opened:
                store.close()
            raise
        bot = cls(engine, store, settings=settings, now=now)
        bot._knowledge_version = version
        return bot

    @classmethod
    def from_path(
        cls,
        knowledge: str | Path = "knowledge",
        *,
        db: str | Path | None = None,
        settings: Settings | None = None,
        encoder: Encoder | None = None,
    ) -> AutoReply:
        """``AutoReply.from_path("knowledge/", db="bot.db")``: the common case in one call."""
        base = settings or Settings()
        changes: dict[str, Any] = {"knowledge": Path(knowledge)}
        if db is not None:
            changes["db"] = str(db)
        return cls.from_settings(base.with_overrides(**changes), encoder=encoder)

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def kb(self) -> KnowledgeBase:
        return self._engine.kb

    def reload(self, knowledge: str | Path | None = None) -> KnowledgeIndex:
        """Load the knowledge base again and swap the engine atomically: a message being
        handled finishes on the old index. Raises on a bad knowledge base (old one kept).

        The reload is counted in the store (``bump_knowledge_version``), so every other
        replica sharing the store reloads its own knowledge folder too (sync_knowledge)."""
        settings = self.settings
        if knowledge is not None:
            settings = settings.with_overrides(knowledge=Path(knowledge))
        index = self._swap_in(settings)
        self._knowledge_version = self.store.bump_knowledge_version()
        return index

    def sync_knowledge(self) -> bool:
        """Reload if the knowledge base was reloaded elsewhere (another replica, the CLI)
        since this bot loaded it, i.e. the store's knowledge version moved; True if it did.

        The new version is noted before loading, so a broken knowledge base raises once
        here (the old one keeps answering) rather than on every call."""
        current = self.store.knowledge_version()
        seen = self._knowledge_version
        self._knowledge_version = current
        if seen is None or current == seen:
            return False
        self._swap_in(self.settings)
        log.info("knowledge reloaded elsewhere", extra={"knowledge_version": current})
        return True

    def _swap_in(self, settings: Settings) -> KnowledgeIndex:
        engine = build_engine(settings, encoder=self._engine.index.encoder)
        with self._swap:
            self._engine = engine
            self.settings = settings
        return engine.index

    def close(self) -> None:
        self.store.close()

    def update_gap_topics(self, *, rebuild: bool = False) -> TopicRun:
        """Bring the FAQ gap topics up to date: new gaps join the nearest topic or form new
        ones, with the current index's encoder (``autoreply.gap_topics.update_topics``). The CLI,
        the API and the console all call this before they show topics or the weekly report;
        ``rebuild`` forgets every topic first. Two replicas updating at once can collide (one
        retires a topic the other is filling); the loser starts over from what is stored."""
        from autoreply.gap_topics import update_topics  # clustering is not needed to answer

        for attempt in range(TOPIC_ATTEMPTS):
            try:
                return update_topics(self.store, self.engine.index, rebuild=rebuild)
            except ConflictError:
                if attempt == TOPIC_ATTEMPTS - 1:
                    raise
                log.info("gap topics changed meanwhile; updating again", extra={"attempt": attempt})
        raise AssertionError("unreachable")

    def __enter__(self) -> AutoReply:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- customer side ------------------------------------------------------------------
    def handle(self, message: Message | str, **fields: Any) -> Reply:
        """Answer, clarify or escalate one customer message and record it.

        ``bot.handle("怎么退款", user_id="u1")`` is short for ``bot.handle(Message(...))``.
        A message whose ``message_id`` was seen before on the same channel is not handled
        again: the first reply comes back with ``duplicate=True``.
        """
        msg = message if isinstance(message, Message) else Message(text=message, **fields)
        return self.handle_many([msg])[0]

    @overload
    def handle_many(
        self, messages: Sequence[Message], *, return_exceptions: Literal[False] = False
    ) -> list[Reply]: ...

    @overload
    def handle_many(
        self, messages: Sequence[Message], *, return_exceptions: Literal[True]
    ) -> list[Reply | AutoreplyError]: ...

    def handle_many(
        self, messages: Sequence[Message], *, return_exceptions: bool = False
    ) -> list[Reply] | list[Reply | AutoreplyError]:
        """handle() for many messages with one encoder call per round (micro-batching).

        The same as calling handle() on each in order: a message whose conversation (or
        message id) already appears earlier in the list waits for a later round, so it sees
        the earlier one's reply. With ``return_exceptions``, an AutoreplyError for one
        message is returned in its place instead of raised.
        """
        engine = self._engine  # one index for the whole call, even if reload() swaps it
        messages = [self._standing(m) for m in messages]
        results: list[Reply | AutoreplyError | None] = [None] * len(messages)
        todo = list(range(len(messages)))
        while todo:
            now: list[int] = []
            later: list[int] = []
            seen: set[tuple[str, str, str]] = set()
            for i in todo:
                msg = messages[i]
                keys = {("conversation", msg.conversation, "")}
                if msg.message_id:
                    keys.add(("message", msg.channel, msg.message_id))
                (later if keys & seen else now).append(i)
                seen |= keys
            self._handle_round(engine, messages, now, results, return_exceptions)
            todo = later
        return [r for r in results if r is not None]

    def _handle_round(
        self,
        engine: Engine,
        messages: Sequence[Message],
        indexes: list[int],
        results: list[Reply | AutoreplyError | None],
        return_exceptions: bool,
    ) -> None:
        def fail(i: int, exc: AutoreplyError) -> None:
            if not return_exceptions:
                raise exc
            results[i] = exc

        ready: list[tuple[int, list[StoredMessage], Ticket | None]] = []
        for i in indexes:
            msg = messages[i]
            try:
                earlier = self._earlier_reply(msg) if msg.message_id else None
                if earlier is not None:
                    results[i] = earlier
                    continue
                history = self.store.history(msg.conversation, limit=HISTORY_TURNS)
                if (rated := csat.answer(self.store, msg, history)) is not None:
                    results[i] = rated  # the answer to "how did we do?" after a resolve
                    continue
                ready.append((i, history, self.store.active_ticket(msg.conversation)))
            except AutoreplyError as exc:
                fail(i, exc)
        asking = [(i, history) for i, history, active in ready if active is None]
        decisions: dict[int, Decision] = {}
        if asking:
            try:
                decided = engine.decide_many(
                    [messages[i] for i, _ in asking], histories=[h for _, h in asking]
                )
            except AutoreplyError as exc:
                for i, _ in asking:
                    fail(i, exc)
                ready = [r for r in ready if r[2] is not None]
            else:
                decisions = {i: d for (i, _), d in zip(asking, decided, strict=True)}
        for i, history, active in ready:
            msg = messages[i]
            decision = decisions[i] if active is None else self._with_agent(msg)
            try:
                results[i] = self._record(msg, decision, history, active)
            except AutoreplyError as exc:
                fail(i, exc)

    def _record(
        self,
        msg: Message,
        decision: Decision,
        history: list[StoredMessage],
        active: Ticket | None,
    ) -> Reply:
        """Store the customer message and the bot's reply; open a ticket or log a gap.

        All in one transaction: a crash half-way leaves none of it, so the channel's retry
        of the message is handled afresh (a customer message stored without its reply
        would make every retry a ConflictError)."""
        conv = msg.conversation
        learned: LearnedVariant | None = None
        with self.store.atomic():
            try:
                customer = self.store.add_message(
                    conversation_id=conv,
                    user_id=msg.user_id,
                    channel=msg.channel,
                    role=Role.CUSTOMER,
                    text=msg.text,
                    external_id=msg.message_id,
                    ticket_id=active.id if active else None,
                )
            except ConflictError:
                earlier = self._earlier_reply(msg)  # the same message raced in concurrently
                if earlier is not None:
                    return earlier
                raise
            ticket = active
            gap_id = None
            if decision.reason in GAP_REASONS:
                gap_id = log_unanswered(self.store, msg, decision)
            if decision.action is Action.ESCALATE and active is None:
                ticket = self._open_ticket(msg, decision, history, customer)
            text = decision.text
            out_of_hours, next_open = False, None
            if ticket is not None and active is None:
                now = self._now()
                if not self.hours.is_open(now):
                    out_of_hours, next_open = True, self.hours.next_open(now)
                    text = f"{text}\n{self._out_of_hours_text(msg.text, next_open)}"
            if decision.reason is Reason.CLARIFY_PICKED and decision.entry_id:
                learned = self._learn(learning.from_pick(decision.entry_id, history, customer))
            details = {
                "candidates": [c.model_dump(mode="json") for c in decision.candidates],
                "priority": decision.priority.value,
                "gap_id": gap_id,
                "out_of_hours": out_of_hours,
                "next_open": next_open.isoformat() if next_open else None,
            }
            bot = self.store.add_message(
                conversation_id=conv,
                user_id=msg.user_id,
                channel=msg.channel,
                role=Role.BOT,
                text=text,
                action=decision.action,
                reason=decision.reason,
                entry_id=decision.entry_id,
                confidence=decision.confidence,
                ticket_id=ticket.id if ticket else None,
                reply_to=customer.id,
                details=details,
            )
        self._auto_accept(learned)
        log.info(
            "handled",
            extra={
                "conversation_id": conv,
                "decision": decision.action.value,
                "reason": decision.reason.value,
                "entry_id": decision.entry_id,
                "confidence": decision.confidence,
            },
        )
        return Reply(
            decision=decision.action,
            reason=decision.reason,
            text=text,
            entry_id=decision.entry_id,
            confidence=decision.confidence,
            candidates=decision.candidates,
            priority=decision.priority,
            conversation_id=conv,
            message_id=bot.id,
            ticket_id=ticket.id if ticket else None,
            gap_id=gap_id,
            out_of_hours=out_of_hours,
            next_open=next_open,
        )

    def feedback(self, message_id: int, *, helpful: bool, comment: str | None = None) -> Feedback:
        """Record whether a bot answer helped. A helpful vote is evidence for learning; a
        not-helpful vote on an answer logs its question as an FAQ gap (``not_helpful``, once
        per answer): the bot answered it, but not what was asked."""
        with self.store.atomic():
            vote = self.store.add_feedback(message_id, helpful=helpful, comment=comment)
            first = len(self.store.list_feedback(message_ids=[message_id])) == 1
            answer = self.store.get_message(message_id)
            question = None
            if answer.reply_to is not None:
                question = self.store.get_message(answer.reply_to)
            if not helpful and question is not None and first:
                log_rejected(self.store, self.kb, answer, question)
            learned = self._learn(learning.from_feedback(answer, question, helpful=helpful))
        self._auto_accept(learned)
        return vote

    # -- agent side ---------------------------------------------------------------------
    def claim(self, ticket_id: int, agent: str) -> Ticket:
        return self.store.claim_ticket(ticket_id, agent)

    def reply(self, ticket_id: int, *, agent: str, text: str) -> StoredMessage:
        """An agent's reply; one that is an entry's script is evidence for learning."""
        with self.store.atomic():
            message = self.store.agent_reply(ticket_id, agent=agent, text=text)
            ticket = self.store.get_ticket(ticket_id)
            learned = self._learn(learning.from_agent_reply(self.kb, ticket, message))
        self._auto_accept(learned)
        return message

    def resolve(self, ticket_id: int, *, agent: str, resolution: str | None = None) -> Ticket:
        """Resolve the ticket and ask the customer, in the conversation, for a 1-5 rating
        (the service delivers the question through the conversation's channel)."""
        with self.store.atomic():
            ticket = self.store.resolve_ticket(ticket_id, agent=agent, resolution=resolution)
            csat.ask(self.store, ticket)
        return ticket

    def transfer(self, ticket_id: int, *, agent: str, to_agent: str) -> Ticket:
        return self.store.transfer_ticket(ticket_id, agent=agent, to_agent=to_agent)

    def promote(
        self,
        ticket_id: int,
        *,
        agent: str,
        question: str | None = None,
        answer: str | None = None,
        category: str | None = None,
    ) -> FAQCandidate:
        with self.store.atomic():
            candidate = self.store.promote(
                ticket_id, agent=agent, question=question, answer=answer, category=category
            )
            ticket = self.store.get_ticket(ticket_id)
            learned = self._learn(learning.from_promote(self.kb, candidate, ticket))
        self._auto_accept(learned)
        return candidate

    # -- learning -----------------------------------------------------------------------
    def _learn(self, learned: learning.Learned | None) -> LearnedVariant | None:
        threshold = self.settings.engine.answer_threshold
        return learning.record(self.store, self.kb, learned, answer_threshold=threshold)

    def _auto_accept(self, variant: LearnedVariant | None) -> None:
        learning.auto_accept(
            self.store,
            self.kb,
            variant,
            min_count=self.settings.learning.auto_accept_min_count,
            knowledge=resolve_knowledge_path(self.settings.knowledge),
            reload=self.reload,
        )

    # -- internals ----------------------------------------------------------------------
    def _standing(self, msg: Message) -> Message:
        """The message with the standing its sender can prove: an unverified sender's
        trusted metadata dropped; a verified customer on the VIP list marked VIP."""
        if not msg.verified:
            return msg.untrusted()
        if msg.vip or not self.store.is_vip(msg.channel, msg.user_id):
            return msg
        metadata = {**msg.metadata, "vip": True, "vip_source": "list"}
        return msg.model_copy(update={"metadata": metadata})

    def _earlier_reply(self, msg: Message) -> Reply | None:
        """The first reply to this message id on this channel, whole, or None if the id is
        new. ConflictError when the id was used for a different text: a client reusing ids
        would otherwise get an answer to another question."""
        assert msg.message_id is not None
        first = self.store.find_message(channel=msg.channel, external_id=msg.message_id)
        if first is None:
            return None
        if first.conversation_id != msg.conversation or first.text != msg.text:
            raise ConflictError(
                f"message_id '{msg.message_id}' was already used on channel '{msg.channel}' "
                "for a different message; give every new message its own message_id "
                "(repeat an id only to retry the very same message)"
            )
        bot = self.store.reply_to(first.id)
        if bot is None:
            return None
        ticket = self.store.get_ticket(bot.ticket_id) if bot.ticket_id else None
        details = bot.details or {}
        priority = details.get("priority") or (
            ticket.priority if ticket else Decision.model_fields["priority"].default
        )
        return Reply(
            decision=bot.action or Action.ESCALATE,
            reason=bot.reason or Reason.AGENT_HANDLING,
            text=bot.text,
            entry_id=bot.entry_id,
            confidence=bot.confidence or 0.0,
            candidates=details.get("candidates", []),
            priority=priority,
            conversation_id=first.conversation_id,
            message_id=bot.id,
            ticket_id=bot.ticket_id,
            gap_id=details.get("gap_id"),
            out_of_hours=details.get("out_of_hours", False),
            next_open=details.get("next_open"),
            duplicate=True,
        )

    def _with_agent(self, msg: Message) -> Decision:
        return Decision(
            action=Action.ESCALATE,
            reason=Reason.AGENT_HANDLING,
            text=_WITH_AGENT[language(msg.text)],
        )

    def _open_ticket(
        self,
        msg: Message,
        decision: Decision,
        history: list[StoredMessage],
        customer: StoredMessage,
    ) -> Ticket:
        suggested = msg.metadata.get("agent_id")
        if msg.vip and not suggested:
            suggested = self.store.last_agent_for_user(msg.user_id)
        answers = [m.id for m in history if m.role is Role.BOT and m.action is Action.ANSWER]
        votes: dict[int, bool] = {}
        if answers:  # the customer's newest vote on each answer, for the agent and learning
            for vote in reversed(self.store.list_feedback(message_ids=answers)):
                votes[vote.message_id] = vote.helpful
        context = handoff_payload(msg, decision, history, customer, votes)
        context["suggested_owner"] = suggested
        top = decision.candidates[0] if decision.candidates else None
        ticket, created = self.store.open_ticket(
            conversation_id=msg.conversation,
            user_id=msg.user_id,
            channel=msg.channel,
            priority=decision.priority,
            reason=decision.reason,
            category=top.category if top and decision.confidence >= 0.5 else None,
            vip=msg.vip,
            suggested_owner=str(suggested) if suggested else None,
            context=context,
        )
        log.info(
            "escalated",
            extra={"ticket_id": ticket.id, "reason": decision.reason.value, "new_ticket": created},
        )
        return ticket

    def _out_of_hours_text(self, text: str, next_open: datetime | None) -> str:
        if next_open is None:
            when = "—"
        else:
            when = next_open.astimezone(self.hours.tz).strftime("%Y-%m-%d %H:%M %Z")
        return _OUT_OF_HOURS[language(text)].format(when=when)


def build_engine(settings: Settings, *, encoder: Encoder | None = None) -> Engine:
    """Knowledge → encoder → index → engine, reusing the cached index when unchanged."""
    kb = load_knowledge(resolve_knowledge_path(settings.knowledge))
    enc = encoder or get_encoder(settings.encoder, threads=settings.encoder_threads)
    enc = encoder_for(
        kb,
        enc,
        cache_dir=settings.cache_dir,
        use_tuned=settings.encoder_tuned,
        threads=settings.encoder_threads,
    )
    index = KnowledgeIndex.build(kb, enc, cache_dir=settings.cache_dir)
    return Engine(index, config=settings.engine)
