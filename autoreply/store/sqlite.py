"""SQLiteStore: the default Store, one SQLite file (or ``:memory:``) shared by every thread.

One connection (``check_same_thread=False``) guarded by an RLock serves the whole process;
each public method is one transaction, ``BEGIN IMMEDIATE`` when it writes, so two agents
claiming the same ticket cannot both win, even from two processes on one file. All SQL of
the SQLite backend lives here (queries) and in migrations.py (schema); it sticks to what
PostgreSQL also understands where that is easy. Times are stored as ISO-8601 UTC text with
microseconds (fixed width, so text order is time order) and come back as aware UTC datetimes.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from autoreply.errors import ConflictError, NotFoundError, OwnershipError, StoreError
from autoreply.models import (
    Action,
    CandidateStatus,
    FAQCandidate,
    Feedback,
    Gap,
    Priority,
    Reason,
    Role,
    StoredMessage,
    Ticket,
    TicketStatus,
)
from autoreply.store.base import (
    Agent,
    AgentRole,
    Delivery,
    DeliveryStatus,
    FeedbackCount,
    GapAssignment,
    GapTopic,
    Interception,
    ReplyCount,
    TopicGap,
    TopicStatus,
    Vip,
    hash_token,
)
from autoreply.store.migrations import migrate

__all__ = ["SQLiteStore"]

_BUSY_TIMEOUT_MS = 5000
_RANK = {Priority.LOW: 0, Priority.NORMAL: 1, Priority.HIGH: 2, Priority.URGENT: 3}
_URGENT_FIRST = (
    "CASE priority WHEN 'urgent' THEN 0 WHEN 'high' THEN 1 WHEN 'normal' THEN 2 ELSE 3 END"
)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _to_text(value: datetime) -> str:
    # Naive datetimes are taken to be UTC already (what datetime.utcnow() gives).
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _from_text(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value).astimezone(UTC)


def _fields(row: sqlite3.Row, *times: str) -> dict[str, Any]:
    data = {key: row[key] for key in row.keys()}  # noqa: SIM118 (sqlite3.Row is not a dict)
    for key in times:
        data[key] = _from_text(data[key])
    return data


def _message(row: sqlite3.Row) -> StoredMessage:
    data = _fields(row, "created_at")
    data["details"] = json.loads(data["details"]) if data.get("details") else None
    return StoredMessage.model_validate(data)


def _ticket(row: sqlite3.Row) -> Ticket:
    data = _fields(row, "created_at", "claimed_at", "first_reply_at", "resolved_at")
    data["context"] = json.loads(data["context"] or "{}")
    data["vip"] = bool(data["vip"])
    return Ticket.model_validate(data)


def _gap(row: sqlite3.Row) -> Gap:
    return Gap.model_validate(_fields(row, "created_at"))


def _feedback(row: sqlite3.Row) -> Feedback:
    data = _fields(row, "created_at")
    data["helpful"] = bool(data["helpful"])
    return Feedback.model_validate(data)


def _candidate(row: sqlite3.Row) -> FAQCandidate:
    return FAQCandidate.model_validate(_fields(row, "created_at"))


_AGENT_NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")
_AGENT_COLUMNS = "id, name, role, created_at, expires_at, disabled"


def _agent(row: sqlite3.Row) -> Agent:
    data = _fields(row, "created_at", "expires_at")
    data["disabled"] = bool(data["disabled"])
    return Agent.model_validate(data)


def _interception(row: sqlite3.Row) -> Interception:
    return Interception.model_validate(_fields(row, "created_at"))


def _delivery(row: sqlite3.Row) -> Delivery:
    return Delivery.model_validate(_fields(row, "created_at"))


def _topic(row: sqlite3.Row) -> GapTopic:
    data = _fields(row, "first_seen", "last_seen", "updated_at")
    data["keywords"] = json.loads(data["keywords"] or "[]")
    data["centroid"] = bytes(data["centroid"])
    return GapTopic.model_validate(data)


def _assignment(row: sqlite3.Row) -> GapAssignment:
    data = _fields(row)
    data["vector"] = bytes(data["vector"])
    return GapAssignment.model_validate(data)


def _window(
    since: datetime | None, until: datetime | None, column: str = "created_at"
) -> tuple[list[str], list[Any]]:
    """SQL clauses for the half-open window ``[since, until)`` on ``column``."""
    clauses: list[str] = []
    params: list[Any] = []
    if since is not None:
        clauses.append(f"{column} >= ?")
        params.append(_to_text(since))
    if until is not None:
        clauses.append(f"{column} < ?")
        params.append(_to_text(until))
    return clauses, params


def _marks(values: list[Any]) -> str:
    return ", ".join("?" for _ in values)


def _json(value: dict[str, Any]) -> str:
    # The context is a handoff payload read by people: render odd values as text rather
    # than lose the handoff.
    return json.dumps(value, ensure_ascii=False, default=str)


def _opt(enum: type[Action] | type[Reason], value: str | None) -> str | None:
    return None if value is None else enum(value).value


class SQLiteStore:
    """The Store protocol on SQLite. ``path`` is a file (created with its folders) or
    ``":memory:"``; ``now`` supplies the current time (tests pass a fake clock)."""

    def __init__(self, path: str | Path, *, now: Callable[[], datetime] | None = None) -> None:
        self.path: Path | str = ":memory:" if str(path) == ":memory:" else Path(path).expanduser()
        self._where = str(self.path)
        self._now = now or _utcnow
        self._lock = threading.RLock()
        self._depth = 0  # transactions open under the lock (more than one: atomic())
        self._closed = False
        self._conn = self._connect()

    # -- connection and transactions -----------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        where = self._where
        if isinstance(self.path, Path):
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(
                    f"{where}: cannot create its folder ({exc.strerror}); "
                    "choose a path you can write to"
                ) from exc
        try:
            conn = sqlite3.connect(
                where,
                timeout=_BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,  # we issue BEGIN / COMMIT ourselves
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise StoreError(
                f"{where}: cannot open the database ({exc}); check the path and its permissions"
            ) from exc
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_MS)}")
            if isinstance(self.path, Path):
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            migrate(conn, where=where)
        except sqlite3.DatabaseError as exc:
            conn.close()
            if getattr(exc, "sqlite_errorname", "") in ("SQLITE_NOTADB", "SQLITE_CORRUPT"):
                raise StoreError(
                    f"{where} is not a usable SQLite database ({exc}); move it away or "
                    "point the store at another file"
                ) from exc
            raise self._wrap(exc) from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def _wrap(self, exc: sqlite3.Error) -> StoreError:
        if self._closed:
            return StoreError(f"{self._where}: the store is closed; open it again")
        if isinstance(exc, sqlite3.IntegrityError):
            return ConflictError(f"{self._where}: the change conflicts with stored data: {exc}")
        return StoreError(f"{self._where}: database error: {exc}")

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """One write transaction for every call inside (see ``Store.atomic``)."""
        with self._tx(write=True):
            yield

    @contextmanager
    def _tx(self, *, write: bool) -> Iterator[sqlite3.Connection]:
        """One transaction under the lock; sqlite3 errors come out as StoreError. Inside
        ``atomic()`` (this thread holds the lock) it joins the transaction already open."""
        with self._lock:
            conn = self._conn
            if self._depth:
                try:
                    yield conn
                except sqlite3.Error as exc:
                    raise self._wrap(exc) from exc
                return
            try:
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            except sqlite3.Error as exc:
                raise self._wrap(exc) from exc
            self._depth += 1
            try:
                yield conn
            except BaseException as exc:
                self._rollback(conn)
                if isinstance(exc, sqlite3.Error):
                    raise self._wrap(exc) from exc
                if isinstance(exc, OverflowError):  # an id past SQLite's 64-bit integers
                    raise NotFoundError(
                        f"nothing is stored under an id that large ({exc}); ids go up to "
                        f"{2**63 - 1}"
                    ) from exc
                raise
            finally:
                self._depth -= 1
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback(conn)
                raise self._wrap(exc) from exc

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # the original error is the one worth reporting

    def _stamp(self) -> str:
        return _to_text(self._now())

    # -- row helpers (inside a transaction) ----------------------------------------------
    @staticmethod
    def _one_message(conn: sqlite3.Connection, message_id: int) -> StoredMessage:
        row = conn.execute("SELECT * FROM messages WHERE id = ?", (message_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no message {message_id}")
        return _message(row)

    @staticmethod
    def _one_ticket(conn: sqlite3.Connection, ticket_id: int) -> Ticket:
        row = conn.execute("SELECT * FROM tickets WHERE id = ?", (ticket_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no ticket {ticket_id}")
        return _ticket(row)

    def _claim(self, conn: sqlite3.Connection, ticket_id: int, agent: str) -> None:
        cur = conn.execute(
            "UPDATE tickets SET status = 'claimed', owner = ?, claimed_at = ? "
            "WHERE id = ? AND status = 'open'",
            (agent, self._stamp(), ticket_id),
        )
        if cur.rowcount != 1:  # cannot happen under BEGIN IMMEDIATE; kept as a guard
            raise ConflictError(f"ticket {ticket_id} was claimed meanwhile; reload it")

    @staticmethod
    def _require_owner(ticket: Ticket, agent: str, *, doing: str) -> None:
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

    # -- conversations -------------------------------------------------------------------
    def add_message(
        self,
        *,
        conversation_id: str,
        user_id: str,
        channel: str,
        role: Role,
        text: str,
        external_id: str | None = None,
        action: Action | None = None,
        reason: Reason | None = None,
        entry_id: str | None = None,
        confidence: float | None = None,
        agent: str | None = None,
        ticket_id: int | None = None,
        reply_to: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> StoredMessage:
        """Append a message. ``details``: what else a bot reply said (candidates, priority,
        gap id, business hours), kept so a retried message gets the first reply whole.
        ``external_id`` is the channel's id for a customer message;
        (channel, external_id) is unique: adding it twice raises ConflictError."""
        with self._tx(write=True) as conn:
            if external_id is not None:
                row = conn.execute(
                    "SELECT id FROM messages WHERE channel = ? AND external_id = ?",
                    (channel, external_id),
                ).fetchone()
                if row is not None:
                    raise ConflictError(
                        f"message '{external_id}' on channel '{channel}' is already stored as "
                        f"message {row['id']}; look it up with find_message() instead"
                    )
            if ticket_id is not None:
                self._one_ticket(conn, ticket_id)
            if reply_to is not None:
                self._one_message(conn, reply_to)
            cur = conn.execute(
                "INSERT INTO messages (conversation_id, user_id, channel, role, text, "
                "created_at, external_id, action, reason, entry_id, confidence, agent, "
                "ticket_id, reply_to, details) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    conversation_id,
                    user_id,
                    channel,
                    Role(role).value,
                    text,
                    self._stamp(),
                    external_id,
                    _opt(Action, action),
                    _opt(Reason, reason),
                    entry_id,
                    confidence,
                    agent,
                    ticket_id,
                    reply_to,
                    None if details is None else _json(details),
                ),
            )
            assert cur.lastrowid is not None
            return self._one_message(conn, cur.lastrowid)

    def find_message(self, *, channel: str, external_id: str) -> StoredMessage | None:
        """The customer message with this channel id, or None."""
        with self._tx(write=False) as conn:
            row = conn.execute(
                "SELECT * FROM messages WHERE channel = ? AND external_id = ? "
                "AND role = 'customer'",
                (channel, external_id),
            ).fetchone()
        return None if row is None else _message(row)

    def reply_to(self, message_id: int) -> StoredMessage | None:
        """The bot message stored as the reply to customer message ``message_id``."""
        with self._tx(write=False) as conn:
            row = conn.execute(
                "SELECT * FROM messages WHERE reply_to = ? AND role = 'bot' ORDER BY id LIMIT 1",
                (message_id,),
            ).fetchone()
        return None if row is None else _message(row)

    def get_message(self, message_id: int) -> StoredMessage:
        """One message by id; NotFoundError if there is none."""
        with self._tx(write=False) as conn:
            return self._one_message(conn, message_id)

    def history(self, conversation_id: str, *, limit: int | None = None) -> list[StoredMessage]:
        """The conversation's messages, oldest first; with ``limit``, the newest ``limit``."""
        with self._tx(write=False) as conn:
            if limit is None:
                rows = conn.execute(
                    "SELECT * FROM messages WHERE conversation_id = ? ORDER BY id",
                    (conversation_id,),
                ).fetchall()
            else:
                rows = conn.execute(
                    "SELECT * FROM (SELECT * FROM messages WHERE conversation_id = ? "
                    "ORDER BY id DESC LIMIT ?) AS recent ORDER BY id",
                    (conversation_id, max(limit, 0)),
                ).fetchall()
        return [_message(row) for row in rows]

    # -- tickets -------------------------------------------------------------------------
    def open_ticket(
        self,
        *,
        conversation_id: str,
        user_id: str,
        channel: str,
        priority: Priority,
        reason: Reason,
        category: str | None = None,
        vip: bool = False,
        suggested_owner: str | None = None,
        context: dict[str, Any] | None = None,
    ) -> tuple[Ticket, bool]:
        """Open a ticket for the conversation, or join the one still unresolved.

        Returns (ticket, created). Joining raises the priority if the new one is higher,
        appends the new context under ``context["updates"]`` and fills in a missing
        category, VIP flag or suggested owner. A VIP ticket with a ``suggested_owner`` is
        created already claimed by that agent (VIP stickiness)."""
        priority = Priority(priority)
        with self._tx(write=True) as conn:
            row = conn.execute(
                "SELECT * FROM tickets WHERE conversation_id = ? AND status <> 'resolved' "
                "ORDER BY id DESC LIMIT 1",
                (conversation_id,),
            ).fetchone()
            if row is not None:
                ticket = _ticket(row)
                merged = dict(ticket.context)
                if context:
                    updates = merged.get("updates")
                    updates = updates if isinstance(updates, list) else []
                    merged["updates"] = [*updates, context]
                higher = max(ticket.priority, priority, key=_RANK.__getitem__)
                conn.execute(
                    "UPDATE tickets SET priority = ?, context = ?, vip = ?, "
                    "category = COALESCE(category, ?), "
                    "suggested_owner = COALESCE(suggested_owner, ?) WHERE id = ?",
                    (
                        higher.value,
                        _json(merged),
                        int(ticket.vip or vip),
                        category,
                        suggested_owner,
                        ticket.id,
                    ),
                )
                return self._one_ticket(conn, ticket.id), False
            now = self._stamp()
            sticky = vip and suggested_owner is not None
            cur = conn.execute(
                "INSERT INTO tickets (conversation_id, user_id, channel, status, priority, "
                "reason, category, vip, owner, suggested_owner, context, created_at, "
                "claimed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    conversation_id,
                    user_id,
                    channel,
                    (TicketStatus.CLAIMED if sticky else TicketStatus.OPEN).value,
                    priority.value,
                    Reason(reason).value,
                    category,
                    int(vip),
                    suggested_owner if sticky else None,
                    suggested_owner,
                    _json(context or {}),
                    now,
                    now if sticky else None,
                ),
            )
            assert cur.lastrowid is not None
            return self._one_ticket(conn, cur.lastrowid), True

    def get_ticket(self, ticket_id: int) -> Ticket:
        """NotFoundError if there is none."""
        with self._tx(write=False) as conn:
            return self._one_ticket(conn, ticket_id)

    def active_ticket(self, conversation_id: str) -> Ticket | None:
        """The conversation's unresolved ticket, if any."""
        with self._tx(write=False) as conn:
            row = conn.execute(
                "SELECT * FROM tickets WHERE conversation_id = ? AND status <> 'resolved' "
                "ORDER BY id DESC LIMIT 1",
                (conversation_id,),
            ).fetchone()
        return None if row is None else _ticket(row)

    def list_tickets(
        self,
        *,
        status: TicketStatus | None = None,
        owner: str | None = None,
        priority: Priority | None = None,
        category: str | None = None,
        user_id: str | None = None,
        limit: int = 100,
    ) -> list[Ticket]:
        """Tickets, most urgent first then oldest first. ``category`` matches the path
        and its sub-paths (``billing`` matches ``billing/refunds``, not ``billingx``)."""
        clauses: list[str] = []
        params: list[Any] = []
        if status is not None:
            clauses.append("status = ?")
            params.append(TicketStatus(status).value)
        if owner is not None:
            clauses.append("owner = ?")
            params.append(owner)
        if priority is not None:
            clauses.append("priority = ?")
            params.append(Priority(priority).value)
        if category is not None:
            # substr rather than LIKE: LIKE is case-insensitive in SQLite and needs escaping.
            path = category.rstrip("/")
            clauses.append("(category = ? OR substr(category, 1, ?) = ?)")
            params.extend([path, len(path) + 1, path + "/"])
        if user_id is not None:
            clauses.append("user_id = ?")
            params.append(user_id)
        where = " AND ".join(clauses) or "1 = 1"
        params.append(max(limit, 0))
        sql = (
            f"SELECT * FROM tickets WHERE {where} ORDER BY {_URGENT_FIRST}, created_at, id LIMIT ?"
        )
        with self._tx(write=False) as conn:
            rows = conn.execute(sql, params).fetchall()
        return [_ticket(row) for row in rows]

    def claim_ticket(self, ticket_id: int, agent: str) -> Ticket:
        """The agent takes ownership. ConflictError if another agent owns it or it is
        resolved; claiming your own ticket is a no-op."""
        with self._tx(write=True) as conn:
            ticket = self._one_ticket(conn, ticket_id)
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
            self._claim(conn, ticket_id, agent)
            return self._one_ticket(conn, ticket_id)

    def transfer_ticket(self, ticket_id: int, *, agent: str, to_agent: str) -> Ticket:
        """The owner hands the ticket to another agent (OwnershipError if not the owner).
        ``claimed_at`` keeps the time of the first claim."""
        with self._tx(write=True) as conn:
            ticket = self._one_ticket(conn, ticket_id)
            self._require_owner(ticket, agent, doing="transferring")
            if to_agent != agent:
                conn.execute("UPDATE tickets SET owner = ? WHERE id = ?", (to_agent, ticket_id))
            return self._one_ticket(conn, ticket_id)

    def agent_reply(self, ticket_id: int, *, agent: str, text: str) -> StoredMessage:
        """The owner's reply to the customer, stored in the conversation (role agent).
        An open ticket is claimed by the replying agent first. Sets first_reply_at once."""
        with self._tx(write=True) as conn:
            ticket = self._one_ticket(conn, ticket_id)
            if ticket.status == TicketStatus.OPEN:
                self._claim(conn, ticket_id, agent)
                ticket = self._one_ticket(conn, ticket_id)
            self._require_owner(ticket, agent, doing="replying to")
            now = self._stamp()
            cur = conn.execute(
                "INSERT INTO messages (conversation_id, user_id, channel, role, text, "
                "created_at, agent, ticket_id) VALUES (?, ?, ?, 'agent', ?, ?, ?, ?)",
                (
                    ticket.conversation_id,
                    ticket.user_id,
                    ticket.channel,
                    text,
                    now,
                    agent,
                    ticket_id,
                ),
            )
            conn.execute(
                "UPDATE tickets SET first_reply_at = ? WHERE id = ? AND first_reply_at IS NULL",
                (now, ticket_id),
            )
            assert cur.lastrowid is not None
            return self._one_message(conn, cur.lastrowid)

    def resolve_ticket(
        self, ticket_id: int, *, agent: str, resolution: str | None = None
    ) -> Ticket:
        """The owner closes the ticket. ``resolution`` defaults to the agent's last reply
        on this ticket (None if there is none)."""
        with self._tx(write=True) as conn:
            ticket = self._one_ticket(conn, ticket_id)
            self._require_owner(ticket, agent, doing="resolving")
            if resolution is None:
                row = conn.execute(
                    "SELECT text FROM messages WHERE ticket_id = ? AND role = 'agent' "
                    "AND agent = ? ORDER BY id DESC LIMIT 1",
                    (ticket_id, agent),
                ).fetchone()
                resolution = None if row is None else row["text"]
            conn.execute(
                "UPDATE tickets SET status = 'resolved', resolved_at = ?, resolution = ? "
                "WHERE id = ?",
                (self._stamp(), resolution, ticket_id),
            )
            return self._one_ticket(conn, ticket_id)

    def last_agent_for_user(self, user_id: str) -> str | None:
        """The owner of this user's most recently claimed ticket (for VIP stickiness)."""
        with self._tx(write=False) as conn:
            row = conn.execute(
                "SELECT owner FROM tickets WHERE user_id = ? AND owner IS NOT NULL "
                "AND claimed_at IS NOT NULL ORDER BY claimed_at DESC, id DESC LIMIT 1",
                (user_id,),
            ).fetchone()
        return None if row is None else str(row["owner"])

    # -- gaps, feedback, candidates ------------------------------------------------------
    def add_gap(
        self,
        *,
        question: str,
        normalized: str,
        reason: Reason,
        channel: str,
        conversation_id: str,
        user_id: str,
        best_entry_id: str | None = None,
        best_score: float | None = None,
        category: str | None = None,
    ) -> Gap:
        """Log a question the bot could not answer. The caller has redacted it already."""
        with self._tx(write=True) as conn:
            cur = conn.execute(
                "INSERT INTO gaps (question, normalized, reason, best_entry_id, best_score, "
                "category, channel, conversation_id, user_id, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    question,
                    normalized,
                    Reason(reason).value,
                    best_entry_id,
                    best_score,
                    category,
                    channel,
                    conversation_id,
                    user_id,
                    self._stamp(),
                ),
            )
            row = conn.execute("SELECT * FROM gaps WHERE id = ?", (cur.lastrowid,)).fetchone()
        return _gap(row)

    def list_gaps(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = 100,
    ) -> list[Gap]:
        """Gaps, newest first, created in ``[since, until)``; ``limit=None`` for all."""
        clauses, params = _window(since, until)
        where = " AND ".join(clauses) or "1 = 1"
        sql = f"SELECT * FROM gaps WHERE {where} ORDER BY created_at DESC, id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(max(limit, 0))
        with self._tx(write=False) as conn:
            rows = conn.execute(sql, params).fetchall()
        return [_gap(row) for row in rows]

    def add_feedback(
        self, message_id: int, *, helpful: bool, comment: str | None = None
    ) -> Feedback:
        """Feedback on a bot message (NotFoundError if the message is not a bot message)."""
        with self._tx(write=True) as conn:
            row = conn.execute("SELECT role FROM messages WHERE id = ?", (message_id,)).fetchone()
            if row is None or row["role"] != Role.BOT.value:
                what = "no message" if row is None else f"a {row['role']} message"
                raise NotFoundError(
                    f"no bot message {message_id} ({what}); feedback goes on the bot's "
                    "replies (Reply.message_id)"
                )
            cur = conn.execute(
                "INSERT INTO feedback (message_id, helpful, comment, created_at) "
                "VALUES (?, ?, ?, ?)",
                (message_id, int(helpful), comment, self._stamp()),
            )
            row = conn.execute("SELECT * FROM feedback WHERE id = ?", (cur.lastrowid,)).fetchone()
        return _feedback(row)

    def list_feedback(self, *, entry_id: str | None = None) -> list[Feedback]:
        """Feedback, newest first; with ``entry_id``, only on answers from that entry."""
        with self._tx(write=False) as conn:
            if entry_id is None:
                rows = conn.execute(
                    "SELECT * FROM feedback ORDER BY created_at DESC, id DESC"
                ).fetchall()
            else:
                rows = conn.execute(
                    "SELECT f.* FROM feedback AS f JOIN messages AS m ON m.id = f.message_id "
                    "WHERE m.entry_id = ? ORDER BY f.created_at DESC, f.id DESC",
                    (entry_id,),
                ).fetchall()
        return [_feedback(row) for row in rows]

    def promote(
        self,
        ticket_id: int,
        *,
        agent: str,
        question: str | None = None,
        answer: str | None = None,
        category: str | None = None,
    ) -> FAQCandidate:
        """Propose a resolved ticket's answer as a new FAQ entry.

        Defaults: the question is the first customer message of the ticket's conversation
        up to the ticket's creation (else ``context["question"]``), the answer is the
        resolution, the category is the ticket's (else ``general``). Only the owner may
        promote (OwnershipError); the ticket must be resolved (ConflictError otherwise)."""
        with self._tx(write=True) as conn:
            ticket = self._one_ticket(conn, ticket_id)
            if ticket.status != TicketStatus.RESOLVED:
                raise ConflictError(
                    f"ticket {ticket_id} is {ticket.status.value}; resolve it before promoting"
                )
            if ticket.owner != agent:
                raise OwnershipError(
                    f"ticket {ticket_id} is owned by {ticket.owner}; "
                    f"only {ticket.owner} can promote it"
                )
            if question is None:
                row = conn.execute(
                    "SELECT text FROM messages WHERE conversation_id = ? AND role = 'customer' "
                    "AND created_at <= ? ORDER BY created_at, id LIMIT 1",
                    (ticket.conversation_id, _to_text(ticket.created_at)),
                ).fetchone()
                question = row["text"] if row is not None else ticket.context.get("question")
            answer = ticket.resolution if answer is None else answer
            if not question or not str(question).strip():
                raise ConflictError(
                    f"ticket {ticket_id} has no customer question to promote; pass question="
                )
            if not answer or not answer.strip():
                raise ConflictError(
                    f"ticket {ticket_id} has no resolution to promote; pass answer="
                )
            cur = conn.execute(
                "INSERT INTO faq_candidates (ticket_id, question, answer, category, agent, "
                "status, created_at) VALUES (?, ?, ?, ?, ?, 'pending', ?)",
                (
                    ticket_id,
                    str(question),
                    answer,
                    category or ticket.category or "general",
                    agent,
                    self._stamp(),
                ),
            )
            row = conn.execute(
                "SELECT * FROM faq_candidates WHERE id = ?", (cur.lastrowid,)
            ).fetchone()
        return _candidate(row)

    def list_candidates(self, *, status: CandidateStatus | None = None) -> list[FAQCandidate]:
        """FAQ candidates, oldest first (a review queue); optionally of one status."""
        with self._tx(write=False) as conn:
            if status is None:
                rows = conn.execute(
                    "SELECT * FROM faq_candidates ORDER BY created_at, id"
                ).fetchall()
            else:
                rows = conn.execute(
                    "SELECT * FROM faq_candidates WHERE status = ? ORDER BY created_at, id",
                    (CandidateStatus(status).value,),
                ).fetchall()
        return [_candidate(row) for row in rows]

    def set_candidate_status(self, candidate_id: int, status: CandidateStatus) -> FAQCandidate:
        """Accept or dismiss a candidate (or put it back to pending)."""
        with self._tx(write=True) as conn:
            cur = conn.execute(
                "UPDATE faq_candidates SET status = ? WHERE id = ?",
                (CandidateStatus(status).value, candidate_id),
            )
            if cur.rowcount == 0:
                raise NotFoundError(f"no FAQ candidate {candidate_id}")
            row = conn.execute(
                "SELECT * FROM faq_candidates WHERE id = ?", (candidate_id,)
            ).fetchone()
        return _candidate(row)

    # -- agents (API tokens) ---------------------------------------------------------------
    def add_agent(
        self, name: str, *, role: AgentRole, token: str, expires_at: datetime | None = None
    ) -> Agent:
        """Register an agent with the token it will present; only ``hash_token(token)`` is
        stored. Names are 1-64 of ``A-Z a-z 0-9 . _ @ -`` (StoreError otherwise);
        ConflictError if the name is taken."""
        if not _AGENT_NAME.fullmatch(name):
            raise StoreError(
                f"agent name {name!r} is not allowed; use 1-64 letters, digits, '.', '_', '@' "
                "or '-'"
            )
        with self._tx(write=True) as conn:
            if conn.execute("SELECT 1 FROM agents WHERE name = ?", (name,)).fetchone():
                raise ConflictError(
                    f"agent '{name}' already exists; issue a new token for it instead "
                    "(autoreply agents token NAME)"
                )
            cur = conn.execute(
                "INSERT INTO agents (name, role, token_hash, created_at, expires_at, disabled) "
                "VALUES (?, ?, ?, ?, ?, 0)",
                (
                    name,
                    AgentRole(role).value,
                    hash_token(token),
                    self._stamp(),
                    None if expires_at is None else _to_text(expires_at),
                ),
            )
            return self._one_agent(conn, "id = ?", cur.lastrowid)

    def set_agent_token(
        self, name: str, *, token: str, expires_at: datetime | None = None
    ) -> Agent:
        """Replace an agent's token (the old one stops working) and its expiry, and enable
        it again. NotFoundError if there is no such agent."""
        with self._tx(write=True) as conn:
            self._one_agent(conn, "name = ?", name)
            conn.execute(
                "UPDATE agents SET token_hash = ?, expires_at = ?, disabled = 0 WHERE name = ?",
                (hash_token(token), None if expires_at is None else _to_text(expires_at), name),
            )
            return self._one_agent(conn, "name = ?", name)

    def agent_for_token(self, token: str) -> Agent | None:
        """The agent holding this token, also when disabled or expired (the caller decides
        and says why), or None for an unknown token."""
        with self._tx(write=False) as conn:
            row = conn.execute(
                f"SELECT {_AGENT_COLUMNS} FROM agents WHERE token_hash = ?", (hash_token(token),)
            ).fetchone()
        return None if row is None else _agent(row)

    def get_agent(self, name: str) -> Agent:
        """NotFoundError (listing the known names) if there is none."""
        with self._tx(write=False) as conn:
            return self._one_agent(conn, "name = ?", name)

    def list_agents(self) -> list[Agent]:
        """Every agent, by name."""
        with self._tx(write=False) as conn:
            rows = conn.execute(f"SELECT {_AGENT_COLUMNS} FROM agents ORDER BY name").fetchall()
        return [_agent(row) for row in rows]

    def disable_agent(self, name: str) -> Agent:
        """The agent's token stops working; its tickets stay as they are."""
        with self._tx(write=True) as conn:
            self._one_agent(conn, "name = ?", name)
            conn.execute("UPDATE agents SET disabled = 1 WHERE name = ?", (name,))
            return self._one_agent(conn, "name = ?", name)

    @staticmethod
    def _one_agent(conn: sqlite3.Connection, where: str, value: object) -> Agent:
        row = conn.execute(
            f"SELECT {_AGENT_COLUMNS} FROM agents WHERE {where}", (value,)
        ).fetchone()
        if row is None:
            names = [r["name"] for r in conn.execute("SELECT name FROM agents ORDER BY name")]
            known = ", ".join(names[:20]) or "none yet (autoreply agents add NAME)"
            raise NotFoundError(f"no agent {value!r}; known: {known}")
        return _agent(row)

    # -- quality inspection and deliveries ----------------------------------------------
    def add_interception(
        self, *, agent: str, phrase: str, ticket_id: int | None = None
    ) -> Interception:
        """Record that ``agent``'s reply on ``ticket_id`` was blocked for ``phrase``."""
        with self._tx(write=True) as conn:
            if ticket_id is not None:
                self._one_ticket(conn, ticket_id)
            cur = conn.execute(
                "INSERT INTO interceptions (agent, ticket_id, phrase, created_at) "
                "VALUES (?, ?, ?, ?)",
                (agent, ticket_id, phrase, self._stamp()),
            )
            row = conn.execute(
                "SELECT * FROM interceptions WHERE id = ?", (cur.lastrowid,)
            ).fetchone()
        return _interception(row)

    def list_interceptions(
        self, *, agent: str | None = None, since: datetime | None = None, limit: int = 100
    ) -> list[Interception]:
        """Interceptions, newest first."""
        clauses, params = self._since(since)
        if agent is not None:
            clauses.append("agent = ?")
            params.append(agent)
        where = " AND ".join(clauses) or "1 = 1"
        params.append(max(limit, 0))
        with self._tx(write=False) as conn:
            rows = conn.execute(
                f"SELECT * FROM interceptions WHERE {where} "
                "ORDER BY created_at DESC, id DESC LIMIT ?",
                params,
            ).fetchall()
        return [_interception(row) for row in rows]

    def count_interceptions(
        self, *, by: Literal["agent", "phrase"], since: datetime | None = None
    ) -> dict[str, int]:
        """Number of interceptions per agent or per phrase, largest first."""
        if by not in ("agent", "phrase"):
            raise StoreError(f"cannot count interceptions by {by!r}; use 'agent' or 'phrase'")
        clauses, params = self._since(since)
        where = " AND ".join(clauses) or "1 = 1"
        with self._tx(write=False) as conn:
            rows = conn.execute(
                f"SELECT {by} AS key, COUNT(*) AS n FROM interceptions WHERE {where} "
                f"GROUP BY {by} ORDER BY n DESC, key",
                params,
            ).fetchall()
        return {str(row["key"]): int(row["n"]) for row in rows}

    def add_delivery(
        self, *, message_id: int, channel: str, status: DeliveryStatus, error: str | None = None
    ) -> Delivery:
        """Record how the agent message ``message_id`` went out (NotFoundError if no such
        message)."""
        with self._tx(write=True) as conn:
            self._one_message(conn, message_id)
            cur = conn.execute(
                "INSERT INTO deliveries (message_id, channel, status, error, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (message_id, channel, DeliveryStatus(status).value, error, self._stamp()),
            )
            row = conn.execute("SELECT * FROM deliveries WHERE id = ?", (cur.lastrowid,)).fetchone()
        return _delivery(row)

    def list_deliveries(
        self,
        *,
        status: DeliveryStatus | None = None,
        ticket_id: int | None = None,
        limit: int = 100,
    ) -> list[Delivery]:
        """Deliveries, newest first; with ``ticket_id``, those of the ticket's messages."""
        clauses: list[str] = []
        params: list[Any] = []
        if status is not None:
            clauses.append("d.status = ?")
            params.append(DeliveryStatus(status).value)
        if ticket_id is not None:
            clauses.append("m.ticket_id = ?")
            params.append(ticket_id)
        where = " AND ".join(clauses) or "1 = 1"
        params.append(max(limit, 0))
        with self._tx(write=False) as conn:
            rows = conn.execute(
                "SELECT d.* FROM deliveries AS d JOIN messages AS m ON m.id = d.message_id "
                f"WHERE {where} ORDER BY d.created_at DESC, d.id DESC LIMIT ?",
                params,
            ).fetchall()
        return [_delivery(row) for row in rows]

    def decision_counts(self, *, since: datetime | None = None) -> dict[str, int]:
        """Bot replies per action (answer, clarify, escalate), every action present."""
        clauses, params = self._since(since)
        where = " AND ".join(["role = 'bot'", "action IS NOT NULL", *clauses])
        with self._tx(write=False) as conn:
            rows = conn.execute(
                f"SELECT action, COUNT(*) AS n FROM messages WHERE {where} GROUP BY action",
                params,
            ).fetchall()
        counts = dict.fromkeys((a.value for a in Action), 0)
        counts.update({str(row["action"]): int(row["n"]) for row in rows})
        return counts

    @staticmethod
    def _since(since: datetime | None) -> tuple[list[str], list[Any]]:
        return _window(since, None)

    # -- gap topics ----------------------------------------------------------------------
    def unclustered_gaps(self, *, limit: int | None = None) -> list[Gap]:
        """Gaps with no stored vector yet (never clustered), oldest first."""
        sql = (
            "SELECT g.* FROM gaps AS g LEFT JOIN gap_assignments AS a ON a.gap_id = g.id "
            "WHERE a.gap_id IS NULL ORDER BY g.id"
        )
        params: list[Any] = []
        if limit is not None:
            sql += " LIMIT ?"
            params.append(max(limit, 0))
        with self._tx(write=False) as conn:
            rows = conn.execute(sql, params).fetchall()
        return [_gap(row) for row in rows]

    def gap_assignments(
        self,
        *,
        topic_ids: list[int] | None = None,
        waiting: bool = False,
        limit: int | None = None,
    ) -> list[GapAssignment]:
        """Clustered gaps, newest first: with ``topic_ids`` only those topics' members, with
        ``waiting`` only those in no topic."""
        clauses: list[str] = []
        params: list[Any] = []
        if topic_ids is not None:
            if not topic_ids:
                return []
            clauses.append(f"topic_id IN ({_marks(topic_ids)})")
            params.extend(int(t) for t in topic_ids)
        if waiting:
            clauses.append("topic_id IS NULL")
        where = " AND ".join(clauses) or "1 = 1"
        sql = f"SELECT * FROM gap_assignments WHERE {where} ORDER BY gap_id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(max(limit, 0))
        with self._tx(write=False) as conn:
            rows = conn.execute(sql, params).fetchall()
        return [_assignment(row) for row in rows]

    def save_gap_topics(self, topics: list[GapTopic], assignments: list[GapAssignment]) -> None:
        """Insert or update topics and assignments in one transaction. A stored topic keeps
        its review status whatever ``topics`` says (use set_gap_topic_status)."""
        with self._tx(write=True) as conn:
            conn.executemany(
                "INSERT INTO gap_topics (id, kind, status, encoder, centroid, size, "
                "representative, keywords, category, entry_id, first_seen, last_seen, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, "
                "encoder = excluded.encoder, centroid = excluded.centroid, "
                "size = excluded.size, representative = excluded.representative, "
                "keywords = excluded.keywords, category = excluded.category, "
                "entry_id = excluded.entry_id, first_seen = excluded.first_seen, "
                "last_seen = excluded.last_seen, updated_at = excluded.updated_at",
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
                        _to_text(t.first_seen),
                        _to_text(t.last_seen),
                        _to_text(t.updated_at),
                    )
                    for t in topics
                ],
            )
            conn.executemany(
                "INSERT INTO gap_assignments (gap_id, topic_id, similarity, encoder, vector) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (gap_id) DO UPDATE SET "
                "topic_id = excluded.topic_id, similarity = excluded.similarity, "
                "encoder = excluded.encoder, vector = excluded.vector",
                [(a.gap_id, a.topic_id, a.similarity, a.encoder, a.vector) for a in assignments],
            )

    def gap_topics(self, *, status: TopicStatus | None = None) -> list[GapTopic]:
        """Topics, largest first (then by id)."""
        where, params = ("status = ?", [TopicStatus(status).value]) if status else ("1 = 1", [])
        with self._tx(write=False) as conn:
            rows = conn.execute(
                f"SELECT * FROM gap_topics WHERE {where} ORDER BY size DESC, id", params
            ).fetchall()
        return [_topic(row) for row in rows]

    def get_gap_topic(self, topic_id: int) -> GapTopic:
        """NotFoundError (listing some known ids) if there is none."""
        with self._tx(write=False) as conn:
            return self._one_topic(conn, topic_id)

    @staticmethod
    def _one_topic(conn: sqlite3.Connection, topic_id: int) -> GapTopic:
        row = conn.execute("SELECT * FROM gap_topics WHERE id = ?", (topic_id,)).fetchone()
        if row is None:
            known = [
                str(r["id"])
                for r in conn.execute(
                    "SELECT id FROM gap_topics ORDER BY size DESC, id LIMIT 20"
                ).fetchall()
            ]
            hint = f"known: {', '.join(known)}" if known else "there are no topics yet"
            raise NotFoundError(
                f"no gap topic {topic_id} ({hint}); list them with: autoreply gaps topics"
            )
        return _topic(row)

    def set_gap_topic_status(self, topic_id: int, status: TopicStatus) -> GapTopic:
        """Mark a topic accepted, dismissed or open again."""
        with self._tx(write=True) as conn:
            self._one_topic(conn, topic_id)
            conn.execute(
                "UPDATE gap_topics SET status = ?, updated_at = ? WHERE id = ?",
                (TopicStatus(status).value, self._stamp(), topic_id),
            )
            return self._one_topic(conn, topic_id)

    def delete_gap_topics(self, topic_ids: list[int]) -> None:
        """Delete topics; their gaps stay, waiting (topic None)."""
        if not topic_ids:
            return
        ids = [int(t) for t in topic_ids]
        with self._tx(write=True) as conn:
            conn.execute(
                f"UPDATE gap_assignments SET topic_id = NULL, similarity = NULL "
                f"WHERE topic_id IN ({_marks(ids)})",
                ids,
            )
            conn.execute(f"DELETE FROM gap_topics WHERE id IN ({_marks(ids)})", ids)

    def clear_gap_topics(self) -> None:
        """Forget every topic and every stored gap vector (a rebuild starts from scratch)."""
        with self._tx(write=True) as conn:
            conn.execute("DELETE FROM gap_assignments")
            conn.execute("DELETE FROM gap_topics")

    def topic_gaps(
        self,
        *,
        topic_id: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
    ) -> list[TopicGap]:
        """Gaps with their topic, newest first, created in ``[since, until)``; with
        ``topic_id`` only that topic's."""
        clauses, params = _window(since, until, "g.created_at")
        if topic_id is not None:
            clauses.append("a.topic_id = ?")
            params.append(int(topic_id))
        where = " AND ".join(clauses) or "1 = 1"
        sql = (
            "SELECT g.*, a.topic_id AS topic_id FROM gaps AS g "
            "LEFT JOIN gap_assignments AS a ON a.gap_id = g.id "
            f"WHERE {where} ORDER BY g.created_at DESC, g.id DESC"
        )
        if limit is not None:
            sql += " LIMIT ?"
            params.append(max(limit, 0))
        with self._tx(write=False) as conn:
            rows = conn.execute(sql, params).fetchall()
        return [TopicGap.model_validate(_fields(row, "created_at")) for row in rows]

    # -- weekly report -------------------------------------------------------------------
    def reply_counts(self, *, since: datetime, until: datetime) -> list[ReplyCount]:
        """Bot replies created in ``[since, until)`` counted by action, reason and entry."""
        clauses, params = _window(since, until)
        where = " AND ".join(["role = 'bot'", "action IS NOT NULL", *clauses])
        with self._tx(write=False) as conn:
            rows = conn.execute(
                "SELECT action, reason, entry_id, COUNT(*) AS count FROM messages "
                f"WHERE {where} GROUP BY action, reason, entry_id "
                "ORDER BY count DESC, action, reason, entry_id",
                params,
            ).fetchall()
        return [ReplyCount.model_validate(_fields(row)) for row in rows]

    def feedback_counts(self, *, since: datetime, until: datetime) -> list[FeedbackCount]:
        """Feedback given in ``[since, until)``, per entry of the answer it was given on,
        most not-helpful first."""
        clauses, params = _window(since, until, "f.created_at")
        where = " AND ".join(clauses) or "1 = 1"
        with self._tx(write=False) as conn:
            rows = conn.execute(
                "SELECT m.entry_id AS entry_id, SUM(f.helpful) AS helpful, "
                "SUM(1 - f.helpful) AS not_helpful FROM feedback AS f "
                f"JOIN messages AS m ON m.id = f.message_id WHERE {where} "
                "GROUP BY m.entry_id ORDER BY not_helpful DESC, helpful, m.entry_id",
                params,
            ).fetchall()
        return [FeedbackCount.model_validate(_fields(row)) for row in rows]

    def tickets_between(self, *, since: datetime, until: datetime) -> list[Ticket]:
        """Tickets opened or resolved in ``[since, until)``, by id."""
        opened, params = _window(since, until)
        resolved, more = _window(since, until, "resolved_at")
        with self._tx(write=False) as conn:
            rows = conn.execute(
                f"SELECT * FROM tickets WHERE ({' AND '.join(opened)}) "
                f"OR ({' AND '.join(resolved)}) ORDER BY id",
                params + more,
            ).fetchall()
        return [_ticket(row) for row in rows]

    def tickets_for_conversations(self, conversation_ids: list[str]) -> list[Ticket]:
        """Every ticket of these conversations, by id."""
        ids = list(dict.fromkeys(conversation_ids))
        found: list[Ticket] = []
        with self._tx(write=False) as conn:
            for start in range(0, len(ids), 500):  # stay far below SQLite's variable limit
                chunk = ids[start : start + 500]
                rows = conn.execute(
                    f"SELECT * FROM tickets WHERE conversation_id IN ({_marks(chunk)})", chunk
                ).fetchall()
                found.extend(_ticket(row) for row in rows)
        return sorted(found, key=lambda t: t.id)

    # -- trust: conversation keys and the VIP list ---------------------------------------
    def set_conversation_key(self, conversation_id: str, token_hash: str) -> bool:
        """Give a conversation its customer token (sha256 hex) unless it has one already;
        True if this call set it (concurrent first messages: exactly one wins)."""
        with self._tx(write=True) as conn:
            cur = conn.execute(
                "INSERT INTO conversation_keys (conversation_id, token_hash, created_at) "
                "VALUES (?, ?, ?) ON CONFLICT (conversation_id) DO NOTHING",
                (conversation_id, token_hash, self._stamp()),
            )
            return cur.rowcount == 1

    def conversation_key(self, conversation_id: str) -> str | None:
        """The sha256 hex of the conversation's customer token, or None."""
        with self._tx(write=False) as conn:
            row = conn.execute(
                "SELECT token_hash FROM conversation_keys WHERE conversation_id = ?",
                (conversation_id,),
            ).fetchone()
        return None if row is None else str(row["token_hash"])

    def add_vip(self, channel: str, user_id: str, *, added_by: str, note: str | None = None) -> Vip:
        """Put a customer on the VIP list (again: updates the note and who added it)."""
        with self._tx(write=True) as conn:
            conn.execute(
                "INSERT INTO vips (channel, user_id, note, added_by, added_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (channel, user_id) DO UPDATE SET "
                "note = excluded.note, added_by = excluded.added_by, "
                "added_at = excluded.added_at",
                (channel, user_id, note, added_by, self._stamp()),
            )
            row = conn.execute(
                "SELECT * FROM vips WHERE channel = ? AND user_id = ?", (channel, user_id)
            ).fetchone()
        return Vip.model_validate(_fields(row, "added_at"))

    def remove_vip(self, channel: str, user_id: str) -> None:
        """Take a customer off the VIP list; NotFoundError if they are not on it."""
        with self._tx(write=True) as conn:
            cur = conn.execute(
                "DELETE FROM vips WHERE channel = ? AND user_id = ?", (channel, user_id)
            )
            if cur.rowcount == 0:
                raise NotFoundError(
                    f"'{user_id}' on channel '{channel}' is not on the VIP list; "
                    "list it with `autoreply vip list`"
                )

    def list_vips(self) -> list[Vip]:
        """The VIP list, by channel then user id."""
        with self._tx(write=False) as conn:
            rows = conn.execute("SELECT * FROM vips ORDER BY channel, user_id").fetchall()
        return [Vip.model_validate(_fields(row, "added_at")) for row in rows]

    def is_vip(self, channel: str, user_id: str) -> bool:
        """Whether (channel, user_id) is on the VIP list."""
        with self._tx(write=False) as conn:
            row = conn.execute(
                "SELECT 1 FROM vips WHERE channel = ? AND user_id = ?", (channel, user_id)
            ).fetchone()
        return row is not None

    # -- knowledge version ---------------------------------------------------------------
    def knowledge_version(self) -> int:
        """How many times the knowledge base was reloaded anywhere (0 for a new store)."""
        with self._tx(write=False) as conn:
            row = conn.execute("SELECT version FROM knowledge_version WHERE id = 1").fetchone()
        return 0 if row is None else int(row["version"])

    def bump_knowledge_version(self) -> int:
        """Count one reload and return the new version (BEGIN IMMEDIATE: also across
        processes on one file)."""
        with self._tx(write=True) as conn:
            conn.execute(
                "UPDATE knowledge_version SET version = version + 1, updated_at = ? WHERE id = 1",
                (self._stamp(),),
            )
            row = conn.execute("SELECT version FROM knowledge_version WHERE id = 1").fetchone()
        return int(row["version"])

    # -- housekeeping --------------------------------------------------------------------
    def ping(self) -> None:
        """Check that the database answers (StoreError if not): the service's readiness."""
        with self._tx(write=False) as conn:
            conn.execute("SELECT 1 FROM _migrations LIMIT 1").fetchall()

    def counts(self) -> dict[str, int]:
        """Row counts: messages, tickets_open, tickets_claimed, tickets_resolved, gaps,
        feedback, candidates_pending."""
        with self._tx(write=False) as conn:
            row = conn.execute(
                "SELECT "
                "(SELECT COUNT(*) FROM messages) AS messages, "
                "(SELECT COUNT(*) FROM tickets WHERE status = 'open') AS tickets_open, "
                "(SELECT COUNT(*) FROM tickets WHERE status = 'claimed') AS tickets_claimed, "
                "(SELECT COUNT(*) FROM tickets WHERE status = 'resolved') AS tickets_resolved, "
                "(SELECT COUNT(*) FROM gaps) AS gaps, "
                "(SELECT COUNT(*) FROM feedback) AS feedback, "
                "(SELECT COUNT(*) FROM faq_candidates WHERE status = 'pending') "
                "AS candidates_pending"
            ).fetchone()
        return {key: int(row[key]) for key in row.keys()}  # noqa: SIM118

    def close(self) -> None:
        """Close the connection; further calls raise StoreError. Closing twice is fine."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
