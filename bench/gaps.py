"""Gap-topic benchmark: replay a labelled set through the bot and see whether the gaps it logs
cluster into the intents held out of its FAQ.

A set folder in the shared format holds ``faq.jsonl`` and ``test.jsonl``; test questions of
intents missing from the FAQ carry ``gap_topic``. ``--holdout N --seed S`` makes any set a gap
set: N entries that have test questions (picked with seed S) are left out of the FAQ (a copy in
a temporary folder; the set is never changed) and their questions get ``gap_topic``. The replay
sends every gap-topic question, ``--in-scope`` in-scope and ``--oos`` out-of-scope questions
(sampled with the seed, shuffled) through ``AutoReply`` with the default settings and encoder
and a fresh SQLite store, one conversation per question, spread over this ISO week up to now,
so gaps are logged exactly as in production (``service.GAP_REASONS``). Topics are then built the
incremental way: the replay comes in four parts with ``update_topics`` after each (as if run
daily); a rebuild from scratch on the same gaps is reported next to it. ``--sparse LO-HI``
thins the gap questions to LO..HI per held-out intent (a realistic trickle).

Reported per replay:

- how many questions of each kind were logged as gaps; ``in_scope_logged`` is the share of
  in-scope questions logged as gaps (the bot did not answer them: clarified or escalated);
- ``in_scope_in_new_topics``: the share of in-scope questions that ended up in a *new* topic,
  i.e. would be shown to a product manager as a missing FAQ (near-miss topics suggest variants
  for an existing entry instead);
- ARI and NMI of the new topics against ``gap_topic``, over the logged gaps that have one (a
  gap outside any new topic counts as its own cluster);
- topics found (new and near-miss) against the intents held out, the held-out intents
  recovered (a new topic whose majority is that intent);
- every topic's purity: the share of its largest intent (an in-scope question's intent is its
  ``expected_id``, every out-of-scope question counts as one intent ``out_of_scope``), how many
  intents it mixes, and the purity of its suggested variants (``suggest()``).

Usage, from the repository root::

    python bench/gaps.py                       # every set below into bench/results/gaps.json
    python bench/gaps.py --set DIR             # one set folder (shared format) instead
    python bench/gaps.py --set DIR --holdout 15 --seed 1 --oos 0
    python bench/gaps.py --set DIR --sparse 1-5 --seed 3
    python bench/gaps.py --set DIR --keep replay.db   # keep the database for autoreply report
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

from autoreply.eval_questions import LabelledQuestion, load_questions  # noqa: E402
from autoreply.gap_clustering import TopicConfig  # noqa: E402
from autoreply.gap_suggestions import suggest  # noqa: E402
from autoreply.gap_topics import update_topics  # noqa: E402
from autoreply.knowledge import KnowledgeBase  # noqa: E402
from autoreply.models import Message  # noqa: E402
from autoreply.redact import redact  # noqa: E402
from autoreply.service import AutoReply  # noqa: E402
from autoreply.settings import HoursConfig, Settings  # noqa: E402
from autoreply.store import Store, TopicKind  # noqa: E402
from autoreply.store.sqlite import SQLiteStore  # noqa: E402
from autoreply.weekly_data import week_of  # noqa: E402

SEED = 42
KINDS = {"in_scope", "out_of_scope"}
SUITE: list[dict[str, Any]] = [
    {"set": "clinc150_gap"},
    *(
        {"set": "clinc150_gap", "sparse": (1, 5), "seed": s, "in_scope": 300, "oos": 100}
        for s in (1, 2, 3)
    ),
    {"set": "massive_zh_cn_gap"},
    {"set": "banking77", "holdout": 15},
]
"""What a plain ``python bench/gaps.py`` replays (paths under --data)."""


def load_set(
    folder: Path, *, holdout: int = 0, seed: int = SEED, tmp: Path
) -> tuple[Path, list[LabelledQuestion]]:
    """The set's FAQ file and test questions; with ``holdout`` N, a copy of the FAQ in ``tmp``
    without N entries (seeded pick among those with test questions) and their questions
    relabelled as gap topics."""
    faq = folder / "faq.jsonl"
    for path in (faq, folder / "test.jsonl"):
        if not path.is_file():
            raise SystemExit(f"{path}: missing; a set folder holds faq.jsonl and test.jsonl")
    questions = load_questions(folder / "test.jsonl")
    if not holdout:
        return faq, questions
    lines = [line for line in faq.read_text(encoding="utf-8").splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]
    asked = {q.expected_id for q in questions}
    ids = sorted(e["id"] for e in entries if e["id"] in asked)
    if holdout >= len(ids):
        raise SystemExit(f"{faq}: --holdout {holdout} leaves no entry ({len(ids)} with questions)")
    out = set(random.Random(seed).sample(ids, holdout))
    kept = tmp / "faq.jsonl"
    kept.write_text(
        "".join(line + "\n" for line, e in zip(lines, entries, strict=True) if e["id"] not in out),
        encoding="utf-8",
    )
    relabelled = []
    for q in questions:
        if q.expected_id in out:
            q = q.model_copy(
                update={"expected_id": None, "acceptable_ids": (), "gap_topic": q.expected_id}
            )
        elif q.acceptable_ids:
            q = q.model_copy(
                update={"acceptable_ids": tuple(a for a in q.acceptable_ids if a not in out)}
            )
        relabelled.append(q)
    return kept, relabelled


def sample(
    questions: list[LabelledQuestion],
    in_scope: int,
    oos: int,
    *,
    seed: int = SEED,
    sparse: tuple[int, int] | None = None,
) -> list[LabelledQuestion]:
    """Every gap-topic question (``sparse``: LO..HI of each topic) plus seeded samples of
    in-scope and out-of-scope ones, shuffled."""
    rng = random.Random(seed)
    gap = [q for q in questions if q.gap_topic]
    if sparse is not None:
        topics: dict[str, list[LabelledQuestion]] = {}
        for q in gap:
            topics.setdefault(q.gap_topic or "", []).append(q)
        gap = [
            q
            for name in sorted(topics)
            for q in rng.sample(topics[name], min(len(topics[name]), rng.randint(*sparse)))
        ]
    inside = [q for q in questions if q.in_scope]
    outside = [q for q in questions if not q.in_scope and not q.gap_topic]
    picked = gap + rng.sample(inside, min(in_scope, len(inside)))
    picked += rng.sample(outside, min(oos, len(outside)))
    rng.shuffle(picked)
    return picked


def intent(q: LabelledQuestion) -> str:
    """The label a topic's purity is measured against."""
    return q.gap_topic or q.expected_id or "out_of_scope"


