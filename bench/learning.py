"""Learning replay: does the FAQ learn from answered conversations, week after week?

A shared-format set with ``gap_topic`` (clinc150_gap by default, 15 intents held out of its
FAQ) is replayed through ``AutoReply`` (a temporary SQLite store, a copy of the set's FAQ in a
temporary knowledge folder, the bundled e5 encoder, default settings, business hours always
open). Its test questions (every gap-topic question plus seeded samples of in-scope and
out-of-scope ones, shuffled with ``--seed``, 42 by default) are split into four weeks, one
conversation each.

Within a week, simulated people behave as real ones would:

- a customer offered "did you mean" picks the right option when it is listed (``picked``
  evidence); when it is not, they ask for a person;
- a customer given a wrong answer (another entry's, or any answer to an out-of-scope
  question) votes it not helpful (the service logs the question as a gap) and asks for a
  person; it still counts as ``answered_wrong``;
- an agent answers every escalated question: an in-scope one (or one of a held-out intent the
  FAQ has an entry for by now) with the right entry's answer as a standard script
  (``agent_script`` evidence), a held-out one without an entry with that intent's answer
  (supplied by the bench, ``[answer for intent X]``), anything else with a generic line; then
  resolves the ticket.

After each week, a product team: updates the gap topics and accepts every suggested entry
whose topic is pure enough (``--purity``, the share of the topic's gaps from its majority
held-out intent; the answer is that intent's, the variants those ticked by default), plus
near-miss topics of an existing entry whose gaps mostly belong to it; then accepts every
candidate variant with at least ``--min-count`` pieces of evidence that is not flagged. All
through autoreply.faqchange / autoreply.learning, the same writes the CLI and console make.

Per week, as shares of that week's questions: ``answered_right``, ``answered_wrong`` (an
answer from the wrong entry, or any answer to an out-of-scope question), ``clarified`` (the
right option picked), ``escalated`` (everything else), ``gaps_logged``; in-scope top-1 (the
original FAQ's questions); held-out intents answerable (with an entry) at the start of the
week, and those answered right at least 80% of the time during it. For scale, the same
measure on the FAQ's original entries with week 4's engine (``original_entries_week4``: their
unused test questions; how many of as many original entries as held-out intents reach 80%
when asked as many questions as the held-out intents were in week 4).

Usage, from the repository root::

    python bench/learning.py                                  # clinc150_gap, ~8 min on 2 cores
    python bench/learning.py --set ../shared/data/massive_zh_cn_gap
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from autoreply import faqchange, learning  # noqa: E402
from autoreply.errors import ConflictError, KnowledgeError  # noqa: E402
from autoreply.eval_questions import LabelledQuestion, load_questions  # noqa: E402
from autoreply.faqjournal import Journal  # noqa: E402
from autoreply.gap_clustering import TopicConfig  # noqa: E402
from autoreply.gap_suggestions import suggest  # noqa: E402
from autoreply.gap_topics import update_topics  # noqa: E402
from autoreply.knowledge import load_knowledge  # noqa: E402
from autoreply.models import Action, Message  # noqa: E402
from autoreply.service import AutoReply  # noqa: E402
from autoreply.settings import HoursConfig, Settings  # noqa: E402
from autoreply.store import TopicKind, TopicStatus, VariantStatus  # noqa: E402

SEED = 42
WEEKS = 4
AGENT = "agent"
TEAM = "product-team"
HUMAN = {"en": "I want to talk to a human", "zh": "转人工"}
GENERIC = "Thanks for asking; this is not something we can help with here."
RIGHT_ENOUGH = 0.8
REFERENCE_PER_INTENT = 20
REFERENCE_DRAWS = 500


def held_answer(intent: str) -> str:
    return f"[answer for intent {intent}]"


@dataclass
class Truth:
    """Which entry answers each label, as the FAQ grows (held-out intents get one)."""

    entry_for: dict[str, str] = field(default_factory=dict)
    """held-out intent -> the entry accepted for it"""

    def right_entry(self, q: LabelledQuestion) -> str | None:
        if q.expected_id is not None:
            return q.expected_id
        return self.entry_for.get(q.gap_topic) if q.gap_topic else None


def sample(
    questions: list[LabelledQuestion], in_scope: int, oos: int, seed: int = SEED
) -> list[LabelledQuestion]:
    rng = random.Random(seed)
    gap = [q for q in questions if q.gap_topic]
    inside = [q for q in questions if q.in_scope]
    outside = [q for q in questions if not q.in_scope and not q.gap_topic]
    picked = gap + rng.sample(inside, min(in_scope, len(inside)))
    picked += rng.sample(outside, min(oos, len(outside)))
    rng.shuffle(picked)
    return picked


def lang(set_dir: Path) -> str:
    return "zh" if "zh" in set_dir.name else "en"


def live_week(
    bot: AutoReply, week: int, questions: list[LabelledQuestion], truth: Truth, language: str
) -> dict[str, Any]:
    """Replay one week's questions; per-week counts."""
    outcome: Counter[str] = Counter()
    gaps = 0
    top1 = [0, 0]
    held: dict[str, list[bool]] = defaultdict(list)
    held_how: dict[str, Counter[str]] = defaultdict(Counter)
    answerable = sorted(truth.entry_for)
    conversations: dict[str, LabelledQuestion] = {}
    batch = 16
    for lo in range(0, len(questions), batch):
        chunk = questions[lo : lo + batch]
        ids = [f"w{week}-{lo + i}" for i in range(len(chunk))]
        replies = bot.handle_many(
            [
                Message(text=q.question, user_id=f"u-{c}", conversation_id=c, channel="web")
                for q, c in zip(chunk, ids, strict=True)
            ]
        )
        for q, conv, reply in zip(chunk, ids, replies, strict=True):
            conversations[conv] = q
            right = truth.right_entry(q)
            gaps += reply.gap_id is not None
            if q.expected_id is not None:
                top1[1] += 1
                top1[0] += bool(reply.candidates) and reply.candidates[0].entry_id == right
            ticket = reply.ticket_id
            if reply.decision is Action.ANSWER:
                kind = "answered_right" if right and reply.entry_id == right else "answered_wrong"
                if kind == "answered_wrong" and reply.message_id is not None:
                    ticket = rejects(bot, conv, reply.message_id, language)
            elif reply.decision is Action.CLARIFY:
                offered = [c.entry_id for c in reply.candidates]
                if right in offered:
                    kind = "clarified"
                    bot.handle(
                        Message(
                            text=str(offered.index(right) + 1),
                            user_id=f"u-{conv}",
                            conversation_id=conv,
                            channel="web",
                            metadata={"picked": right},
                        )
                    )
                else:
                    kind = "escalated"
                    asked = bot.handle(
                        Message(
                            text=HUMAN[language],
                            user_id=f"u-{conv}",
                            conversation_id=conv,
                            channel="web",
                        )
                    )
                    ticket = asked.ticket_id
            else:
                kind = "escalated"
            outcome[kind] += 1
            if q.gap_topic:
                held[q.gap_topic].append(kind == "answered_right")
                how = f"{kind}:{reply.entry_id}" if kind == "answered_wrong" else kind
                if kind == "escalated" and right is not None:
                    top = reply.candidates[0] if reply.candidates else None
                    where = "right_top" if top and top.entry_id == right else "other_top"
                    how = (
                        f"escalated:{reply.reason.value}:{where}:{top.confidence if top else 0:.2f}"
                    )
                held_how[q.gap_topic][how] += 1
            if ticket is not None:
                agent_answers(bot, ticket, q, right)
    n = len(questions)
    shares = {k: round(outcome[k] / n, 4) for k in ("answered_right", "answered_wrong")}
    shares |= {k: round(outcome[k] / n, 4) for k in ("clarified", "escalated")}
    right_often = sorted(t for t, r in held.items() if sum(r) / len(r) >= RIGHT_ENOUGH)
    return {
        "week": week,
        "questions": n,
        **shares,
        "gaps_logged": round(gaps / n, 4),
        "in_scope_top1": round(top1[0] / max(top1[1], 1), 4),
        "held_out_answerable": len(answerable),
        "held_out_right_80": len(right_often),
        "held_out_right_share": {t: round(sum(r) / len(r), 3) for t, r in sorted(held.items())},
        "held_out_outcomes": {t: dict(c.most_common()) for t, c in sorted(held_how.items())},
        "_conversations": conversations,
        "_held": held,
    }


