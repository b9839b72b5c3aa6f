"""Conversations, tickets, feedback and FAQ candidates in SQL, for every dialect. The
ownership rules of store/base.py are enforced here and nowhere else: ``_require_owner``
(reply, resolve, transfer), ``claim_ticket`` and ``promote``.

A ticket about to change is read with the dialect's row lock (``FOR UPDATE`` on
PostgreSQL; SQLite's write transactions already exclude other writers), and claimed with
``UPDATE ... WHERE status = 'open'``: of two agents claiming at once one wins, the other
waits for the winner's commit and then gets ConflictError.
"""

from __future__ import annotations

import json
from typing import Any

from autoreply.errors import ConflictError, NotFoundError, OwnershipError
from autoreply.models import Action, CandidateStatus, Priority, Reason, Role, TicketStatus
from autoreply.store.base import ConversationStore
from autoreply.store.core import Args, SQLCore, Tx, equal, follows, record, records, where
from autoreply.store.records import FAQCandidate, Feedback, StoredMessage, Ticket

_RANK = {Priority.LOW: 0, Priority.NORMAL: 1, Priority.HIGH: 2, Priority.URGENT: 3}
_URGENT_FIRST = (
    "CASE priority WHEN 'urgent' THEN 0 WHEN 'high' THEN 1 WHEN 'normal' THEN 2 ELSE 3 END"
)
_ACTIVE = "SELECT * FROM tickets WHERE conversation_id = ? AND status <> 'resolved' "
_ACTIVE += "ORDER BY id DESC LIMIT 1"


def _json(value: dict[str, Any]) -> str:
    # The context is a handoff payload read by people: render odd values as text rather
    # than lose the handoff.
    return json.dumps(value, ensure_ascii=False, default=str)


def _opt(enum: type[Action] | type[Reason], value: str | None) -> str | None:
    return None if value is None else enum(value).value


def _require_owner(ticket: Ticket, agent: str, *, doing: str) -> None:
    """The ownership rule for replying, resolving and transferring."""
    if ticket.status == TicketStatus.RESOLVED:
        raise ConflictError(
            f"ticket {ticket.id} is already resolved; {doing} it is no longer possible, "
            "open a new ticket if the customer needs more help"
        )
    if ticket.owner is None:
        raise OwnershipError(f"ticket {ticket.id} is not claimed; claim it before {doing} it")
    if ticket.owner != agent:
        raise OwnershipError(
            f"ticket {ticket.id} is owned by {ticket.owner}; ask {ticket.owner} to transfer it"
        )


