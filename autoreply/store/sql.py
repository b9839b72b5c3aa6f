"""SQLStore: the Store protocol, written once in SQL over a Dialect (store/core.py).

SQLiteStore (store/sqlite.py) and PostgresStore (store/postgres.py) are this class over
their dialect. Its parts, by concern: conversations and tickets (sql_conversations.py),
gaps and topics (sql_gaps.py), agents (sql_agents.py), conversation tokens and the VIP
list (sql_trust.py), learned variants (sql_learning.py), ticket notes, tags and ratings
(sql_desk.py); the counts for the reports, the
knowledge version and housekeeping are here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Self

from autoreply.store.core import SQLCore, marks, records, where
from autoreply.store.records import Action, FeedbackCount, ReplyCount, Ticket
from autoreply.store.sql_agents import AgentsSQL
from autoreply.store.sql_conversations import ConversationsSQL
from autoreply.store.sql_desk import DeskSQL
from autoreply.store.sql_gaps import GapsSQL
from autoreply.store.sql_learning import LearningSQL
from autoreply.store.sql_trust import TrustSQL

__all__ = ["SQLStore"]

_COUNTS = {
    "messages": "messages",
    "tickets_open": "tickets WHERE status = 'open'",
    "tickets_claimed": "tickets WHERE status = 'claimed'",
    "tickets_resolved": "tickets WHERE status = 'resolved'",
    "gaps": "gaps",
    "feedback": "feedback",
    "candidates_pending": "faq_candidates WHERE status = 'pending'",
}


class ReportsSQL(SQLCore):
    """The ReportStore part of SQLStore."""

    def decision_counts(self, *, since: datetime | None = None) -> dict[str, int]:
        clauses, params = self._window(since, None)
        with self._tx() as tx:
            rows = tx.all(
                "SELECT action, COUNT(*) AS n FROM messages "
                f"WHERE {where(['role = ?', 'action IS NOT NULL', *clauses])} GROUP BY action",
                ["bot", *params],
            )
        counts = dict.fromkeys((a.value for a in Action), 0)
        counts.update({str(row["action"]): int(row["n"]) for row in rows})
        return counts

    def reply_counts(self, *, since: datetime, until: datetime) -> list[ReplyCount]:
        clauses, params = self._window(since, until)
        order = ", ".join(self.db.order(c) for c in ("action", "reason", "entry_id"))
        with self._tx() as tx:
            rows = tx.all(
                "SELECT action, reason, entry_id, COUNT(*) AS count FROM messages "
                f"WHERE {where(['role = ?', 'action IS NOT NULL', *clauses])} "
                f"GROUP BY action, reason, entry_id ORDER BY count DESC, {order}",
                ["bot", *params],
            )
        return records(ReplyCount, rows)

    def feedback_counts(self, *, since: datetime, until: datetime) -> list[FeedbackCount]:
        clauses, params = self._window(since, until, "f.created_at")
        with self._tx() as tx:
            rows = tx.all(
                "SELECT m.entry_id AS entry_id, "
                "COUNT(CASE WHEN f.helpful THEN 1 END) AS helpful, "
                "COUNT(CASE WHEN f.helpful THEN NULL ELSE 1 END) AS not_helpful "
                "FROM feedback AS f JOIN messages AS m ON m.id = f.message_id "
                f"WHERE {where(clauses)} GROUP BY m.entry_id "
                f"ORDER BY not_helpful DESC, helpful, {self.db.order('m.entry_id')}",
                params,
            )
        return records(FeedbackCount, rows)

    def tickets_between(self, *, since: datetime, until: datetime) -> list[Ticket]:
        opened, params = self._window(since, until)
        resolved, more = self._window(since, until, "resolved_at")
        with self._tx() as tx:
            rows = tx.all(
                f"SELECT * FROM tickets WHERE ({where(opened)}) OR ({where(resolved)}) ORDER BY id",
                params + more,
            )
        return records(Ticket, rows, context="{}")

    def tickets_for_conversations(self, conversation_ids: list[str]) -> list[Ticket]:
        ids = list(dict.fromkeys(conversation_ids))
        found: list[Ticket] = []
        with self._tx() as tx:
            for start in range(0, len(ids), 500):  # stay far below every parameter limit
                chunk = ids[start : start + 500]
                rows = tx.all(
                    f"SELECT * FROM tickets WHERE conversation_id IN ({marks(chunk)})", chunk
                )
                found.extend(records(Ticket, rows, context="{}"))
        return sorted(found, key=lambda t: t.id)

    def counts(self) -> dict[str, int]:
        columns = ", ".join(f"(SELECT COUNT(*) FROM {t}) AS {k}" for k, t in _COUNTS.items())
        with self._tx() as tx:
            row = tx.one(f"SELECT {columns}")
        assert row is not None
        return {key: int(value) for key, value in row.items()}


class SQLStore(ConversationsSQL, GapsSQL, AgentsSQL, ReportsSQL, TrustSQL, LearningSQL, DeskSQL):
    """The Store protocol in SQL over ``db`` (a Dialect); ``now`` supplies the current time
    (tests pass a fake clock)."""

    @contextmanager
    def atomic(self) -> Iterator[None]:
        with self.db.atomic():
            yield

    def knowledge_version(self) -> int:
        with self._tx() as tx:
            row = tx.one("SELECT version FROM knowledge_version WHERE id = 1")
        return 0 if row is None else int(row["version"])

    def bump_knowledge_version(self) -> int:
        """Count one reload and return the new version: the UPDATE holds the row (or the
        database) until the commit, so concurrent bumps all count, in any process."""
        with self._tx(write=True) as tx:
            tx.execute(
                "UPDATE knowledge_version SET version = version + 1, updated_at = ? WHERE id = 1",
                (self._stamp(),),
            )
            row = tx.one("SELECT version FROM knowledge_version WHERE id = 1")
        assert row is not None
        return int(row["version"])

    def ping(self) -> None:
        with self._tx() as tx:
            tx.all("SELECT 1 FROM _migrations LIMIT 1")

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