def rejects(bot: AutoReply, conv: str, message_id: int, language: str) -> int | None:
    """A customer given another question's answer says so: a not-helpful vote (which logs
    the question as a gap), then a request for a person."""
    bot.feedback(message_id, helpful=False)
    asked = bot.handle(
        Message(text=HUMAN[language], user_id=f"u-{conv}", conversation_id=conv, channel="web")
    )
    return asked.ticket_id


def agent_answers(bot: AutoReply, ticket: int, q: LabelledQuestion, right: str | None) -> None:
    if right is not None and right in bot.kb:
        text = bot.kb.get(right).answer
    elif q.gap_topic:
        text = held_answer(q.gap_topic)
    else:
        text = GENERIC
    bot.claim(ticket, AGENT)
    bot.reply(ticket, agent=AGENT, text=text)
    bot.resolve(ticket, agent=AGENT, resolution=text)


def team_reviews(
    bot: AutoReply,
    knowledge: Path,
    conversations: dict[str, LabelledQuestion],
    truth: Truth,
    *,
    purity: float,
    min_count: int,
) -> dict[str, Any]:
    """What a product team does after a week: accept pure topics and learned variants."""
    update_topics(bot.store, bot.engine.index, config=TopicConfig())
    journal = Journal(knowledge)
    kb = bot.kb
    accepted_entries: list[dict[str, Any]] = []
    seen: list[dict[str, Any]] = []
    for topic in bot.store.gap_topics(status=TopicStatus.OPEN):
        gaps = bot.store.topic_gaps(topic_id=topic.id)
        labels = [
            conversations[g.conversation_id] for g in gaps if g.conversation_id in conversations
        ]
        if not labels:
            continue
        names = Counter(q.gap_topic or q.expected_id or "out_of_scope" for q in labels)
        majority, count = names.most_common(1)[0]
        share = count / len(labels)
        seen.append(
            {
                "kind": topic.kind.value,
                "size": len(labels),
                "majority": majority,
                "purity": round(share, 2),
            }
        )
        if share < purity:
            continue
        if topic.kind is TopicKind.NEW:
            if majority not in {q.gap_topic for q in labels} or majority in truth.entry_for:
                continue
        elif topic.entry_id != majority:
            continue
        suggestion = suggest(bot.store, topic, kb=kb)
        ticks = faqchange.core_variants(suggestion, bot.engine.index)
        chosen = [v for v, t in zip(suggestion.variants, ticks, strict=True) if t]
        answer = held_answer(majority) if topic.kind is TopicKind.NEW else None
        draft = faqchange.draft_for_topic(
            bot.store,
            topic.id,
            kb=kb,
            knowledge=knowledge,
            variants=chosen,
            answer=answer,
            by=TEAM,
        )
        try:  # written now, loaded by the one reload below (a reload is ~30 s)
            faqchange.apply(kb, draft, journal=journal, action="accept", by=TEAM, store=bot.store)
        except Exception as exc:  # a conflict: a team would not force it
            accepted_entries.append({"topic": topic.id, "refused": str(exc)[:400]})
            continue
        kb = load_knowledge(knowledge)
        if topic.kind is TopicKind.NEW:
            truth.entry_for[majority] = draft.entry.id
        label = {q.question: q.gap_topic or q.expected_id for q in labels}
        accepted_entries.append(
            {
                "topic": topic.id,
                "kind": topic.kind.value,
                "entry": draft.entry.id,
                "intent": majority,
                "purity": round(share, 3),
                "variants": len(chosen),
                "variants_right": sum(label.get(v) == majority for v in chosen),
                "variants_offered": len(suggestion.variants),
            }
        )
    waiting = learning.pending(bot.store)
    due = learning.due(bot.store, min_count=min_count, kb=kb)
    once: dict[str, int] = {}  # a text learned for two entries: neither, a person decides
    for v in due:
        once[v.normalized] = once.get(v.normalized, 0) + 1
    due = [v for v in due if once[v.normalized] == 1]
    refused = 0
    for variants in learning.by_entry(due).values():
        try:  # one entry at a time: a refused one (a conflict) leaves the others
            learning.accept(
                bot.store,
                kb,
                [v.id for v in variants],
                knowledge=knowledge,
                reload=lambda: bot.engine.index,
                by=TEAM,
            )
        except (KnowledgeError, ConflictError):
            refused += len(variants)
    bot.reload()  # one reload for the week's changes (~30 s on clinc150_gap)
    return {
        "topics_accepted": [a for a in accepted_entries if "entry" in a],
        "topics_refused": [a for a in accepted_entries if "refused" in a],
        "open_topics": seen,
        "variants_accepted": len(due) - refused,
        "variants_refused": refused,
        "variants_flagged": sum(1 for v in waiting if v.flag),
        "variants_waiting": len(waiting) - len(due),
        "evidence_sources": dict(sum((Counter(v.counts) for v in waiting), Counter())),
    }


