"""Learning from answered conversations (autoreply.learning): every signal becomes evidence,
accepting writes the variant into its entry through the safe write, and the engine answers it
after the reload. HashingEncoder bots on the small fixture FAQ."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from autoreply import learning
from autoreply.encoder import Encoder
from autoreply.faqjournal import Journal
from autoreply.models import Action, Message, Reason, Ticket
from autoreply.service import AutoReply
from autoreply.settings import EngineConfig, LearningConfig, Settings
from autoreply.store import VariantStatus
from autoreply.text import tokenize

CANCEL_ANSWER = "Go to Billing → Subscription → Cancel."


def make_bot(settings: Settings, encoder: Encoder, **overrides: object) -> AutoReply:
    return AutoReply.from_settings(settings.with_overrides(**overrides), encoder=encoder)


@pytest.fixture
def clarifying(settings: Settings, hashing: Encoder) -> Iterator[AutoReply]:
    """Every question gets "did you mean" (never answered, never escalated)."""
    engine = EngineConfig(answer_threshold=1.0, clarify_threshold=0.0, max_candidates=6)
    with make_bot(settings, hashing, engine=engine) as b:
        yield b


@pytest.fixture
def escalating(settings: Settings, hashing: Encoder) -> Iterator[AutoReply]:
    """Every question escalates (low confidence) and opens a ticket."""
    engine = EngineConfig(answer_threshold=1.0, clarify_threshold=1.0)
    with make_bot(settings, hashing, engine=engine) as b:
        yield b


@pytest.fixture
def answering(settings: Settings, hashing: Encoder) -> Iterator[AutoReply]:
    """Every question is answered with its top entry."""
    engine = EngineConfig(answer_threshold=0.0, clarify_threshold=0.0, runner_up_ratio=1.0)
    with make_bot(settings, hashing, engine=engine) as b:
        yield b


def ask(bot: AutoReply, text: str, conv: str = "c1", **metadata: object):
    return bot.handle(Message(text=text, user_id="u1", conversation_id=conv, metadata=metadata))


def pick(bot: AutoReply, question: str, entry_id: str, conv: str = "c1"):
    shown = ask(bot, question, conv)
    assert shown.decision is Action.CLARIFY
    offered = [c.entry_id for c in shown.candidates]
    assert entry_id in offered
    return ask(bot, str(offered.index(entry_id) + 1), conv, picked=entry_id)


def test_a_did_you_mean_pick_is_evidence_for_the_picked_entry(clarifying: AutoReply) -> None:
    """The question before "did you mean" becomes a candidate variant of the picked entry."""
    reply = pick(clarifying, "can I get my money returned", "refund")
    assert reply.decision is Action.ANSWER and reply.entry_id == "refund"
    [v] = clarifying.store.learned_variants()
    assert (v.entry_id, v.text, v.counts) == (
        "refund",
        "can I get my money returned",
        {"picked": 1},
    )
    assert v.status is VariantStatus.PENDING and v.flag is None


def test_a_pick_that_was_not_offered_teaches_nothing(clarifying: AutoReply) -> None:
    """A pick naming an entry no clarification offered is answered but is no evidence."""
    ask(clarifying, "hello there", "c9", picked="refund")
    assert clarifying.store.learned_variants() == []


def test_personal_data_is_redacted_and_known_texts_are_skipped(clarifying: AutoReply) -> None:
    """Evidence is stored redacted; a text the entry already has is no candidate."""
    # The fixture's refund entry is Chinese: an English question reaching it was luck.
    pick(clarifying, "我要退款，电话13812345678", "refund", "c1")
    pick(clarifying, "如何退款", "refund", "c2")
    [v] = clarifying.store.learned_variants()
    assert "13812345678" not in v.text


def test_an_agent_script_is_evidence_and_free_text_is_not(escalating: AutoReply) -> None:
    """An agent's reply that is an entry's answer (lightly edited) teaches the ticket's
    question to that entry; a reply of their own words teaches nothing."""
    first = ask(escalating, "how do I stop paying every month", "c1")
    assert first.ticket_id is not None
    escalating.reply(first.ticket_id, agent="ann", text=f"{CANCEL_ANSWER} Thanks!")
    second = ask(escalating, "where is my parcel", "c2")
    assert second.ticket_id is not None
    escalating.reply(second.ticket_id, agent="ann", text="Let me check with the warehouse.")
    [v] = escalating.store.learned_variants()
    assert (v.entry_id, v.text, v.counts) == (
        "cancel",
        "how do I stop paying every month",
        {"agent_script": 1},
    )


def test_script_entry_needs_exactly_one_matching_answer(faq_dir: Path) -> None:
    from autoreply.knowledge import load_knowledge

    kb = load_knowledge(faq_dir)
    assert learning.script_entry(kb, "go to billing → subscription → cancel") == "cancel"
    assert learning.script_entry(kb, "Yes") is None
    assert learning.script_entry(kb, "") is None


def test_a_short_answer_is_lightly_edited_only_around_it() -> None:
    """A short answer is a script only when the reply holds it whole as a clause, words added
    before or after it (a greeting, a sign-off): a word added inside it ("balance" → "rewards
    balance") or glued to its end ("… app settings", "…查看积分") makes another answer. Its
    closing full stop may go, and traditional characters match simplified ones. A long
    answer may change a word inside (a typo fixed, a name filled in)."""
    short = "Your balance is in the app."
    assert learning.lightly_edited("your balance is in the app.  Thanks!", short)
    assert learning.lightly_edited("Hi! Your balance is in the app.", short)
    assert not learning.lightly_edited("Your rewards balance is in the app.", short)
    assert not learning.lightly_edited("Your balance is in the app settings.", short)
    bare = "Your balance is in the app"  # no full stop: a glued word is still another answer
    assert not learning.lightly_edited("Your balance is in the app settings", bare)
    assert learning.lightly_edited("Your balance is in the app. Thanks", bare)
    zh = "您的余额可以在应用里查看。"
    assert learning.lightly_edited("您的余额可以在应用里查看，谢谢", zh)
    assert learning.lightly_edited("您的餘額可以在應用裡查看，謝謝", zh)
    assert not learning.lightly_edited("您的余额可以在应用里查看积分", zh)
    calendar = "[answer for intent calendar]"
    assert not learning.lightly_edited("[answer for intent calendar_update]", calendar)
    long = "Open the app, then tap Settings and Billing and then cancel your plan."
    assert len(tokenize(long)) >= learning.SCRIPT_EDIT_WORDS
    assert learning.lightly_edited(long.replace("Billing", "Payments Billing"), long)
    assert not learning.lightly_edited("", short) and not learning.lightly_edited(short, "")


def test_a_disputed_entry_is_no_script_whatever_opened_the_ticket(faq_dir: Path) -> None:
    """The customer voted the cancel answer not helpful, then rephrased and was escalated
    (not a request for a person): the agent's light edit of the cancel answer is still the
    correction, as is a promote of it; undisputed, both teach the cancel entry."""
    from datetime import UTC, datetime

    from autoreply.knowledge import load_knowledge
    from autoreply.models import FAQCandidate, Priority, Role, StoredMessage, TicketStatus

    kb = load_knowledge(faq_dir)
    edit = f"{CANCEL_ANSWER} Thanks"

    def ticket(helpful: bool | None) -> Ticket:
        attempt = {"id": 1, "entry_id": "cancel", "confidence": 0.9, "helpful": helpful}
        return Ticket(
            id=1,
            conversation_id="c1",
            user_id="u1",
            channel="web",
            status=TicketStatus.OPEN,
            priority=Priority.NORMAL,
            reason=Reason.LOW_CONFIDENCE,
            context={"question": "stop charging me", "attempts": [attempt]},
            created_at=datetime.now(UTC),
        )

    now = datetime.now(UTC)
    reply = StoredMessage(
        id=2,
        conversation_id="c1",
        user_id="u1",
        channel="web",
        role=Role.AGENT,
        text=edit,
        created_at=now,
    )
    promoted = FAQCandidate(
        id=3,
        ticket_id=1,
        question="stop charging me",
        answer=edit,
        category="billing/subscription",
        agent="ann",
        created_at=now,
    )
    for helpful, taught in ((False, None), (None, "cancel")):
        got = learning.from_agent_reply(kb, ticket(helpful), reply)
        assert (got.entry_id if got else None) == taught
        got = learning.from_promote(kb, promoted, ticket(helpful))
        assert (got.entry_id if got else None) == taught


def test_helpful_votes_and_promotes_are_evidence(
    answering: AutoReply, escalating: AutoReply
) -> None:
    """A helpful vote teaches the answered question to its entry (a not-helpful one does
    not); an agent's promote whose answer is an entry's answer teaches its question."""
    good = ask(answering, "cancel the subscription I have", "c1")
    bad = ask(answering, "refund my order now", "c2")
    assert good.entry_id == "cancel"
    answering.feedback(good.message_id, helpful=True)
    answering.feedback(good.message_id, helpful=True)  # a second vote counts once
    answering.feedback(bad.message_id, helpful=False)
    [v] = answering.store.learned_variants()
    assert (v.entry_id, v.counts) == ("cancel", {"helpful": 1})

    t = ask(escalating, "please end my plan today", "c3").ticket_id
    assert t is not None
    escalating.claim(t, "ann")
    escalating.resolve(t, agent="ann", resolution=CANCEL_ANSWER)
    escalating.promote(t, agent="ann")
    # (the two bots share one database)
    [p] = [v for v in escalating.store.learned_variants() if v.counts.get("promote")]
    assert (p.entry_id, p.text, p.counts) == ("cancel", "please end my plan today", {"promote": 1})


def test_another_entry_s_text_is_flagged(clarifying: AutoReply) -> None:
    """Picking refund for a text that is the cancel entry's is flagged, not silently kept."""
    pick(clarifying, "Cancel subscription!", "refund")
    [v] = clarifying.store.learned_variants()
    assert v.flag is not None and "cancel" in v.flag


def test_flag_for_a_confident_other_entry() -> None:
    from autoreply.knowledge import KnowledgeBase

    kb = KnowledgeBase(entries=[])
    cands = [{"entry_id": "other", "confidence": 0.9}, {"entry_id": "mine", "confidence": 0.1}]
    assert learning.flag_for(kb, "mine", "x", cands, answer_threshold=0.6) is not None
    assert learning.flag_for(kb, "mine", "x", cands, answer_threshold=0.95) is None
    assert learning.flag_for(kb, "other", "x", cands, answer_threshold=0.6) is None


def test_accept_writes_the_variant_in_place_and_the_engine_answers_it(
    clarifying: AutoReply, settings: Settings, hashing: Encoder, faq_dir: Path
) -> None:
    """Accepting edits only the entry's lines, is journalled, and after the reload the
    engine finds the entry for the new phrasing; undo makes it pending again."""
    question = "can I get my money returned"
    pick(clarifying, question, "refund")
    [v] = learning.pending(clarifying.store)
    path = faq_dir / "faq.yaml"
    before = path.read_text("utf-8")
    [change] = learning.accept(
        clarifying.store,
        clarifying.kb,
        [v.id],
        knowledge=faq_dir,
        reload=clarifying.reload,
        by="ann",
    )
    assert change.entry_id == "refund" and change.variant_ids == [v.id]
    after = path.read_text("utf-8")
    entries = yaml.safe_load(after)["entries"]
    assert question in entries[0]["variants"]
    assert entries[1:] == yaml.safe_load(before)["entries"][1:]  # other entries untouched
    assert after.split("- id: password")[1] == before.split("- id: password")[1]
    assert clarifying.store.get_learned_variant(v.id).status is VariantStatus.ACCEPTED
    assert question in clarifying.kb.get("refund").variants
    with make_bot(settings, hashing) as fresh:
        assert fresh.engine.rank([question])[0][0].entry_id == "refund"
        assert fresh.engine.rank([question])[0][0].confidence > 0.6
    Journal(faq_dir).undo(by="ann", store=clarifying.store)
    assert path.read_text("utf-8") == before
    assert clarifying.store.get_learned_variant(v.id).status is VariantStatus.PENDING


def test_dismiss_leaves_the_file_alone(clarifying: AutoReply, faq_dir: Path) -> None:
    pick(clarifying, "can I get my money returned", "refund")
    [v] = learning.pending(clarifying.store)
    before = (faq_dir / "faq.yaml").read_bytes()
    [d] = learning.dismiss(clarifying.store, [v.id], by="ann")
    assert d.status is VariantStatus.DISMISSED and d.decided_by == "ann"
    assert learning.pending(clarifying.store) == []
    assert (faq_dir / "faq.yaml").read_bytes() == before


def test_auto_accept_is_off_by_default(clarifying: AutoReply, faq_dir: Path) -> None:
    """With the default settings nothing enters the knowledge base on its own."""
    assert Settings().learning.auto_accept_min_count == 0
    before = (faq_dir / "faq.yaml").read_bytes()
    for conv in ("c1", "c2", "c3"):
        pick(clarifying, "can I get my money returned", "refund", conv)
    [v] = learning.pending(clarifying.store)
    assert v.count == 3
    assert (faq_dir / "faq.yaml").read_bytes() == before
    assert learning.due(clarifying.store, min_count=0) == []


def test_auto_accept_above_the_threshold_but_never_a_flagged_one(
    settings: Settings, hashing: Encoder, faq_dir: Path
) -> None:
    """With ``auto_accept_min_count=2`` the second piece of evidence writes the variant (by
    "auto", undoable); a flagged one waits for a person whatever its count."""
    engine = EngineConfig(answer_threshold=1.0, clarify_threshold=0.0, max_candidates=6)
    with make_bot(
        settings, hashing, engine=engine, learning=LearningConfig(auto_accept_min_count=2)
    ) as bot:
        pick(bot, "can I get my money returned", "refund", "c1")
        assert learning.pending(bot.store)[0].count == 1
        assert "can I get my money returned" not in bot.kb.get("refund").variants
        pick(bot, "can I get my money returned", "refund", "c2")
        [v] = bot.store.learned_variants()
        assert v.status is VariantStatus.ACCEPTED and v.decided_by == "auto"
        assert "can I get my money returned" in bot.kb.get("refund").variants
        for conv in ("c3", "c4"):
            pick(bot, "Cancel subscription!", "refund", conv)
        [flagged] = learning.pending(bot.store)
        assert flagged.flag and flagged.count == 2
        assert Journal(faq_dir).changes()[0].by == "auto"


def test_a_rejected_answer_is_a_gap_and_the_agent_s_script_corrects_it(
    answering: AutoReply,
) -> None:
    """A customer votes a confident answer not helpful and asks for a person: the question is
    logged as a gap (``not_helpful``, the rejected entry as its best, once however many votes),
    the ticket shows the vote to the agent, and the agent's script for another entry is
    evidence that is not flagged (the customer disputed the bot's pick). The same kind of
    script after an undisputed answer is flagged: a person decides."""

    def script_after(question: str, conv: str, *, reject: bool) -> str:
        answer = ask(answering, question, conv)
        assert answer.decision is Action.ANSWER and answer.message_id is not None
        if reject:
            answering.feedback(answer.message_id, helpful=False)
            answering.feedback(answer.message_id, helpful=False)  # no second gap
        person = ask(answering, "I want to talk to a human", conv)
        assert person.ticket_id is not None
        [attempt] = answering.store.get_ticket(person.ticket_id).context["attempts"]
        assert attempt["id"] == answer.message_id
        assert attempt["helpful"] is (False if reject else None)
        other = next(e for e in answering.kb.enabled if e.id != answer.entry_id)
        answering.claim(person.ticket_id, "ann")
        answering.reply(person.ticket_id, agent="ann", text=other.answer)
        return str(answer.entry_id)

    rejected = script_after("refund my order now", "c1", reject=True)
    [gap] = answering.store.list_gaps()
    assert (gap.question, gap.reason, gap.best_entry_id) == (
        "refund my order now",
        Reason.NOT_HELPFUL,
        rejected,
    )
    assert gap.conversation_id == "c1"
    script_after("where is my parcel", "c2", reject=False)
    assert len(answering.store.list_gaps()) == 1  # an undisputed answer is no gap

    found = {v.text: v for v in answering.store.learned_variants()}
    assert found["refund my order now"].flag is None
    assert found["where is my parcel"].flag is not None


def test_a_reply_resembling_the_disputed_answer_is_a_correction_not_its_script(
    answering: AutoReply,
) -> None:
    """The customer voted entry X's answer not helpful and asked for a person. The agent's
    reply that is only a light edit of X's answer (X's script with a word added) teaches X
    nothing: after a dispute only X's exact answer, sent again, is X's script. The same light
    edit after an undisputed answer still counts as X's."""

    def reply_after(question: str, conv: str, edit: str, *, reject: bool) -> str:
        answer = ask(answering, question, conv)
        assert answer.entry_id == "cancel" and answer.message_id is not None
        if reject:
            answering.feedback(answer.message_id, helpful=False)
        person = ask(answering, "I want to talk to a human", conv)
        assert person.ticket_id is not None
        answering.claim(person.ticket_id, "ann")
        answering.reply(person.ticket_id, agent="ann", text=edit)
        return question

    lightly = f"{CANCEL_ANSWER} Thanks"
    assert learning.script_entry(answering.kb, lightly) == "cancel"
    corrected = reply_after("cancel my subscription pls", "c1", lightly, reject=True)
    resent = reply_after("cancel my subscription now", "c2", CANCEL_ANSWER, reject=True)
    kept = reply_after("cancel the subscription I have", "c3", lightly, reject=False)
    learned = {v.text for v in answering.store.learned_variants(entry_id="cancel")}
    assert corrected not in learned
    assert {resent, kept} <= learned


def test_a_helpful_vote_or_a_vote_on_a_pick_is_no_gap(
    answering: AutoReply, clarifying: AutoReply
) -> None:
    good = ask(answering, "cancel the subscription I have", "c1")
    assert good.message_id is not None
    answering.feedback(good.message_id, helpful=True)
    picked = pick(clarifying, "can I get my money returned", "refund", "c2")
    assert picked.message_id is not None
    clarifying.feedback(picked.message_id, helpful=False)  # its question is a digit
    assert clarifying.store.list_gaps(reason=Reason.NOT_HELPFUL) == []
    assert answering.store.list_gaps(reason=Reason.NOT_HELPFUL) == []


@pytest.mark.postgres
def test_concurrent_not_helpful_votes_on_one_answer_log_one_gap(
    settings: Settings, hashing: Encoder, pg_url: str
) -> None:
    """Four replicas get a not-helpful vote on the same answer at once (a double click, a
    retry landing elsewhere): the first vote counts, so one gap, four votes."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    engine = EngineConfig(answer_threshold=0.0, clarify_threshold=0.0, runner_up_ratio=1.0)
    shared = settings.with_overrides(db=pg_url, engine=engine)
    bots = [AutoReply.from_settings(shared, encoder=hashing) for _ in range(4)]
    try:
        answer = ask(bots[0], "refund my order now", "c1")
        assert answer.decision is Action.ANSWER and answer.message_id is not None
        message_id = answer.message_id
        barrier = threading.Barrier(len(bots))

        def vote(bot: AutoReply) -> None:
            barrier.wait()
            bot.feedback(message_id, helpful=False)

        with ThreadPoolExecutor(len(bots)) as pool:
            list(pool.map(vote, bots))
        assert len(bots[0].store.list_feedback(message_ids=[message_id])) == 4
        assert len(bots[0].store.list_gaps(reason=Reason.NOT_HELPFUL)) == 1
    finally:
        for bot in bots:
            bot.close()
