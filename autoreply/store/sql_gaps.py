"""FAQ gaps and gap topics in SQL, for every dialect (autoreply.gap_topics keeps the topics)."""

from __future__ import annotations

import json
from typing import Any

from autoreply.errors import NotFoundError
from autoreply.store.base import GapStore
from autoreply.store.core import (
    Args,
    SQLCore,
    Tx,
    equal,
    follows,
    marks,
    record,
    records,
    where,
)
from autoreply.store.records import Gap, GapAssignment, GapTopic, Reason, TopicGap, TopicStatus

_TOPIC_COLUMNS = (
    "id, kind, status, encoder, centroid, size, representative, keywords, category, "
    "entry_id, first_seen, last_seen, updated_at"
)
# A stored topic keeps its review status: every column but id and status is updated.
_TOPIC_UPDATE = ", ".join(
    f"{c} = excluded.{c}" for c in _TOPIC_COLUMNS.split(", ") if c not in ("id", "status")
)


def _topic(row: dict[str, Any]) -> GapTopic:
    row["centroid"] = bytes(row["centroid"])
    return record(GapTopic, row, keywords="[]")


def _assignment(row: dict[str, Any]) -> GapAssignment:
    row["vector"] = bytes(row["vector"])
    return record(GapAssignment, row)


def _limited(sql: str, params: list[Any], limit: int | None) -> str:
    if limit is None:
        return sql
    params.append(max(limit, 0))
    return sql + " LIMIT ?"


class GapsSQL(SQLCore):
    """The GapStore part of SQLStore."""

    @follows(GapStore.add_gap)
    def add_gap(self, new: Args) -> Gap:
        new["reason"] = Reason(new["reason"]).value
        with self._tx(write=True) as tx:
            return self._add(tx, "gaps", Gap, new)

    @follows(GapStore.list_gaps)
    def list_gaps(self, given: Args) -> list[Gap]:
        clauses, params = self._window(given["since"], given["until"])
        if given["reason"] is not None:
            clauses.append("reason = ?")
            params.append(Reason(given["reason"]).value)
        sql = f"SELECT * FROM gaps WHERE {where(clauses)} ORDER BY created_at DESC, id DESC"
        sql = _limited(sql, params, given["limit"])
        with self._tx() as tx:
            return records(Gap, tx.all(sql, params))

    def unclustered_gaps(self, *, limit: int | None = None) -> list[Gap]:
        params: list[Any] = []
        sql = _limited(
            "SELECT g.* FROM gaps AS g LEFT JOIN gap_assignments AS a ON a.gap_id = g.id "
            "WHERE a.gap_id IS NULL ORDER BY g.id",
            params,
            limit,
        )
        with self._tx() as tx:
            return records(Gap, tx.all(sql, params))

    @follows(GapStore.gap_assignments)
    def gap_assignments(self, given: Args) -> list[GapAssignment]:
        clauses: list[str] = []
        params: list[Any] = []
        topic_ids = given["topic_ids"]
        if topic_ids is not None:
            if not topic_ids:
                return []
            clauses.append(f"topic_id IN ({marks(topic_ids)})")
            params.extend(int(t) for t in topic_ids)
        if given["waiting"]:
            clauses.append("topic_id IS NULL")
        sql = f"SELECT * FROM gap_assignments WHERE {where(clauses)} ORDER BY gap_id DESC"
        sql = _limited(sql, params, given["limit"])
        with self._tx() as tx:
            return [_assignment(row) for row in tx.all(sql, params)]

    def save_gap_topics(self, topics: list[GapTopic], assignments: list[GapAssignment]) -> None:
        time = self.db.time
        with self._tx(write=True) as tx:
            tx.many(
                f"INSERT INTO gap_topics ({_TOPIC_COLUMNS}) VALUES ({marks(range(13))}) "
                f"ON CONFLICT (id) DO UPDATE SET {_TOPIC_UPDATE}",
                [
                    (
                        t.id,
                        t.kind.value,
                        t.status.value,
                        t.encoder,
                        t.centroid,
                        t.size,
                        t.representative,
                        json.dumps(t.keywords, ensure_ascii=False),
                        t.category,
                        t.entry_id,
                        time(t.first_seen),
                        time(t.last_seen),
                        time(t.updated_at),
                    )
                    for t in topics
                ],
            )
            tx.many(
                "INSERT INTO gap_assignments (gap_id, topic_id, similarity, encoder, vector) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (gap_id) DO UPDATE SET "
                "topic_id = excluded.topic_id, similarity = excluded.similarity, "
                "encoder = excluded.encoder, vector = excluded.vector",
                [(a.gap_id, a.topic_id, a.similarity, a.encoder, a.vector) for a in assignments],
            )

    def gap_topics(self, *, status: TopicStatus | None = None) -> list[GapTopic]:
        clauses, params = equal(status=status and TopicStatus(status))
        sql = f"SELECT * FROM gap_topics WHERE {where(clauses)} ORDER BY size DESC, id"
        with self._tx() as tx:
            return [_topic(row) for row in tx.all(sql, params)]

    def get_gap_topic(self, topic_id: int) -> GapTopic:
        with self._tx() as tx:
            return self._one_topic(tx, topic_id)

    @staticmethod
    def _one_topic(tx: Tx, topic_id: int) -> GapTopic:
        row = tx.one("SELECT * FROM gap_topics WHERE id = ?", (topic_id,))
        if row is None:
            known = tx.all("SELECT id FROM gap_topics ORDER BY size DESC, id LIMIT 20")
            ids = ", ".join(str(r["id"]) for r in known)
            hint = f"known: {ids}" if ids else "there are no topics yet"
            raise NotFoundError(
                f"no gap topic {topic_id} ({hint}); list them with: autoreply gaps topics"
            )
        return _topic(row)

    def set_gap_topic_status(self, topic_id: int, status: TopicStatus) -> GapTopic:
        with self._tx(write=True) as tx:
            self._one_topic(tx, topic_id)
            tx.execute(
                "UPDATE gap_topics SET status = ?, updated_at = ? WHERE id = ?",
                (TopicStatus(status).value, self._stamp(), topic_id),
            )
            return self._one_topic(tx, topic_id)

    def delete_gap_topics(self, topic_ids: list[int]) -> None:
        if not topic_ids:
            return
        ids = [int(t) for t in topic_ids]
        with self._tx(write=True) as tx:
            tx.execute(
                "UPDATE gap_assignments SET topic_id = NULL, similarity = NULL "
                f"WHERE topic_id IN ({marks(ids)})",
                ids,
            )
            tx.execute(f"DELETE FROM gap_topics WHERE id IN ({marks(ids)})", ids)

    def clear_gap_topics(self) -> None:
        with self._tx(write=True) as tx:
            tx.execute("DELETE FROM gap_assignments")
            tx.execute("DELETE FROM gap_topics")

    @follows(GapStore.topic_gaps)
    def topic_gaps(self, given: Args) -> list[TopicGap]:
        clauses, params = self._window(given["since"], given["until"], "g.created_at")
        if given["topic_id"] is not None:
            clauses.append("a.topic_id = ?")
            params.append(int(given["topic_id"]))
        sql = _limited(
            "SELECT g.*, a.topic_id AS topic_id FROM gaps AS g "
            "LEFT JOIN gap_assignments AS a ON a.gap_id = g.id "
            f"WHERE {where(clauses)} ORDER BY g.created_at DESC, g.id DESC",
            params,
            given["limit"],
        )
        with self._tx() as tx:
            return records(TopicGap, tx.all(sql, params))