def reference(
    bot: AutoReply,
    questions: list[LabelledQuestion],
    held: dict[str, list[bool]],
    seed: int,
) -> dict[str, Any]:
    """The same "answered right at least 80% of the time" measure on the FAQ's original
    entries, with the engine the last week ran on: their in-scope test questions the replay
    did not use (up to ``REFERENCE_PER_INTENT`` each), answered without a conversation.

    ``right_80_of_n``: how many of ``n`` original entries (``n`` = the held-out intents asked
    in the last week) reach it when each is asked as many questions as one of the held-out
    intents was (their sizes, shuffled; drawn with replacement where an entry has fewer
    unused questions), averaged over ``REFERENCE_DRAWS`` seeded draws, with the 10th and 90th
    percentiles: the number the held-out intents' count is to be read against.
    """
    rng = random.Random(seed)
    by_intent: dict[str, list[str]] = defaultdict(list)
    for q in questions:
        if q.expected_id is not None:
            by_intent[q.expected_id].append(q.question)
    asked = [
        (intent, text)
        for intent, texts in sorted(by_intent.items())
        for text in rng.sample(texts, min(REFERENCE_PER_INTENT, len(texts)))
    ]
    decisions = bot.engine.decide_many([text for _, text in asked])
    right: dict[str, list[bool]] = defaultdict(list)
    for (intent, _), d in zip(asked, decisions, strict=True):
        right[intent].append(d.action is Action.ANSWER and d.entry_id == intent)
    share = {intent: sum(r) / len(r) for intent, r in right.items()}
    sizes = [len(r) for r in held.values()]
    counts = []
    for _ in range(REFERENCE_DRAWS):
        rng.shuffle(sizes)
        hits = 0
        for intent, size in zip(rng.sample(sorted(right), len(sizes)), sizes, strict=False):
            pool = right[intent]
            draw = rng.sample(pool, size) if size <= len(pool) else rng.choices(pool, k=size)
            hits += sum(draw) / size >= RIGHT_ENOUGH
        counts.append(hits)
    return {
        "intents": len(share),
        "questions": len(asked),
        "answered_right": round(sum(sum(r) for r in right.values()) / max(len(asked), 1), 4),
        "right_80_up_to_20_questions": round(
            sum(v >= RIGHT_ENOUGH for v in share.values()) / max(len(share), 1), 3
        ),
        "held_out_sizes": sorted(sizes),
        "n": len(sizes),
        "right_80_of_n": round(float(np.mean(counts)), 2),
        "right_80_of_n_p10_p90": [float(x) for x in np.percentile(counts, [10, 90])],
    }


