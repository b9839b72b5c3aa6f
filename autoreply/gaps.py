"""Gap topics: group FAQ gaps by meaning, as they arrive, under ids that never change.

``update_topics(store, index)``, run whenever (``autoreply gaps topics``, ``report``):

1. The gaps logged since the last run are encoded with the knowledge index's encoder; vectors
   are kept in the store, so every gap is encoded once.
2. The newest ``max_batch`` gaps (the window) are clustered: near-duplicates (cosine at least
   ``duplicate_similarity``) folded into one point, Ward agglomerative clustering of the unit
   vectors cut at ``ward_threshold`` (a cluster whose two halves hold together ``split_gain``
   better is split), members closer to an FAQ text than to their cluster's
   centroid left out (a near miss of an entry), clusters of fewer than ``min_size`` gaps left
   waiting for more. A cluster that holds together better than it resembles the FAQ (mean
   member-centroid cosine at least the centroid's best FAQ-text cosine minus
   ``near_miss_margin``) is a ``new`` topic; one whose gaps mostly (``near_miss_share``) have
   the entry nearest its centroid as their own nearest entry is a ``near_miss`` topic of that
   entry; any other cluster is no topic. Re-clustering the window every run lets early, thin
   topics firm up or vanish.
3. Ids carry over: a cluster takes the id of the topic most of its gaps were in; a cluster
   with no earlier topic takes the id of its earliest gap, so clustering the same gaps from
   scratch (``rebuild=True``) finds the same ids.
4. Topics with no gap in the window (older ones) take a waiting gap when its cosine to their
   centroid reaches ``assign_threshold`` (and, for a new topic, its cosine to the nearest FAQ
   text). An open topic left without gaps is deleted; accepted and dismissed ones are kept.

A changed topic gets its representative question (the medoid), keywords (c-TF-IDF over the
topics' questions: jieba words for Chinese, words for English, minus a small stopword list) and
a business category (the category most of its gaps' best entries share, else that of the entry
nearest its centroid). suggest() drafts an FAQ change from a topic. Defaults suit the bundled e5
encoder: chosen on clinc150_gap's dev split, bench/gaps.py reports its test split.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
from pydantic import BaseModel, Field

from autoreply.errors import ConfigError
from autoreply.knowledge import KnowledgeBase
from autoreply.models import Ticket, TicketStatus
from autoreply.ranking_metrics import ClusterQuality
from autoreply.redact import redact
from autoreply.retriever import KnowledgeIndex
from autoreply.store import (
    GapAssignment,
    GapTopic,
    Store,
    TopicGap,
    TopicKind,
    TopicStatus,
)
from autoreply.text import normalize, tokenize

_STOP_EN = """a an the i me my mine you your yours we our us it its is are was were be been being am
do does did doing to of in on at by for with from about as into and or but if so than then that
this these those there here what which who whom whose how when where why can could would should
will shall may might must have has had having please pls thanks thank hi hello hey just any some
get got know tell let like want need im i'm i'd i've it's what's don't phone email card id number"""
_STOP_ZH = """的 了 吗 呢 吧 啊 呀 哦 嗯 么 我 你 您 他 她 它 我们 你们 他们
是 在 有 和 与 或 就 都 也 还 要 想 请 请问 怎么 怎么办 怎样
如何 什么 为什么 哪里 哪个 可以 能 能否 一下 这个 那个 这 那 一个
个 把 被 给 对 啥 下 用 会"""
STOPWORDS = frozenset(_STOP_EN.split() + _STOP_ZH.split())
"""Words never used as topic keywords (placeholders such as [PHONE] included)."""


@dataclass(frozen=True)
class TopicConfig:
    """How gaps become topics. Cosines are on the encoder's scale (defaults: e5)."""

    ward_threshold: float = 1.2
    """Ward linkage distance at which clustering stops merging (unit vectors)."""
    min_size: int = 3
    """A cluster needs this many gaps to become a topic; smaller ones wait for more."""
    assign_threshold: float = 0.88
    """A gap joins an older topic (none of its gaps in the window) at this cosine or more."""
    near_miss_margin: float = 0.02
    """How much less a topic may hold together than it resembles the FAQ and still be new."""
    split_gain: float = 0.03
    """A cluster splits into its two Ward halves when each has ``min_size`` distinct questions
    and they hold together (mean member-centroid cosine, by size) this much better than the whole:
    keeps distinct topics apart while there are still few gaps and Ward merges too eagerly."""
    near_miss_share: float = 0.5
    """A cluster that is not new is a near miss when this share of its gaps have the entry
    nearest its centroid as their own nearest entry; otherwise it is no topic (it waits)."""
    duplicate_similarity: float = 0.98
    """Gaps at least this similar are folded into one point before clustering."""
    max_batch: int = 4000
    """The window: the newest gaps clustered in each run (time and memory grow as n²)."""
    sample: int = 200
    """Members per topic used for its representative question and keywords."""
    keywords: int = 5