class ConversationsSQL(SQLCore):
    """The ConversationStore part of SQLStore."""

    # -- messages ------------------------------------------------------------------------
    def _stored_as(self, tx: Tx, channel: str, external_id: str) -> ConflictError | None:
        row = tx.one(
            "SELECT id FROM messages WHERE channel = ? AND external_id = ?", (channel, external_id)
        )
        if row is None:
            return None
        return ConflictError(
            f"message '{external_id}' on channel '{channel}' is already stored as "
            f"message {row['id']}; look it up with find_message() instead"
        )

    @follows(ConversationStore.add_message)
    def add_message(self, new: Args) -> StoredMessage:
        channel, external_id = new["channel"], new["external_id"]
        new.update(
            role=Role(new["role"]).value,
            action=_opt(Action, new["action"]),
            reason=_opt(Reason, new["reason"]),
            details=None if new["details"] is None else _json(new["details"]),
        )
        with self._tx(write=True) as tx:
            if external_id is not None and (found := self._stored_as(tx, channel, external_id)):
                raise found
            if new["ticket_id"] is not None:
                self._one_ticket(tx, new["ticket_id"])
            if new["reply_to"] is not None:
                self._one_message(tx, new["reply_to"])
            new["created_at"] = self._stamp()
            row = tx.insert("messages", new, unique="(channel, external_id)")
            if row is None:  # another process stored it between our check and our insert
                raise self._stored_as(tx, channel, external_id) or ConflictError(
                    f"message '{external_id}' on channel '{channel}' is already stored; "
                    "look it up with find_message() instead"
                )
        return record(StoredMessage, row)

    def find_message(self, *, channel: str, external_id: str) -> StoredMessage | None:
        with self._tx() as tx:
            row = tx.one(
                "SELECT * FROM messages WHERE channel = ? AND external_id = ? "
                "AND role = 'customer'",
                (channel, external_id),
            )
        return None if row is None else record(StoredMessage, row)

    def reply_to(self, message_id: int) -> StoredMessage | None:
        with self._tx() as tx:
            row = tx.one(
                "SELECT * FROM messages WHERE reply_to = ? AND role = 'bot' ORDER BY id LIMIT 1",
                (message_id,),
            )
        return None if row is None else record(StoredMessage, row)

    def get_message(self, message_id: int) -> StoredMessage:
        with self._tx() as tx:
            return self._one_message(tx, message_id)

    def history(self, conversation_id: str, *, limit: int | None = None) -> list[StoredMessage]:
        sql = "SELECT * FROM messages WHERE conversation_id = ? ORDER BY id"
        params: list[Any] = [conversation_id]
        if limit is not None:
            sql = f"SELECT * FROM ({sql} DESC LIMIT ?) AS recent ORDER BY id"
            params.append(max(limit, 0))
        with self._tx() as tx:
            return records(StoredMessage, tx.all(sql, params))

    # -- tickets -------------------------------------------------------------------------
    @follows(ConversationStore.open_ticket)
    def open_ticket(self, new: Args) -> tuple[Ticket, bool]:
        priority = Priority(new["priority"])
        conversation_id, context = new["conversation_id"], new["context"]
        with self._tx(write=True) as tx:
            # Escalations of one conversation queue up here, in every process and replica.
            self.db.lock_conversation(tx, conversation_id)
            row = tx.one(_ACTIVE + self.db.for_update, (conversation_id,))
            if row is not None:
                ticket = record(Ticket, row, context="{}")
                merged = dict(ticket.context)
                if context:
                    updates = merged.get("updates")
                    updates = updates if isinstance(updates, list) else []
                    merged["updates"] = [*updates, context]
                higher = max(ticket.priority, priority, key=_RANK.__getitem__)
                tx.execute(
                    "UPDATE tickets SET priority = ?, context = ?, vip = ?, "
                    "category = COALESCE(category, ?), "
                    "suggested_owner = COALESCE(suggested_owner, ?) WHERE id = ?",
                    (
                        higher.value,
                        _json(merged),
                        bool(ticket.vip or new["vip"]),
                        new["category"],
                        new["suggested_owner"],
                        ticket.id,
                    ),
                )
                return self._one_ticket(tx, ticket.id), False
            sticky = new["vip"] and new["suggested_owner"] is not None
            now = self._stamp()
            new.update(
                status=(TicketStatus.CLAIMED if sticky else TicketStatus.OPEN).value,
                priority=priority.value,
                reason=Reason(new["reason"]).value,
                vip=bool(new["vip"]),
                owner=new["suggested_owner"] if sticky else None,
                context=_json(context or {}),
                created_at=now,
                claimed_at=now if sticky else None,
            )
            row = tx.insert("tickets", new)
        assert row is not None
        return record(Ticket, row, context="{}"), True

    def get_ticket(self, ticket_id: int) -> Ticket:
        with self._tx() as tx:
            return self._one_ticket(tx, ticket_id)

    def active_ticket(self, conversation_id: str) -> Ticket | None:
        with self._tx() as tx:
            row = tx.one(_ACTIVE, (conversation_id,))
        return None if row is None else record(Ticket, row, context="{}")

    @follows(ConversationStore.list_tickets)
    def list_tickets(self, given: Args) -> list[Ticket]:
        status, priority, category = given["status"], given["priority"], given["category"]
        clauses, params = equal(
            status=status and TicketStatus(status),
            owner=given["owner"],
            priority=priority and Priority(priority),
            user_id=given["user_id"],
        )
        if category is not None:
            # substr rather than LIKE: LIKE ignores case in SQLite and needs escaping.
            path = category.rstrip("/")
            clauses.append("(category = ? OR substr(category, 1, ?) = ?)")
            params.extend([path, len(path) + 1, path + "/"])
        params.append(max(given["limit"], 0))
        sql = f"SELECT * FROM tickets WHERE {where(clauses)} "
        sql += f"ORDER BY {_URGENT_FIRST}, created_at, id LIMIT ?"
        with self._tx() as tx:
            return records(Ticket, tx.all(sql, params), context="{}")

    def _claim(self, tx: Tx, ticket_id: int, agent: str) -> Ticket:
        cur = tx.execute(
            "UPDATE tickets SET status = 'claimed', owner = ?, claimed_at = ? "
            "WHERE id = ? AND status = 'open'",
            (agent, self._stamp(), ticket_id),
        )
        if cur.rowcount != 1:  # the row is locked (or the database is) first; kept as a guard
            raise ConflictError(f"ticket {ticket_id} was claimed meanwhile; reload it")
        return self._one_ticket(tx, ticket_id)

    def claim_ticket(self, ticket_id: int, agent: str) -> Ticket:
        with self._tx(write=True) as tx:
            ticket = self._one_ticket(tx, ticket_id, lock=True)
            if ticket.status == TicketStatus.RESOLVED:
                raise ConflictError(
                    f"ticket {ticket_id} is already resolved; open a new ticket if the "
                    "customer needs more help"
                )
            if ticket.owner == agent:
                return ticket
            if ticket.owner is not None:
                raise ConflictError(
                    f"ticket {ticket_id} is owned by {ticket.owner}; "
                    f"ask {ticket.owner} to transfer it"
                )
            return self._claim(tx, ticket_id, agent)

    def transfer_ticket(self, ticket_id: int, *, agent: str, to_agent: str) -> Ticket:
        with self._tx(write=True) as tx:
            ticket = self._one_ticket(tx, ticket_id, lock=True)
            _require_owner(ticket, agent, doing="transferring")
            if to_agent != agent:
                tx.execute("UPDATE tickets SET owner = ? WHERE id = ?", (to_agent, ticket_id))
            return self._one_ticket(tx, ticket_id)

    def agent_reply(self, ticket_id: int, *, agent: str, text: str) -> StoredMessage:
        with self._tx(write=True) as tx:
            ticket = self._one_ticket(tx, ticket_id, lock=True)
            if ticket.status == TicketStatus.OPEN:
                ticket = self._claim(tx, ticket_id, agent)
            _require_owner(ticket, agent, doing="replying to")
            reply = self._add(
                tx,
                "messages",
                StoredMessage,
                dict(
                    conversation_id=ticket.conversation_id,
                    user_id=ticket.user_id,
                    channel=ticket.channel,
                    role=Role.AGENT.value,
                    text=text,
                    agent=agent,
                    ticket_id=ticket_id,
                ),
            )
            tx.execute(
                "UPDATE tickets SET first_reply_at = ? WHERE id = ? AND first_reply_at IS NULL",
                (self.db.time(reply.created_at), ticket_id),
            )
            return reply

    def resolve_ticket(
        self, ticket_id: int, *, agent: str, resolution: str | None = None
    ) -> Ticket:
        with self._tx(write=True) as tx:
            ticket = self._one_ticket(tx, ticket_id, lock=True)
            _require_owner(ticket, agent, doing="resolving")
            if resolution is None:
                last = tx.one(
                    "SELECT text FROM messages WHERE ticket_id = ? AND role = 'agent' "
                    "AND agent = ? ORDER BY id DESC LIMIT 1",
                    (ticket_id, agent),
                )
                resolution = None if last is None else last["text"]
            tx.execute(
                "UPDATE tickets SET status = 'resolved', resolved_at = ?, resolution = ? "
                "WHERE id = ?",
                (self._stamp(), resolution, ticket_id),
            )
            return self._one_ticket(tx, ticket_id)

    def last_agent_for_user(self, user_id: str) -> str | None:
        with self._tx() as tx:
            row = tx.one(
                "SELECT owner FROM tickets WHERE user_id = ? AND owner IS NOT NULL "
                "AND claimed_at IS NOT NULL ORDER BY claimed_at DESC, id DESC LIMIT 1",
                (user_id,),
            )
        return None if row is None else str(row["owner"])

    # -- feedback and FAQ candidates -----------------------------------------------------
    def add_feedback(
        self, message_id: int, *, helpful: bool, comment: str | None = None
    ) -> Feedback:
        with self._tx(write=True) as tx:
            found = tx.one("SELECT role, conversation_id FROM messages WHERE id = ?", (message_id,))
            if found is None or found["role"] != Role.BOT.value:
                what = "no message" if found is None else f"a {found['role']} message"
                raise NotFoundError(
                    f"no bot message {message_id} ({what}); feedback goes on the bot's "
                    "replies (Reply.message_id)"
                )
            # Votes on one conversation one at a time: the first vote on an answer is the one
            # that counts (a not-helpful one logs a gap), also when two arrive at once.
            self.db.lock_conversation(tx, str(found["conversation_id"]))
            values = dict(message_id=message_id, helpful=bool(helpful), comment=comment)
            return self._add(tx, "feedback", Feedback, values)

    def list_feedback(
        self, *, entry_id: str | None = None, message_ids: list[int] | None = None
    ) -> list[Feedback]:
        sql = "SELECT f.* FROM feedback AS f JOIN messages AS m ON m.id = f.message_id"
        where: list[str] = []
        params: list[Any] = []
        if entry_id is not None:
            where.append("m.entry_id = ?")
            params.append(entry_id)
        if message_ids is not None:
            where.append(f"f.message_id IN ({', '.join('?' * len(message_ids)) or 'NULL'})")
            params.extend(message_ids)
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self._tx() as tx:
            return records(Feedback, tx.all(f"{sql} ORDER BY f.created_at DESC, f.id DESC", params))

    @follows(ConversationStore.promote)
    def promote(self, given: Args) -> FAQCandidate:
        ticket_id, agent = given["ticket_id"], given["agent"]
        with self._tx(write=True) as tx:
            ticket = self._one_ticket(tx, ticket_id)
            if ticket.status != TicketStatus.RESOLVED:
                raise ConflictError(
                    f"ticket {ticket_id} is {ticket.status.value}; resolve it before promoting"
                )
            if ticket.owner != agent:
                raise OwnershipError(
                    f"ticket {ticket_id} is owned by {ticket.owner}; "
                    f"only {ticket.owner} can promote it"
                )
            question = given["question"]
            if question is None:
                first = tx.one(
                    "SELECT text FROM messages WHERE conversation_id = ? AND role = 'customer' "
                    "AND created_at <= ? ORDER BY created_at, id LIMIT 1",
                    (ticket.conversation_id, self.db.time(ticket.created_at)),
                )
                question = first["text"] if first is not None else ticket.context.get("question")
            answer = ticket.resolution if given["answer"] is None else given["answer"]
            if not question or not str(question).strip():
                raise ConflictError(
                    f"ticket {ticket_id} has no customer question to promote; pass question="
                )
            if not answer or not answer.strip():
                raise ConflictError(
                    f"ticket {ticket_id} has no resolution to promote; pass answer="
                )
            category = given["category"] or ticket.category or "general"
            values = dict(ticket_id=ticket_id, question=str(question), answer=answer)
            values.update(category=category, agent=agent, status=CandidateStatus.PENDING.value)
            return self._add(tx, "faq_candidates", FAQCandidate, values)

    def list_candidates(self, *, status: CandidateStatus | None = None) -> list[FAQCandidate]:
        clauses, params = equal(status=status and CandidateStatus(status))
        sql = f"SELECT * FROM faq_candidates WHERE {where(clauses)} ORDER BY created_at, id"
        with self._tx() as tx:
            return records(FAQCandidate, tx.all(sql, params))

    def set_candidate_status(self, candidate_id: int, status: CandidateStatus) -> FAQCandidate:
        with self._tx(write=True) as tx:
            cur = tx.execute(
                "UPDATE faq_candidates SET status = ? WHERE id = ?",
                (CandidateStatus(status).value, candidate_id),
            )
            if cur.rowcount == 0:
                raise NotFoundError(f"no FAQ candidate {candidate_id}")
            row = tx.one("SELECT * FROM faq_candidates WHERE id = ?", (candidate_id,))
        assert row is not None
        return record(FAQCandidate, row)