def share(part: int, whole: int) -> float | None:
    """part / whole rounded, None when there is nothing to divide (e.g. ``--oos 0``)."""
    return round(part / whole, 4) if whole else None


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


def score(
    store: Store,
    by_conversation: dict[str, LabelledQuestion],
    *,
    held_out: int,
    kb: KnowledgeBase,
) -> dict[str, Any]:
    """Topic figures for the gaps in the store."""
    topics = {t.id: t for t in store.gap_topics()}
    gaps = store.topic_gaps()
    new = {t for t, topic in topics.items() if topic.kind is TopicKind.NEW}
    truth, found = [], []
    members: dict[int, list[str]] = {}
    by_text: dict[str, str] = {}
    for g in gaps:
        q = by_conversation[g.conversation_id]
        by_text[redact(g.question)] = intent(q)
        if g.topic_id is not None:
            members.setdefault(g.topic_id, []).append(intent(q))
        if q.gap_topic:
            truth.append(q.gap_topic)
            found.append(str(g.topic_id) if g.topic_id in new else f"alone-{g.id}")
    majority = {t: Counter(m).most_common(1)[0] for t, m in members.items()}
    recovered = sorted({majority[t][0] for t in new if majority[t][0] not in KINDS})
    recovered = [r for r in recovered if r in set(truth)]
    in_new = sum(
        1 for g in gaps if g.topic_id in new and by_conversation[g.conversation_id].in_scope
    )
    rows = []
    variants_right = variants_all = 0
    for t in sorted(topics, key=lambda t: -topics[t].size):
        draft = suggest(store, topics[t], kb=kb)
        labels = [by_text.get(v, "?") for v in [draft.question, *draft.variants]]
        top = Counter(labels).most_common(1)[0][1] if labels else 0
        variants_right, variants_all = variants_right + top, variants_all + len(labels)
        rows.append(
            {
                "id": t,
                "kind": str(topics[t].kind),
                "size": topics[t].size,
                "representative": topics[t].representative,
                "keywords": topics[t].keywords,
                "majority": majority[t][0],
                "purity": round(majority[t][1] / len(members[t]), 3),
                "intents": len(set(members[t])),
                "variants_purity": round(top / len(labels), 3) if labels else None,
            }
        )
    purities = [r["purity"] for r in rows]
    return {
        "ari": round(float(adjusted_rand_score(truth, found)), 4) if truth else None,
        "nmi": round(float(normalized_mutual_info_score(truth, found)), 4) if truth else None,
        "new_topics": len(new),
        "near_miss_topics": len(topics) - len(new),
        "held_out": held_out,
        "held_out_recovered": len(recovered),
        "recovered": recovered,
        "in_scope_in_new_topics": in_new,
        "waiting": sum(1 for g in gaps if g.topic_id is None),
        "min_purity": min(purities) if purities else None,
        "topics_below_0.8_purity": sum(1 for p in purities if p < 0.8),
        "topics_mixing_3_intents": sum(1 for r in rows if r["intents"] >= 3),
        "variants_purity": share(variants_right, variants_all),
        "topics": rows,
    }


