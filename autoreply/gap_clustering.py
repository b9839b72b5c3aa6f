"""Gap clustering, the pure maths: no store, no I/O. Questions (unit vectors) are grouped by
meaning and each group is judged against the FAQ texts.

discover() takes the unit vectors of gaps and the FAQ (a knowledge index, or a plain matrix of
FAQ vectors in tests): near-duplicates (cosine at least ``duplicate_similarity``) are folded
into one point, Ward agglomerative clustering of the unit vectors is cut at ``ward_threshold``
(a cluster whose two halves hold together ``split_gain`` better is split), members closer to an
FAQ text than to their cluster's centroid are left out (a near miss of an entry). Then each
cluster is cut down to its **core**: the members with at least ``min_size - 1`` other members
closer to them than their own nearest FAQ text is (less ``core_margin``), so one question
next to one other does not pull a chain of neighbours in, and a single question stays single
until a second and a third like it arrive. A core splits where it comes apart: into groups
that share no such closeness (no gap of one is closer to a gap of another than to its nearest
FAQ text), and into two groups that are each closer among themselves than to the FAQ but apart
from each other (their cross cosine at least ``apart_margin`` below the members' nearest FAQ
cosine). A gap outside every core joins the nearest core when it lies within that core's
radius (its cosine to the core's centroid at least that of the core's farthest member) and is
closer to it than to any FAQ text, or when most of the gaps closer to it than its nearest FAQ
text, and at least ``min_size - 1``, are members of one core (the core test, applied to a gap
at a core's edge).
Cores of fewer than ``min_size`` gaps wait for more. A topic that holds together better than
it resembles the FAQ (mean member-centroid cosine at least the centroid's best FAQ-text cosine
minus ``near_miss_margin``) is ``new``; one whose gaps mostly (``near_miss_share``) have the
entry nearest its centroid as their own nearest entry is a ``near_miss`` topic of that entry;
any other group is no topic. A gap logged because the customer voted the bot's answer not
helpful does not count that answer's entry as its nearest (the customer said it does not
answer the question), so questions the bot answers wrongly can still form a new topic. Every
rule compares gaps with the FAQ's own texts rather than with a fixed cosine, so it carries
across encoders and languages whose cosines sit higher or lower.

Keywords are c-TF-IDF over the topics' questions (jieba words for Chinese, words for English,
minus a small stopword list). The evaluation scores cluster_labels() with cluster_quality();
autoreply.gap_topics keeps the store's topics current with discover(). Defaults suit the
bundled e5 encoder: chosen on clinc150_gap's dev split, bench/gaps.py reports its test split.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from autoreply.knowledge_index import KnowledgeIndex
from autoreply.models import TopicKind
from autoreply.ranking_metrics import ClusterQuality
from autoreply.ranking_metrics import cluster_quality as score_clusters
from autoreply.text import tokenize

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
    core_margin: float = 0.01
    """How much less similar than its nearest FAQ text another gap may be and still count as
    close to it when a cluster is cut down to its core."""
    apart_margin: float = 0.03
    """A core splits into two groups when their cross cosine is this far below the members'
    nearest FAQ cosine while each group is closer among itself than to the FAQ."""
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
    isolate_from: int = 2000
    """A window of at least this many gaps is clustered in a child process, so its peak
    memory (Ward's n²/2 distances: 64 MB at 4,000 gaps) leaves with it instead of staying in
    the service's heap; 0 never does."""
    sample: int = 200
    """Members per topic used for its representative question and keywords."""
    keywords: int = 5


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


def fold_duplicates(vectors: np.ndarray, *, similarity: float, block: int = 256) -> np.ndarray:
    """For each row, the first row it is a near-duplicate of (itself when none). Works through
    ``block`` rows at a time, so memory stays ``block`` × n instead of n × n (64 MB at the
    4,000-gap window)."""
    leader = np.full(len(vectors), -1, dtype=np.int64)
    for lo in range(0, len(vectors), block):
        sims = vectors[lo : lo + block] @ vectors.T
        for i in range(lo, min(lo + block, len(vectors))):
            if leader[i] < 0:
                leader[i] = i
                rest = np.flatnonzero((sims[i - lo, i + 1 :] >= similarity) & (leader[i + 1 :] < 0))
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
    labels = cluster_labels(vectors, threshold=threshold)
    return score_clusters(labels.tolist(), topics, distance_threshold=threshold)


@dataclass(frozen=True)
class Found:
    """A cluster worth a topic: its rows, its kind and the entry nearest its centroid."""

    rows: list[int]
    kind: TopicKind
    entry: int
    """Position in the index's entries (for a plain FAQ matrix: its row)."""


def discover(
    vectors: np.ndarray,
    faq: KnowledgeIndex | FaqTexts | np.ndarray,
    config: TopicConfig,
    rejected: np.ndarray | None = None,
) -> list[Found]:
    """Groups worth a topic among ``vectors`` (unit rows), against the FAQ texts in ``faq`` (a
    knowledge index, its FaqTexts, or a matrix of unit FAQ vectors in tests); the module doc
    has the rules.
    ``rejected`` holds, per row, the entry whose answer the customer voted not helpful for
    that question (-1 for none): that entry's texts are no rival for the row, and a group
    mostly rejecting one entry is never a near miss of it."""
    if len(vectors) == 0:
        return []
    faq = faq_texts(faq, rejected)  # once, not per topic
    near, entries = nearest(faq, vectors, rejected)
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
    cores = [
        part
        for label in np.unique(labels[labels >= 0])
        for part in apart(
            vectors, core(vectors, np.flatnonzero(labels == label), near, config), near, config
        )
        if len(part) >= config.min_size
    ]
    found = []
    for rows in attach(vectors, cores, near, config, leader):
        centre = unit(vectors[rows].mean(axis=0))
        refused = -1
        if rejected is not None:
            values, counts = np.unique(rejected[rows], return_counts=True)
            top = int(np.argmax(counts))
            if values[top] >= 0 and counts[top] >= config.near_miss_share * len(rows):
                refused = int(values[top])
        score, entry = (float(x[0]) for x in nearest(faq, centre, np.array([refused])))
        if cohesion(vectors[rows]) >= score - config.near_miss_margin:
            found.append(Found(rows.tolist(), TopicKind.NEW, int(entry)))
        elif np.mean(entries[rows] == entry) >= config.near_miss_share:
            found.append(Found(rows.tolist(), TopicKind.NEAR_MISS, int(entry)))
    return found


def core(
    vectors: np.ndarray, rows: np.ndarray, near: np.ndarray, config: TopicConfig
) -> np.ndarray:
    """``rows`` cut down to the members with ``min_size - 1`` others closer to them than their
    nearest FAQ text (less ``core_margin``), repeated until every member left has them."""
    need = config.min_size - 1
    while len(rows) >= config.min_size:
        pairs = counts_close(vectors, rows, rows, near, config)
        np.fill_diagonal(pairs, False)
        close = pairs.sum(axis=1) >= need
        if close.all():
            break
        rows = rows[close]
    return rows


def counts_close(
    vectors: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray | slice,
    near: np.ndarray,
    config: TopicConfig,
) -> np.ndarray:
    """Whether gap ``rows[i]`` counts gap ``cols[j]`` as close: closer to it than to its own
    nearest FAQ text, less ``core_margin``. The one relation the core test, ``linked_parts``
    and ``attach`` count."""
    return np.asarray(vectors[rows] @ vectors[cols].T >= (near[rows] - config.core_margin)[:, None])


def apart(
    vectors: np.ndarray, rows: np.ndarray, near: np.ndarray, config: TopicConfig
) -> list[np.ndarray]:
    """A core, split where it comes apart. First into the linked parts of its close-gap graph
    (``linked_parts``) when two or more hold ``min_size`` gaps; then each part into its two Ward
    halves (recursively) when each half is closer among itself than to the FAQ while the
    halves are ``apart_margin`` further from each other than from it."""
    if len(rows) < 2 * config.min_size:
        return [rows]
    parts = linked_parts(vectors, rows, near, config)
    if len(parts) > 1:
        return [piece for part in parts for piece in apart(vectors, part, near, config)]
    from sklearn.cluster import AgglomerativeClustering

    halves = AgglomerativeClustering(n_clusters=2, linkage="ward").fit_predict(
        vectors[rows].astype(np.float64)
    )
    a, b = rows[halves == 0], rows[halves == 1]
    if min(len(a), len(b)) < config.min_size:
        return [rows]
    cross = float((vectors[a] @ vectors[b].T).mean())
    if cross < float(near[rows].mean()) - config.apart_margin and all(
        mean_pairwise(vectors[h]) >= float(near[h].mean()) for h in (a, b)
    ):
        return apart(vectors, a, near, config) + apart(vectors, b, near, config)
    return [rows]


def linked_parts(
    vectors: np.ndarray, rows: np.ndarray, near: np.ndarray, config: TopicConfig
) -> list[np.ndarray]:
    """The connected parts of ``rows`` that hold ``min_size`` gaps or more, when there are two
    or more of them (else ``[rows]``). Two gaps are linked when one is closer to the other than
    to its own nearest FAQ text, less ``core_margin``: the relation the core test counts. Ward
    merges small groups of different questions readily (its merge cost grows with group size,
    so a few gaps each of two intents cost little to join); a core whose groups share no such
    link is two topics. On a core every gap has ``min_size - 1`` links, so every part is big
    enough; within a Ward half (``apart`` recurses) a gap in a smaller part leaves the topic
    (``attach`` may bring it back)."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    close = counts_close(vectors, rows, rows, near, config)
    linked = close | close.T
    np.fill_diagonal(linked, False)
    count, labels = connected_components(csr_matrix(linked), directed=False)
    sizes = np.bincount(labels, minlength=count)
    parts = [rows[labels == i] for i in range(count) if sizes[i] >= config.min_size]
    return parts if len(parts) > 1 else [rows]


def attach(
    vectors: np.ndarray,
    cores: Sequence[np.ndarray],
    near: np.ndarray,
    config: TopicConfig,
    leader: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Each core with the gaps outside every core that belong to it. A gap belongs to the core
    whose centroid it is nearest when it lies within that core's radius (cosine to the
    centroid at least its farthest member's) and is closer to it than to any FAQ text. A gap
    that fails this (it sits at the core's edge, where a centroid test is strict) still
    belongs to a core holding ``min_size - 1`` of the gaps closer to it than its nearest FAQ
    text (less ``core_margin``: the test a core's own members pass) when that core holds more
    than half of those close gaps (so no other core holds as many). ``leader`` (from
    fold_duplicates) keeps a gap's own repeats out of its count: a question asked three times
    is no crowd around itself."""
    if not cores:
        return []
    centres = unit(np.stack([vectors[c].mean(axis=0) for c in cores]))
    radius = np.array(
        [float((vectors[c] @ centre).min()) for c, centre in zip(cores, centres, strict=True)]
    )
    core_of = np.full(len(vectors), -1, dtype=np.int64)
    for i, c in enumerate(cores):
        core_of[c] = i
    rest = np.flatnonzero(core_of < 0)
    members = [list(c) for c in cores]
    for lo in range(0, len(rest), NEAREST_BLOCK):
        block = rest[lo : lo + NEAREST_BLOCK]
        sims = vectors[block] @ centres.T
        best = sims.argmax(axis=1)
        score = sims[np.arange(len(block)), best]
        close = counts_close(vectors, block, slice(None), near, config)
        if leader is None:
            close[np.arange(len(block)), block] = False
        else:
            close &= leader[None, :] != leader[block][:, None]
        for j, (r, b, s) in enumerate(zip(block, best, score, strict=True)):
            if s >= radius[b] and s >= near[r]:
                members[b].append(int(r))
                continue
            counts = np.bincount(core_of[close[j] & (core_of >= 0)], minlength=len(cores))
            top = int(counts.argmax())
            if counts[top] >= config.min_size - 1 and 2 * counts[top] > close[j].sum():
                members[top].append(int(r))
    return [np.array(sorted(m)) for m in members]


def mean_pairwise(vectors: np.ndarray) -> float:
    """Mean cosine between distinct unit rows (size-unbiased, unlike cohesion())."""
    n = len(vectors)
    if n < 2:
        return 1.0
    return float(((vectors @ vectors.T).sum() - n) / (n * (n - 1)))


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


@dataclass(frozen=True)
class FaqTexts:
    """The FAQ's unit text vectors and each text's entry: what the clustering needs of a
    knowledge index, as plain arrays another process can receive (a KnowledgeIndex holds a
    faiss index and the encoder)."""

    vectors: np.ndarray
    entries: np.ndarray

    @classmethod
    def of(cls, index: KnowledgeIndex) -> FaqTexts:
        return cls(index.index.vectors(), np.asarray(index.index.labels, dtype=np.int64))


def faq_texts(
    faq: KnowledgeIndex | FaqTexts | np.ndarray, rejected: np.ndarray | None
) -> KnowledgeIndex | FaqTexts:
    """``faq`` as nearest() searches it: a plain matrix as FaqTexts (each row its own entry),
    and a knowledge index as FaqTexts too when some row has a rejected entry (every text is
    compared, so leaving an entry out never depends on how many texts it has; the index's
    k-nearest search is kept for the common case)."""
    if isinstance(faq, np.ndarray):
        return FaqTexts(faq, np.arange(len(faq), dtype=np.int64))
    if isinstance(faq, FaqTexts) or rejected is None or not (rejected >= 0).any():
        return faq
    return FaqTexts.of(faq)


NEAREST_BLOCK = 256
"""Rows compared with every FAQ text at once (a block's similarities: 256 × texts floats)."""


def nearest(
    faq: KnowledgeIndex | FaqTexts | np.ndarray,
    vectors: np.ndarray,
    rejected: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's best cosine to an FAQ text, and that text's entry (for a plain matrix of
    FAQ vectors: the row). ``rejected`` (an entry per row, -1 for none) leaves out the entry
    a customer said does not answer that row's question."""
    vectors = np.atleast_2d(vectors).astype(np.float32)
    if len(vectors) == 0:
        return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
    faq = faq_texts(faq, rejected)
    if isinstance(faq, FaqTexts):
        best = np.empty(len(vectors), dtype=np.float32)
        entry = np.empty(len(vectors), dtype=np.int64)
        for lo in range(0, len(vectors), NEAREST_BLOCK):
            sims = vectors[lo : lo + NEAREST_BLOCK] @ faq.vectors.T
            if rejected is not None:
                sims[faq.entries[None, :] == rejected[lo : lo + NEAREST_BLOCK, None]] = -np.inf
            top = sims.argmax(axis=1)
            best[lo : lo + len(sims)] = sims[np.arange(len(sims)), top]
            entry[lo : lo + len(sims)] = faq.entries[top]
        return best, entry
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