def run(
    set_dir: Path,
    *,
    in_scope: int,
    oos: int,
    purity: float,
    min_count: int,
    limit: int | None,
    seed: int = SEED,
) -> dict:
    everything = load_questions(set_dir / "test.jsonl")
    questions = sample(everything, in_scope, oos, seed)[:limit]
    replayed = {id(q) for q in questions}
    unused = [q for q in everything if id(q) not in replayed]
    bounds = [len(questions) * i // WEEKS for i in range(WEEKS + 1)]
    weeks = [questions[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    truth = Truth()
    language = lang(set_dir)
    held_out = sorted({q.gap_topic for q in questions if q.gap_topic})
    results = []
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        knowledge = Path(tmp) / "knowledge"
        knowledge.mkdir()
        shutil.copy(set_dir / "faq.jsonl", knowledge / "faq.jsonl")
        settings = Settings(
            knowledge=knowledge, db=str(Path(tmp) / "learn.db"), hours=HoursConfig(weekly={})
        )
        start = time.perf_counter()
        with AutoReply.from_settings(settings) as bot:
            timings["index_build_s"] = time.perf_counter() - start
            conversations: dict[str, LabelledQuestion] = {}
            ref: dict[str, Any] = {}
            for number, week in enumerate(weeks, start=1):
                start = time.perf_counter()
                stats = live_week(bot, number, week, truth, language)
                if number == WEEKS:  # before the review: the engine this week ran on
                    ref = reference(bot, unused, stats["_held"], seed)
                stats.pop("_held")
                conversations |= stats.pop("_conversations")
                timings[f"week{number}_replay_s"] = time.perf_counter() - start
                start = time.perf_counter()
                stats["review"] = team_reviews(
                    bot, knowledge, conversations, truth, purity=purity, min_count=min_count
                )
                stats["held_out_answerable_after"] = len(truth.entry_for)
                timings[f"week{number}_review_s"] = time.perf_counter() - start
                results.append(stats)
                print(json.dumps(stats["review"]["open_topics"]), flush=True)
                print(
                    f"week {number}: right {stats['answered_right']:.3f} wrong "
                    f"{stats['answered_wrong']:.3f} clarified {stats['clarified']:.3f} escalated "
                    f"{stats['escalated']:.3f}; held out answerable "
                    f"{stats['held_out_answerable']}, right>=80% {stats['held_out_right_80']}; "
                    f"+{stats['review']['variants_accepted']} variants, "
                    f"+{len(stats['review']['topics_accepted'])} topics",
                    flush=True,
                )
            accepted = bot.store.learned_variants(status=VariantStatus.ACCEPTED)
            encoder = bot.engine.index.encoder.name
    kinds = Counter(
        "gap_topic" if q.gap_topic else ("in_scope" if q.in_scope else "out_of_scope")
        for q in questions
    )
    rights = [w["answered_right"] for w in results]
    return {
        "set": set_dir.name,
        "date": datetime.now(UTC).date().isoformat(),
        "encoder": encoder,
        "sample": dict(kinds) | {"seed": seed},
        "held_out": held_out,
        "purity": purity,
        "min_count": min_count,
        "weeks": results,
        "variants_accepted_total": len(accepted),
        "goals": {
            "answered_right_rises_every_week": all(
                b > a for a, b in zip(rights, rights[1:], strict=False)
            ),
            "held_out_right_80_week4": results[-1]["held_out_right_80"],
            "answered_wrong_never_above_week1": all(
                w["answered_wrong"] <= results[0]["answered_wrong"] for w in results
            ),
        },
        "original_entries_week4": ref,
        "timings": {k: round(v, 1) for k, v in timings.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    data = REPO.parent / "shared" / "data"
    parser.add_argument(
        "--set",
        dest="sets",
        type=Path,
        action="append",
        help="a shared-format set folder with gap_topic (repeatable) "
        "[default: clinc150_gap and massive_zh_cn_gap]",
    )
    # The documented runs (bench/README.md): every gap-topic question plus these samples.
    parser.add_argument(
        "--in-scope", type=int, default=250, help="in-scope questions sampled (%(default)s)"
    )
    parser.add_argument(
        "--oos", type=int, default=50, help="out-of-scope questions sampled (%(default)s)"
    )
    parser.add_argument("--purity", type=float, default=0.7)
    parser.add_argument("--min-count", type=int, default=1)
    parser.add_argument(
        "--seed", type=int, default=SEED, help="sampling and week order (default %(default)s)"
    )
    parser.add_argument("--limit", type=int, help="replay only this many (a smoke test)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "learning.json")
    args = parser.parse_args()
    sets = args.sets or [data / "clinc150_gap", data / "massive_zh_cn_gap"]
    previous = json.loads(args.out.read_text("utf-8")) if args.out.exists() else {}
    by_set = {r["set"]: r for r in previous.get("sets", [])}
    for set_dir in sets:
        print(f"== {set_dir.name}", flush=True)
        by_set[set_dir.name] = run(
            set_dir,
            in_scope=args.in_scope,
            oos=args.oos,
            purity=args.purity,
            min_count=args.min_count,
            limit=args.limit,
            seed=args.seed,
        )
        first = by_set.get("clinc150_gap") or next(iter(by_set.values()))
        out = {"weeks": first["weeks"], "sets": list(by_set.values())}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, ensure_ascii=False, indent=2) + "\n", "utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