def replay_set(
    folder: Path,
    *,
    holdout: int = 0,
    seed: int = SEED,
    in_scope: int = 1000,
    oos: int = 300,
    sparse: tuple[int, int] | None = None,
    runs: int = 4,
    config: TopicConfig | None = None,
    keep: Path | None = None,
    encoder: str = "e5",
) -> dict[str, Any]:
    """Replay one set (module doc) and return its figures. ``encoder``: a spec for
    ``Settings.encoder`` (tests replay a tiny set with ``hashing``)."""
    config = config or TopicConfig()
    with tempfile.TemporaryDirectory() as tmp:
        faq, labelled = load_set(folder, holdout=holdout, seed=seed, tmp=Path(tmp))
        questions = sample(labelled, in_scope, oos, seed=seed, sparse=sparse)
        by_conversation = {f"replay-{i}": q for i, q in enumerate(questions)}
        replayed = Counter(kind(q) for q in questions)
        held_out = len({q.gap_topic for q in questions if q.gap_topic})
        db = Path(tmp) / "replay.db"
        settings = Settings(
            knowledge=faq, db=str(db), hours=HoursConfig(weekly={}), encoder=encoder
        )
        start = time.perf_counter()
        clock = Clock(len(questions))
        with AutoReply.from_settings(settings, store=SQLiteStore(db, now=clock), now=clock) as bot:
            timings: dict[str, float] = {"index_build_s": time.perf_counter() - start}
            start = time.perf_counter()
            done = []
            bounds = [len(questions) * i // runs for i in range(runs + 1)]
            for lo, hi in zip(bounds, bounds[1:], strict=False):
                replay(bot, questions[lo:hi], lo, clock)
                done.append(update_topics(bot.store, bot.engine.index, config=config).__dict__)
            timings["replay_and_topics_s"] = time.perf_counter() - start
            logged = Counter(
                kind(by_conversation[g.conversation_id]) for g in bot.store.topic_gaps()
            )
            incremental = score(bot.store, by_conversation, held_out=held_out, kb=bot.kb)
            ids = {t.id for t in bot.store.gap_topics()}
            start = time.perf_counter()
            update_topics(bot.store, bot.engine.index, config=config, rebuild=True)
            timings["rebuild_s"] = time.perf_counter() - start
            rebuilt = score(bot.store, by_conversation, held_out=held_out, kb=bot.kb)
            same = len(ids & {t.id for t in bot.store.gap_topics()}) / max(len(ids), 1)
            encoder = bot.engine.index.encoder.name
        if keep is not None:
            shutil.copy(db, keep)
    return {
        "set": folder.name,
        "holdout": holdout,
        "seed": seed,
        "sparse": list(sparse) if sparse else None,
        "encoder": encoder,
        "replayed": dict(replayed),
        "logged_as_gaps": dict(logged),
        "in_scope_logged": share(logged["in_scope"], replayed["in_scope"]),
        "gap_topic_logged": share(logged["gap_topic"], replayed["gap_topic"]),
        "out_of_scope_logged": share(logged["out_of_scope"], replayed["out_of_scope"]),
        "in_scope_in_new_topics": share(
            incremental["in_scope_in_new_topics"], replayed["in_scope"]
        ),
        "incremental": incremental | {"runs": done},
        "rebuild": rebuilt | {"ids_shared_with_incremental": round(same, 3)},
        "timings": {k: round(v, 1) for k, v in timings.items()},
    }


def summary(r: dict[str, Any]) -> str:
    inc = r["incremental"]
    name = r["set"] + (f" holdout {r['holdout']}" if r["holdout"] else "")
    name += f" sparse {r['sparse'][0]}-{r['sparse'][1]} seed {r['seed']}" if r["sparse"] else ""
    ari = "-" if inc["ari"] is None else f"{inc['ari']:.3f}"
    in_new = r["in_scope_in_new_topics"]
    return (
        f"{name}: ARI {ari}; {inc['new_topics']} new topics (+{inc['near_miss_topics']} near "
        f"misses), {inc['held_out_recovered']} of {inc['held_out']} held out recovered; "
        f"in-scope in new topics {'-' if in_new is None else f'{in_new:.1%}'}; min purity "
        f"{inc['min_purity']}, {inc['topics_below_0.8_purity']} below 0.8, "
        f"{inc['topics_mixing_3_intents']} mixing 3+ intents; variants purity "
        f"{inc['variants_purity']}"
    )


def parse_range(text: str) -> tuple[int, int]:
    lo, _, hi = text.partition("-")
    try:
        low, high = int(lo), int(hi or lo)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO-HI such as 1-5, got {text!r}") from None
    if not 1 <= low <= high:
        raise argparse.ArgumentTypeError(f"expected 1 <= LO <= HI, got {text!r}")
    return low, high


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--set", type=Path, help="One set folder (faq.jsonl, test.jsonl).")
    parser.add_argument("--holdout", type=int, default=0, help="Entries to leave out of the FAQ.")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--sparse", type=parse_range, help="Gap questions per topic, e.g. 1-5.")
    parser.add_argument("--in-scope", type=int, default=1000)
    parser.add_argument("--oos", type=int, default=300)
    parser.add_argument("--runs", type=int, default=4, help="update_topics runs (replay parts).")
    parser.add_argument("--keep", type=Path, help="Copy the replayed database here.")
    parser.add_argument("--out", type=Path, help="Default: bench/results/gaps.json (suite).")
    args = parser.parse_args()
    config = TopicConfig()
    if args.set is not None:
        plans = [
            {
                "set": args.set,
                "holdout": args.holdout,
                "seed": args.seed,
                "sparse": args.sparse,
                "in_scope": args.in_scope,
                "oos": args.oos,
            }
        ]
    else:
        plans = [p | {"set": args.data / p["set"]} for p in SUITE]
    results = []
    for plan in plans:
        folder = Path(plan.pop("set"))
        result = replay_set(folder, **plan, runs=args.runs, config=config, keep=args.keep)
        print(summary(result), flush=True)
        results.append(result)
    out = args.out or (REPO / "bench" / "results" / "gaps.json" if args.set is None else None)
    if out is None:
        return
    report = {
        "date": datetime.now(UTC).date().isoformat(),
        "engine": Settings().engine.model_dump(),
        "topic_config": config.__dict__,
        "replays": results,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
