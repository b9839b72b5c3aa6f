"""Gap topics in the store: group FAQ gaps by meaning, as they arrive, under ids that never
change.

``update_topics(store, index)``, run whenever (``autoreply gaps topics``, ``report``):

1. The gaps logged since the last run are encoded with the knowledge index's encoder; vectors
   are kept in the store, so every gap is encoded once.
2. The newest ``max_batch`` gaps (the window) are clustered by
   ``autoreply.gap_clustering.discover()`` into ``new`` and ``near_miss`` topics; smaller
   clusters wait for more gaps. Re-clustering the window every run lets early, thin topics
   firm up or vanish.
3. Ids carry over: a cluster takes the id of the topic most of its gaps were in; a cluster
   with no earlier topic takes the id of its earliest gap, so clustering the same gaps from
   scratch (``rebuild=True``) finds the same ids.
4. Topics with no gap in the window (older ones) take a waiting gap when its cosine to their
   centroid reaches ``assign_threshold`` (and, for a new topic, its cosine to the nearest FAQ
   text). An open topic left without gaps is deleted; accepted and dismissed ones are kept.

A changed topic gets its representative question (the medoid), keywords (c-TF-IDF over the
topics' questions) and a business category (the category most of its gaps' best entries share,
else that of the entry nearest its centroid). autoreply.gap_suggestions drafts an FAQ change
from a topic.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from autoreply.errors import ConfigError
from autoreply.gap_clustering import (
    FaqTexts,
    Found,
    TopicConfig,
    ctfidf_keywords,
    discover,
    faq_texts,
    from_blob,
    medoid,
    nearest,
    to_blob,
    unit,
)
from autoreply.gap_worker import ChildFailed, ChildKilled, discover_in_child
from autoreply.knowledge_index import KnowledgeIndex
from autoreply.models import Reason
from autoreply.redact import redact
from autoreply.store import (
    GapAssignment,
    GapTopic,
    Store,
    TopicKind,
    TopicStatus,
)

log = logging.getLogger(__name__)


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
    rejected = _rejected(store, index, window, cfg)
    faq = faq_texts(index, rejected)
    found = _discover(matrix, faq, cfg, rejected)  # every run: the FAQ may have grown
    near, _ = nearest(faq, matrix, rejected)
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


def _discover(
    matrix: np.ndarray, faq: KnowledgeIndex | FaqTexts, cfg: TopicConfig, rejected: np.ndarray
) -> list[Found]:
    """discover(), in a child process from ``cfg.isolate_from`` gaps on: the clustering's
    temporaries peak at tens of MB, and glibc and Python keep part of every peak in the
    service's heap (bench/README.md, soak), so a replica would grow in steps with each run.
    If the child fails, the clustering runs here (and the failure is logged)."""
    if not 0 < cfg.isolate_from <= len(matrix):
        return discover(matrix, faq, cfg, rejected)
    texts = faq if isinstance(faq, FaqTexts) else FaqTexts.of(faq)
    try:
        return discover_in_child(matrix, texts, cfg, rejected)
    except ChildKilled:
        raise  # out of memory, most likely: the same peak here would take the service down
    except ChildFailed as exc:
        log.warning("gap clustering in a child process failed; clustering here", exc_info=exc)
        return discover(matrix, faq, cfg, rejected)


def _rejected(
    store: Store, index: KnowledgeIndex, window: Sequence[GapAssignment], cfg: TopicConfig
) -> np.ndarray:
    """Per window row, the index of the entry whose answer the customer voted not helpful for
    that question (-1 for none, or when the entry is gone)."""
    position = {e.id: i for i, e in enumerate(index.entries)}
    refused = {
        g.id: position.get(g.best_entry_id or "", -1)
        for g in store.list_gaps(limit=cfg.max_batch, reason=Reason.NOT_HELPFUL)
    }
    return np.array([refused.get(r.gap_id, -1) for r in window], dtype=np.int64)


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