@dataclass
class TopicRun:
    """What one update_topics() run did."""

    encoded: int = 0
    assigned: int = 0
    """New gaps now in a topic."""
    created: list[int] = field(default_factory=list)
    """Ids of the topics found in this run."""
    retired: list[int] = field(default_factory=list)
    """Ids of the topics left without gaps (deleted unless accepted or dismissed)."""
    waiting: int = 0
    """Gaps still waiting for similar ones."""


# -- vectors and clustering (pure) ---------------------------------------------------------


def unit(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    v = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=-1, keepdims=True)
    return np.asarray(v / np.where(norms == 0, 1, norms), dtype=np.float32)


def to_blob(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def from_blob(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f4").astype(np.float32)


def fold_duplicates(vectors: np.ndarray, *, similarity: float) -> np.ndarray:
    """For each row, the first row it is a near-duplicate of (itself when none)."""
    sims = vectors @ vectors.T
    leader = np.full(len(vectors), -1, dtype=np.int64)
    for i in range(len(vectors)):
        if leader[i] < 0:
            leader[i] = i
            rest = np.flatnonzero((sims[i, i + 1 :] >= similarity) & (leader[i + 1 :] < 0))
            leader[rest + i + 1] = i
    return leader


def cluster_labels(
    vectors: np.ndarray, *, threshold: float = TopicConfig.ward_threshold
) -> np.ndarray:
    """Ward agglomerative clustering of the unit vectors, cut at ``threshold``."""
    from sklearn.cluster import AgglomerativeClustering

    if len(vectors) < 2:
        return np.zeros(len(vectors), dtype=np.int64)
    model = AgglomerativeClustering(n_clusters=None, linkage="ward", distance_threshold=threshold)
    return np.asarray(model.fit_predict(unit(vectors).astype(np.float64)), dtype=np.int64)


def cluster_quality(
    vectors: np.ndarray, topics: Sequence[str], *, threshold: float
) -> ClusterQuality:
    """cluster_labels() scored against the true topics (ARI, NMI): what the eval reports."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    labels = cluster_labels(vectors, threshold=threshold)
    return ClusterQuality(
        questions=len(topics),
        topics=len(set(topics)),
        clusters=len(set(labels.tolist())),
        ari=float(adjusted_rand_score(list(topics), labels)),
        nmi=float(normalized_mutual_info_score(list(topics), labels)),
        distance_threshold=threshold,
    )


@dataclass(frozen=True)
class Found:
    """A cluster worth a topic: its rows, its kind and the entry nearest its centroid."""

    rows: list[int]
    kind: TopicKind
    entry: int
    """Position in the index's entries (for a plain FAQ matrix: its row)."""


def discover(
    vectors: np.ndarray, faq: KnowledgeIndex | np.ndarray, config: TopicConfig
) -> list[Found]:
    """Clusters worth a topic among ``vectors`` (unit rows), against the FAQ texts in
    ``faq`` (a knowledge index, or a matrix of unit FAQ vectors in tests)."""
    if len(vectors) == 0:
        return []
    near, entries = nearest(faq, vectors)
    leader = fold_duplicates(vectors, similarity=config.duplicate_similarity)
    heads = np.unique(leader)
    distinct = vectors[heads]
    head_labels = cluster_labels(distinct, threshold=config.ward_threshold)
    groups = [
        g for lab in np.unique(head_labels) for g in split(distinct, head_labels == lab, config)
    ]
    for i, group in enumerate(groups):
        head_labels[group] = i
    labels = head_labels[np.searchsorted(heads, leader)]
    for _ in range(2):  # drop members closer to an FAQ text than to their cluster
        for label in np.unique(labels[labels >= 0]):
            member = labels == label
            centre = unit(vectors[member].mean(axis=0))
            labels[member & (vectors @ centre < near)] = -1
    found = []
    for label in np.unique(labels[labels >= 0]):
        rows = np.flatnonzero(labels == label)
        if len(rows) < config.min_size:
            continue
        centre = unit(vectors[rows].mean(axis=0))
        score, entry = (float(x[0]) for x in nearest(faq, centre))
        if cohesion(vectors[rows]) >= score - config.near_miss_margin:
            found.append(Found(rows.tolist(), TopicKind.NEW, int(entry)))
        elif np.mean(entries[rows] == entry) >= config.near_miss_share:
            found.append(Found(rows.tolist(), TopicKind.NEAR_MISS, int(entry)))
    return found


def cohesion(vectors: np.ndarray) -> float:
    """Mean cosine of unit rows to their centroid: 1 for identical rows, lower when spread."""
    return float((vectors @ unit(vectors.mean(axis=0))).mean())


def split(vectors: np.ndarray, rows: np.ndarray, config: TopicConfig) -> list[np.ndarray]:
    """A cluster's rows, or its two Ward halves (recursively) when each has ``min_size`` rows
    and together they hold ``split_gain`` better than the whole (mean cohesion by size).
    discover() splits distinct questions: repeats of one question must not force a split."""
    from sklearn.cluster import AgglomerativeClustering

    rows = np.flatnonzero(rows) if rows.dtype == bool else rows
    if len(rows) >= 2 * config.min_size:
        model = AgglomerativeClustering(n_clusters=2, linkage="ward")
        halves = model.fit_predict(vectors[rows].astype(np.float64))
        a, b = rows[halves == 0], rows[halves == 1]
        parts = (len(a) * cohesion(vectors[a]) + len(b) * cohesion(vectors[b])) / len(rows)
        if (
            min(len(a), len(b)) >= config.min_size
            and parts >= cohesion(vectors[rows]) + config.split_gain
        ):
            return split(vectors, a, config) + split(vectors, b, config)
    return [rows]


def nearest(faq: KnowledgeIndex | np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's best cosine to an FAQ text, and that text's entry (for a plain matrix of
    FAQ vectors: the row)."""
    vectors = np.atleast_2d(vectors).astype(np.float32)
    if len(vectors) == 0:
        return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
    if isinstance(faq, np.ndarray):
        sims = vectors @ faq.T
        return sims.max(axis=1), sims.argmax(axis=1)
    hits = faq.index.search(vectors, k=1)
    return hits.scores[:, 0].astype(np.float32), hits.labels[:, 0]


def medoid(vectors: np.ndarray) -> int:
    """The row most similar to all the others (ties: the first)."""
    return int(np.argmax((vectors @ vectors.T).sum(axis=1)))


def keyword_tokens(text: str) -> list[str]:
    """The words of a question that may be keywords: no stopwords, digits or single letters."""
    return [
        t
        for t in tokenize(text)
        if t not in STOPWORDS and not t.isdigit() and (len(t) > 1 or not t.isascii())
    ]


def ctfidf_keywords(
    docs: Sequence[Sequence[str]], *, top: int, classes: int | None = None
) -> list[list[str]]:
    """c-TF-IDF: each class's questions as one document; weight(t, c) = tf(t, c) / |c| *
    log(1 + A / f(t)), A the average class length in words, f(t) the frequency of t across all
    classes. The first ``classes`` documents get keywords (the rest are background)."""
    counts = [Counter(t for text in doc for t in keyword_tokens(text)) for doc in docs]
    total: Counter[str] = Counter()
    for c in counts:
        total.update(c)
    average = sum(total.values()) / max(len(counts), 1)
    result = []
    for c in counts[: len(counts) if classes is None else classes]:
        size = sum(c.values()) or 1
        weights = {t: n / size * math.log(1 + average / total[t]) for t, n in c.items()}
        result.append([t for t, _ in sorted(weights.items(), key=lambda kv: (-kv[1], kv[0]))[:top]])
    return result


# -- the store side ------------------------------------------------------------------------


def update_topics(
    store: Store,
    index: KnowledgeIndex,
    *,
    config: TopicConfig | None = None,
    rebuild: bool = False,
    now: datetime | None = None,
) -> TopicRun:
    """Encode the new gaps, cluster the window of recent ones, carry topic ids over, let
    older topics take new gaps by centroid (module doc). ``rebuild`` forgets every topic
    first: the same gaps give the same ids, review statuses are lost."""
    cfg = config or TopicConfig()
    stamp = now or datetime.now(UTC)
    encoder = index.encoder.name
    if rebuild:
        store.clear_gap_topics()
    topics = {t.id: t for t in store.gap_topics()}
    fresh = store.unclustered_gaps(limit=cfg.max_batch)
    vectors = unit(index.encode_queries([g.question for g in fresh]))
    rows = {a.gap_id: a for a in store.gap_assignments(limit=cfg.max_batch)}
    stale = {t.encoder for t in topics.values()} | {a.encoder for a in rows.values()}
    if stale - {encoder}:
        raise ConfigError(
            f"gap topics were built with encoder {', '.join(sorted(stale - {encoder}))}, this "
            f"run uses {encoder}; rebuild them: autoreply gaps topics --rebuild"
        )
    rows |= {g.id: _row(g.id, v, encoder, None) for g, v in zip(fresh, vectors, strict=True)}
    window = sorted(rows.values(), key=lambda r: r.gap_id)[-cfg.max_batch :]
    matrix = np.stack([from_blob(r.vector) for r in window]) if window else vectors[:0]
    found = discover(matrix, index, cfg)  # every run: the FAQ may have grown meanwhile
    near, _ = nearest(index, matrix)
    ids = _carry_ids(found, window, topics)
    saved: dict[int, GapAssignment] = {}
    created: list[GapTopic] = []
    for cluster, topic_id in zip(found, ids, strict=True):
        centre = unit(matrix[cluster.rows].mean(axis=0))
        for r in cluster.rows:
            saved[window[r].gap_id] = _row(window[r].gap_id, matrix[r], encoder, topic_id, centre)
        entry = index.entries[cluster.entry]
        near_miss = cluster.kind is TopicKind.NEAR_MISS
        if topic_id not in topics:
            created.append(
                GapTopic(
                    id=topic_id,
                    kind=cluster.kind,
                    encoder=encoder,
                    centroid=to_blob(centre),
                    size=len(cluster.rows),
                    representative="",  # describe() fills it in from the stored members
                    category=entry.category,
                    entry_id=entry.id if near_miss else None,
                    first_seen=stamp,
                    last_seen=stamp,
                    updated_at=stamp,
                )
            )
        else:
            update = {"kind": cluster.kind, "entry_id": entry.id if near_miss else None}
            topics[topic_id] = topics[topic_id].model_copy(update=update)
    in_window = {a.topic_id for a in window}
    older = [t for t in topics.values() if t.id not in in_window]
    centres = unit(np.stack([from_blob(t.centroid) for t in older])) if older else None
    for r, row in enumerate(window):
        if row.gap_id in saved:
            continue
        joins: int | None = None
        if centres is not None:
            sims = centres @ matrix[r]
            best = older[int(np.argmax(sims))]
            sim = float(sims.max())
            if sim >= cfg.assign_threshold and (best.kind is TopicKind.NEAR_MISS or sim >= near[r]):
                joins = best.id
        saved[row.gap_id] = _row(row.gap_id, matrix[r], encoder, joins)
    before = {r.gap_id: r.topic_id for r in window}
    new_ids = {g.id for g in fresh}
    moved = [a for a in saved.values() if a.gap_id in new_ids or a.topic_id != before[a.gap_id]]
    store.save_gap_topics(created, moved)
    topics |= {t.id: t for t in created}
    touched = {a.topic_id for a in saved.values()} | {a.topic_id for a in window}
    changed = [t for t in topics.values() if t.id in touched]
    loose = [g.question for g in store.topic_gaps(limit=cfg.max_batch) if g.topic_id is None]
    described = describe(store, changed, loose, index, cfg, stamp)
    gone = [t.id for t in described if not t.size]
    store.save_gap_topics([t for t in described if t.size or t.status is not TopicStatus.OPEN], [])
    store.delete_gap_topics(
        [t.id for t in described if not t.size and t.status is TopicStatus.OPEN]
    )
    return TopicRun(
        encoded=len(fresh),
        assigned=sum(1 for g in fresh if saved[g.id].topic_id is not None),
        created=[t.id for t in created],
        retired=gone,
        waiting=sum(1 for a in saved.values() if a.topic_id is None),
    )


def _row(
    gap_id: int,
    vector: np.ndarray,
    encoder: str,
    topic_id: int | None,
    centre: np.ndarray | None = None,
) -> GapAssignment:
    sim = None if centre is None else float(vector @ centre)
    return GapAssignment(
        gap_id=gap_id, topic_id=topic_id, similarity=sim, encoder=encoder, vector=to_blob(vector)
    )


def _carry_ids(
    found: Sequence[Found], window: Sequence[GapAssignment], topics: dict[int, GapTopic]
) -> list[int]:
    """Each cluster's topic id: the existing topic most of its gaps were in (each topic goes
    to one cluster, largest overlap first), else the id of its earliest gap not yet a
    topic id."""
    overlap = Counter(
        (c, window[r].topic_id)
        for c, cluster in enumerate(found)
        for r in cluster.rows
        if window[r].topic_id in topics
    )
    ids: dict[int, int] = {}
    for (c, topic_id), _ in sorted(overlap.items(), key=lambda kv: (-kv[1], kv[0])):
        if c not in ids and topic_id is not None and topic_id not in ids.values():
            ids[c] = topic_id
    taken = set(topics) | set(ids.values())
    for c, cluster in enumerate(found):
        if c not in ids:
            ids[c] = min(window[r].gap_id for r in cluster.rows if window[r].gap_id not in taken)
            taken.add(ids[c])
    return [ids[c] for c in range(len(found))]


def describe(
    store: Store,
    topics: Sequence[GapTopic],
    background: Sequence[str],
    index: KnowledgeIndex,
    config: TopicConfig,
    now: datetime,
) -> list[GapTopic]:
    """The topics with centroid, size, first/last seen, representative, keywords and
    category recomputed from their members in the store (size 0: no members left).
    ``background``: other questions, for the keywords' inverse frequencies."""
    members = {t.id: store.topic_gaps(topic_id=t.id) for t in topics}
    stored = store.gap_assignments(topic_ids=[t.id for t in topics])
    vectors = {a.gap_id: from_blob(a.vector) for a in stored}
    docs = [[g.question for g in members[t.id][: config.sample]] for t in topics]
    words = ctfidf_keywords([*docs, background], top=config.keywords, classes=len(topics))
    result = []
    for topic, doc, keywords in zip(topics, docs, words, strict=True):
        gaps = members[topic.id]
        if not gaps:
            result.append(topic.model_copy(update={"size": 0, "updated_at": now}))
            continue
        mine = np.stack([vectors[g.id] for g in gaps])
        sample = unit(mine[: config.sample])
        categories = Counter(g.category for g in gaps if g.category).most_common(1)
        if categories and categories[0][1] * 2 >= len(gaps):
            category = categories[0][0]
        else:
            category = index.entries[int(nearest(index, unit(mine.mean(axis=0)))[1][0])].category
        result.append(
            topic.model_copy(
                update={
                    "centroid": to_blob(mine.mean(axis=0)),
                    "size": len(gaps),
                    "representative": redact(doc[medoid(sample)]),
                    "keywords": keywords,
                    "category": category,
                    "first_seen": min(g.created_at for g in gaps),
                    "last_seen": max(g.created_at for g in gaps),
                    "updated_at": now,
                }
            )
        )
    return result


# -- suggested FAQ entries -------------------------------------------------------------------


class Suggestion(BaseModel):
    """A draft FAQ change for a topic: a new entry, or variants for an existing one."""

    topic_id: int
    kind: TopicKind
    entry_id: str
    """The new entry's proposed id, or the near-missed entry's id."""
    question: str
    variants: list[str]
    answer: str = ""
    needs_answer: bool = False
    """No resolved ticket of the topic gave an answer: a person has to write one."""
    category: str
    gaps: int
    tickets: list[int] = Field(default_factory=list)
    """The resolved tickets the answer was taken from."""


def suggestions(
    store: Store, *, kb: KnowledgeBase | None = None, limit: int | None = 10
) -> list[Suggestion]:
    """Drafts for the open topics, largest first."""
    topics = store.gap_topics(status=TopicStatus.OPEN)
    return [suggest(store, t, kb=kb) for t in topics[:limit] if t.representative]


def suggest(store: Store, topic: GapTopic, *, kb: KnowledgeBase | None = None) -> Suggestion:
    """The draft for one topic. A new entry: the representative question, the topic's other
    distinct questions as variants, the answer most often given when resolving a ticket of
    one of its conversations (opened up to a day after the gap), its category. A near miss:
    the topic's questions the entry does not have yet, as variants for that entry."""
    gaps = store.topic_gaps(topic_id=topic.id)
    question = redact(topic.representative)
    texts = Counter(redact(g.question) for g in gaps)
    entry = kb.get(topic.entry_id) if kb and topic.entry_id and topic.entry_id in kb else None
    have = {normalize(t) for t in (entry.texts if entry else (question,))}
    variants: list[str] = []
    for text, _ in texts.most_common():
        if normalize(text) not in have and len(variants) < 10:
            have.add(normalize(text))
            variants.append(text)
    if topic.kind is TopicKind.NEAR_MISS and topic.entry_id:
        return Suggestion(
            topic_id=topic.id,
            kind=topic.kind,
            variants=variants,
            gaps=len(gaps),
            entry_id=topic.entry_id,
            question=entry.question if entry else question,
            answer=entry.answer if entry else "",
            category=entry.category if entry else topic.category or "general",
        )
    answer, tickets = _answer(store, gaps)
    return Suggestion(
        topic_id=topic.id,
        kind=topic.kind,
        variants=variants,
        gaps=len(gaps),
        entry_id=_new_id(topic, kb),
        question=question,
        answer=answer,
        needs_answer=not answer,
        category=topic.category or "general",
        tickets=tickets,
    )


def _answer(store: Store, gaps: Sequence[TopicGap]) -> tuple[str, list[int]]:
    asked: dict[str, list[datetime]] = {}
    for g in gaps:
        asked.setdefault(g.conversation_id, []).append(g.created_at)
    votes: dict[str, list[Ticket]] = {}
    for t in store.tickets_for_conversations(list(asked)):
        if t.status is not TicketStatus.RESOLVED or not (t.resolution or "").strip():
            continue
        if any(
            a - timedelta(minutes=1) <= t.created_at <= a + timedelta(days=1)
            for a in asked[t.conversation_id]
        ):
            votes.setdefault(normalize(t.resolution or ""), []).append(t)
    if not votes:
        return "", []
    best = max(votes.values(), key=lambda ts: (len(ts), max(t.created_at for t in ts)))
    return redact((best[-1].resolution or "").strip()), [t.id for t in best]


def _new_id(topic: GapTopic, kb: KnowledgeBase | None) -> str:
    words = [w for w in topic.keywords if re.fullmatch(r"[a-z0-9]+", w)][:3]
    slug = "-".join(words)
    if not slug:
        return f"gap-{topic.id}"
    return slug if kb is None or slug not in kb else f"{slug}-{topic.id}"
