"""Internal notes, tags and satisfaction ratings of tickets in SQL, for every dialect (the
DeskStore part of SQLStore). Notes live in a table of their own, never among a
conversation's messages, so nothing that reads or delivers a conversation can reach them."""

from __future__ import annotations

from datetime import datetime

from autoreply.errors import ConflictError
from autoreply.store.core import SQLCore, Tx, marks, record, records, where
from autoreply.store.records import NOTE_MAX_CHARS, Note, Rating, TicketStatus, clean_tags


class DeskSQL(SQLCore):
    """The DeskStore part of SQLStore."""

    def add_note(self, ticket_id: int, *, agent: str, text: str) -> Note:
        text = text.strip()
        if not text or len(text) > NOTE_MAX_CHARS:
            raise ConflictError(f"a note needs 1-{NOTE_MAX_CHARS} characters of text")
        with self._tx(write=True) as tx:
            self._one_ticket(tx, ticket_id)
            return self._add(
                tx, "ticket_notes", Note, {"ticket_id": ticket_id, "agent": agent, "text": text}
            )

    def list_notes(self, ticket_id: int) -> list[Note]:
        with self._tx() as tx:
            rows = tx.all(
                "SELECT * FROM ticket_notes WHERE ticket_id = ? ORDER BY created_at, id",
                (ticket_id,),
            )
        return records(Note, rows)

    def tag_ticket(self, ticket_id: int, tags: list[str], *, agent: str) -> list[str]:
        wanted = clean_tags(tags)
        with self._tx(write=True) as tx:
            self._one_ticket(tx, ticket_id)
            for tag in wanted:
                tx.insert(
                    "ticket_tags",
                    {
                        "ticket_id": ticket_id,
                        "tag": tag,
                        "added_by": agent,
                        "created_at": self._stamp(),
                    },
                    unique="(ticket_id, tag)",
                )
            return self._tags(tx, [ticket_id]).get(ticket_id, [])

    def untag_ticket(self, ticket_id: int, tag: str) -> list[str]:
        with self._tx(write=True) as tx:
            self._one_ticket(tx, ticket_id)
            tx.execute(
                "DELETE FROM ticket_tags WHERE ticket_id = ? AND tag = ?",
                (ticket_id, tag.strip().casefold()),
            )
            return self._tags(tx, [ticket_id]).get(ticket_id, [])

    def tags_of(self, ticket_ids: list[int]) -> dict[int, list[str]]:
        with self._tx() as tx:
            return self._tags(tx, ticket_ids)

    def tagged(self, tag: str) -> set[int]:
        with self._tx() as tx:
            rows = tx.all(
                "SELECT ticket_id FROM ticket_tags WHERE tag = ?", (tag.strip().casefold(),)
            )
        return {int(row["ticket_id"]) for row in rows}

    def search_tickets(self, text: str, *, limit: int = 200) -> list[int]:
        needle = "%" + text.strip().lower().replace("\\", "\\\\").replace("%", "\\%")
        needle = needle.replace("_", "\\_") + "%"
        with self._tx() as tx:
            rows = tx.all(
                "SELECT DISTINCT t.id AS id FROM tickets AS t "
                "LEFT JOIN messages AS m ON m.conversation_id = t.conversation_id "
                "WHERE LOWER(m.text) LIKE ? ESCAPE '\\' OR LOWER(t.user_id) LIKE ? ESCAPE '\\' "
                "OR LOWER(t.context) LIKE ? ESCAPE '\\' ORDER BY t.id DESC LIMIT ?",
                (needle, needle, needle, max(limit, 0)),
            )
        return [int(row["id"]) for row in rows]

    def add_rating(self, ticket_id: int, *, rating: int, comment: str | None = None) -> Rating:
        if not 1 <= rating <= 5:
            raise ConflictError(f"rating: {rating} is not 1-5")
        with self._tx(write=True) as tx:
            ticket = self._one_ticket(tx, ticket_id)
            if ticket.status is not TicketStatus.RESOLVED:
                raise ConflictError(
                    f"ticket {ticket_id} is {ticket.status.value}; only a resolved ticket is rated"
                )
            row = tx.insert(
                "csat_ratings",
                {
                    "ticket_id": ticket_id,
                    "rating": rating,
                    "comment": comment,
                    "created_at": self._stamp(),
                },
                unique="(ticket_id)",
            )
            if row is None:
                raise ConflictError(f"ticket {ticket_id} was rated already; one rating a ticket")
        return record(Rating, row)

    def ratings_of(self, ticket_ids: list[int]) -> dict[int, Rating]:
        ids = list(dict.fromkeys(ticket_ids))
        out: dict[int, Rating] = {}
        with self._tx() as tx:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                rows = tx.all(
                    f"SELECT * FROM csat_ratings WHERE ticket_id IN ({marks(chunk)})", chunk
                )
                out.update({r.ticket_id: r for r in records(Rating, rows)})
        return out

    def ratings_between(self, *, since: datetime, until: datetime) -> list[Rating]:
        clauses, params = self._window(since, until)
        with self._tx() as tx:
            rows = tx.all(
                f"SELECT * FROM csat_ratings WHERE {where(clauses)} ORDER BY created_at, ticket_id",
                params,
            )
        return records(Rating, rows)

    def _tags(self, tx: Tx, ticket_ids: list[int]) -> dict[int, list[str]]:
        ids = list(dict.fromkeys(ticket_ids))
        out: dict[int, list[str]] = {}
        for start in range(0, len(ids), 500):  # far below every parameter limit
            chunk = ids[start : start + 500]
            rows = tx.all(
                f"SELECT ticket_id, tag FROM ticket_tags WHERE ticket_id IN ({marks(chunk)}) "
                f"ORDER BY ticket_id, {self.db.order('tag')}",
                chunk,
            )
            for row in rows:
                out.setdefault(int(row["ticket_id"]), []).append(str(row["tag"]))
        return out
