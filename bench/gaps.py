"""Gap-topic benchmark: replay clinc150_gap through the bot and see whether the gaps it logs
cluster into the 15 intents held out of its FAQ.

clinc150_gap's FAQ lacks 15 intents; their test questions carry ``gap_topic``. The replay sends
every gap-topic question, 1,000 in-scope and 300 out-of-scope questions (sampled with seed 42,
shuffled) through ``AutoReply`` with the default settings and encoder and a fresh SQLite store,
one conversation per question, spread over this ISO week up to now, so gaps are logged exactly
as in production (``service.GAP_REASONS``). Topics are then built the incremental way: the
replay comes in four parts with ``update_topics`` after each (as if run daily); a rebuild from
scratch on the same gaps is reported next to it (ARI and how many topic ids both share).

Reported in bench/results/gaps.json:

- how many questions of each kind were logged as gaps; ``in_scope_logged`` is the share of
  in-scope questions logged as gaps (the bot did not answer them: clarified or escalated);
- ``in_scope_in_new_topics``: the share of in-scope questions that ended up in a *new* topic,
  i.e. would be shown to a product manager as a missing FAQ (near-miss topics suggest variants
  for an existing entry instead);
- ARI and NMI of the new topics against ``gap_topic``, over the logged gaps that have one (a
  gap outside any new topic counts as its own cluster);
- topics found (new and near-miss) against the 15 held out, the held-out intents recovered (a
  new topic whose majority is that intent), and the five largest topics.

Usage, from the repository root::

    python bench/gaps.py                      # ~5 minutes on 2 cores
    python bench/gaps.py --keep replay.db     # keep the replayed database for autoreply report
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score  # noqa: E402

from autoreply.evaluation import LabelledQuestion, load_questions  # noqa: E402
from autoreply.gaps import TopicConfig, update_topics  # noqa: E402
from autoreply.models import Message  # noqa: E402
from autoreply.service import AutoReply  # noqa: E402
from autoreply.settings import HoursConfig, Settings  # noqa: E402
from autoreply.store import Store, TopicKind  # noqa: E402
from autoreply.store.sqlite import SQLiteStore  # noqa: E402
from autoreply.weekly_data import week_of  # noqa: E402

SEED = 42
HELD_OUT = 15
KINDS = {"in_scope", "out_of_scope"}


def sample(questions: list[LabelledQuestion], in_scope: int, oos: int) -> list[LabelledQuestion]:
    """Every gap-topic question plus seeded samples of in-scope and out-of-scope ones."""
    rng = random.Random(SEED)
    gap = [q for q in questions if q.gap_topic]
    inside = [q for q in questions if q.in_scope]
    outside = [q for q in questions if not q.in_scope and not q.gap_topic]
    picked = gap + rng.sample(inside, min(in_scope, len(inside)))
    picked += rng.sample(outside, min(oos, len(outside)))
    rng.shuffle(picked)
    return picked


def kind(q: LabelledQuestion) -> str:
    return "gap_topic" if q.gap_topic else ("in_scope" if q.in_scope else "out_of_scope")


class Clock:
    """Spreads the replay evenly from the start of this ISO week (UTC) to now, so the weekly
    report sees a plausible week rather than a burst of minutes."""

    def __init__(self, total: int) -> None:
        end = datetime.now(UTC)
        self.start = week_of(end).start
        self.step = max(end - self.start, timedelta(hours=1)) / (total + 1)
        self.now = self.start

    def __call__(self) -> datetime:
        return self.now


def replay(bot: AutoReply, questions: list[LabelledQuestion], start: int, clock: Clock) -> None:
    messages = [
        Message(
            text=q.question,
            user_id=f"user-{start + i}",
            conversation_id=f"replay-{start + i}",
            channel=("web", "wecom", "telegram")[(start + i) % 3],
        )
        for i, q in enumerate(questions)
    ]
    for i in range(0, len(messages), 16):
        clock.now = clock.start + clock.step * (start + i + 1)
        bot.handle_many(messages[i : i + 16])


def score(store: Store, by_conversation: dict[str, LabelledQuestion]) -> dict[str, Any]:
    """Topic figures for the gaps in the store."""
    topics = {t.id: t for t in store.gap_topics()}
    gaps = store.topic_gaps()
    new = {t for t, topic in topics.items() if topic.kind is TopicKind.NEW}
    truth, found = [], []
    members: dict[int, list[str]] = {}
    for g in gaps:
        q = by_conversation[g.conversation_id]
        if g.topic_id is not None:
            members.setdefault(g.topic_id, []).append(q.gap_topic or kind(q))
        if q.gap_topic:
            truth.append(q.gap_topic)
            found.append(str(g.topic_id) if g.topic_id in new else f"alone-{g.id}")
    majority = {t: Counter(m).most_common(1)[0] for t, m in members.items()}
    recovered = sorted({majority[t][0] for t in new if majority[t][0] not in KINDS})
    in_new = sum(
        1 for g in gaps if g.topic_id in new and by_conversation[g.conversation_id].in_scope
    )
    largest = sorted(new, key=lambda t: -topics[t].size)[:5]
    return {
        "ari": round(float(adjusted_rand_score(truth, found)), 4),
        "nmi": round(float(normalized_mutual_info_score(truth, found)), 4),
        "new_topics": len(new),
        "near_miss_topics": len(topics) - len(new),
        "held_out": HELD_OUT,
        "held_out_recovered": len(recovered),
        "recovered": recovered,
        "in_scope_in_new_topics": in_new,
        "waiting": sum(1 for g in gaps if g.topic_id is None),
        "top5": [
            {
                "id": t,
                "size": topics[t].size,
                "representative": topics[t].representative,
                "keywords": topics[t].keywords,
                "category": topics[t].category,
                "majority": majority[t][0],
                "purity": round(majority[t][1] / len(members[t]), 3),
            }
            for t in largest
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--in-scope", type=int, default=1000)
    parser.add_argument("--oos", type=int, default=300)
    parser.add_argument("--runs", type=int, default=4, help="update_topics runs (replay parts).")
    parser.add_argument("--keep", type=Path, help="Copy the replayed database here.")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "gaps.json")
    args = parser.parse_args()
    folder = args.data / "clinc150_gap"
    questions = sample(load_questions(folder / "test.jsonl"), args.in_scope, args.oos)
    by_conversation = {f"replay-{i}": q for i, q in enumerate(questions)}
    replayed = Counter(kind(q) for q in questions)
    config = TopicConfig()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "replay.db"
        settings = Settings(
            knowledge=folder / "faq.jsonl", db=str(db), hours=HoursConfig(weekly={})
        )
        start = time.perf_counter()
        clock = Clock(len(questions))
        with AutoReply.from_settings(settings, store=SQLiteStore(db, now=clock), now=clock) as bot:
            build = time.perf_counter() - start
            timings: dict[str, float] = {"index_build_s": build}
            start = time.perf_counter()
            runs = []
            bounds = [len(questions) * i // args.runs for i in range(args.runs + 1)]
            for lo, hi in zip(bounds, bounds[1:], strict=False):
                replay(bot, questions[lo:hi], lo, clock)
                runs.append(update_topics(bot.store, bot.engine.index, config=config).__dict__)
            timings["replay_and_topics_s"] = time.perf_counter() - start
            logged = Counter(
                kind(by_conversation[g.conversation_id]) for g in bot.store.topic_gaps()
            )
            incremental = score(bot.store, by_conversation)
            ids = {t.id for t in bot.store.gap_topics()}
            start = time.perf_counter()
            update_topics(bot.store, bot.engine.index, config=config, rebuild=True)
            timings["rebuild_s"] = time.perf_counter() - start
            rebuilt = score(bot.store, by_conversation)
            same = len(ids & {t.id for t in bot.store.gap_topics()}) / max(len(ids), 1)
            encoder = bot.engine.index.encoder.name
        if args.keep is not None:
            shutil.copy(db, args.keep)
    result = {
        "set": "clinc150_gap/test.jsonl",
        "date": datetime.now(UTC).date().isoformat(),
        "encoder": encoder,
        "engine": settings.engine.model_dump(),
        "topic_config": config.__dict__,
        "replayed": dict(replayed),
        "logged_as_gaps": dict(logged),
        "in_scope_logged": round(logged["in_scope"] / replayed["in_scope"], 4),
        "gap_topic_logged": round(logged["gap_topic"] / replayed["gap_topic"], 4),
        "out_of_scope_logged": round(logged["out_of_scope"] / replayed["out_of_scope"], 4),
        "in_scope_in_new_topics": round(
            incremental["in_scope_in_new_topics"] / replayed["in_scope"], 4
        ),
        "incremental": incremental | {"runs": runs},
        "rebuild": rebuilt | {"ids_shared_with_incremental": round(same, 3)},
        "timings": {k: round(v, 1) for k, v in timings.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    inc = result["incremental"]
    print(
        f"ARI {inc['ari']:.3f} NMI {inc['nmi']:.3f}; {inc['new_topics']} new topics "
        f"(+{inc['near_miss_topics']} near misses) for {HELD_OUT} held out, "
        f"{inc['held_out_recovered']} recovered; in-scope logged as gaps "
        f"{result['in_scope_logged']:.1%}, in new topics {result['in_scope_in_new_topics']:.1%}"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
