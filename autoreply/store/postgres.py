"""PostgresStore: the Store protocol on PostgreSQL, for several service replicas sharing one
database.

psycopg 3 with a connection pool (psycopg_pool), imported only when a PostgresStore is made
(``pip install 'autoreply[postgres]'``). Each public method is one READ COMMITTED
transaction on a pooled autocommit connection. The rules that SQLite gets from
``BEGIN IMMEDIATE`` (one writer at a time) come here from row locks, so they hold across
processes and hosts:

- a ticket is read ``FOR UPDATE`` before it is claimed, replied to, transferred or resolved,
  and claimed with ``UPDATE ... WHERE status = 'open'``: of two agents claiming at once one
  wins, the other waits for the winner's commit, then gets ConflictError;
- a customer message goes in with ``ON CONFLICT (channel, external_id) DO NOTHING``: the
  same channel message sent to two replicas is stored once, the second gets ConflictError;
- opening a ticket takes an advisory lock on the conversation, so two escalations of one
  conversation join one ticket instead of racing for the one-unresolved-ticket index.

All SQL of this backend lives here (queries) and in pg_migrations.py (schema). Text is
compared and sorted byte-wise (``COLLATE "C"``), as SQLite does, whatever the database's
locale. PostgreSQL text cannot hold NUL (U+0000): it is stored as U+FFFD.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

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

if TYPE_CHECKING:
    from psycopg import Connection
    from psycopg.abc import Buffer
    from psycopg_pool import ConnectionPool

__all__ = ["PostgresStore"]

Row = dict[str, Any]

_RANK = {Priority.LOW: 0, Priority.NORMAL: 1, Priority.HIGH: 2, Priority.URGENT: 3}
_URGENT_FIRST = (
    "CASE priority WHEN 'urgent' THEN 0 WHEN 'high' THEN 1 WHEN 'normal' THEN 2 ELSE 3 END"
)
_TICKET_LOCK = 0x7469636B  # "tick": advisory lock namespace for one conversation's tickets
_AGENT_NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")
_AGENT_COLUMNS = "id, name, role, created_at, expires_at, disabled"
_INSTALL = "PostgreSQL storage needs psycopg: pip install 'autoreply[postgres]'"


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime) -> datetime:
    # Naive datetimes are taken to be UTC already (what datetime.utcnow() gives).
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _fields(row: Row) -> dict[str, Any]:
    return {
        key: value.astimezone(UTC) if isinstance(value, datetime) else value
        for key, value in row.items()
    }


def _message(row: Row) -> StoredMessage:
    data = _fields(row)
    data["details"] = json.loads(data["details"]) if data.get("details") else None
    return StoredMessage.model_validate(data)


def _ticket(row: Row) -> Ticket:
    data = _fields(row)
    data["context"] = json.loads(data["context"] or "{}")
    return Ticket.model_validate(data)


def _topic(row: Row) -> GapTopic:
    data = _fields(row)
    data["keywords"] = json.loads(data["keywords"] or "[]")
    data["centroid"] = bytes(data["centroid"])
    return GapTopic.model_validate(data)


def _assignment(row: Row) -> GapAssignment:
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
        clauses.append(f"{column} >= %s")
        params.append(_aware(since))
    if until is not None:
        clauses.append(f"{column} < %s")
        params.append(_aware(until))
    return clauses, params


def _json(value: dict[str, Any]) -> str:
    # The context is a handoff payload read by people: render odd values as text rather
    # than lose the handoff.
    return json.dumps(value, ensure_ascii=False, default=str)


def _opt(enum: type[Action] | type[Reason], value: str | None) -> str | None:
    return None if value is None else enum(value).value


def _oneline(exc: Exception) -> str:
    """libpq messages span lines (with hints after tabs): one line for logs and the CLI."""
    return " ".join(str(exc).split())


def _load_psycopg() -> tuple[Any, Any]:
    """The psycopg and psycopg_pool modules, or StoreError saying how to install them."""
    try:
        import psycopg
        import psycopg_pool
    except ImportError as exc:
        raise StoreError(_INSTALL) from exc
    return psycopg, psycopg_pool


def describe_url(url: str) -> str:
    """The URL as shown in messages and logs: ``postgresql://user@host:port/dbname``, never
    the password."""
    psycopg, _ = _load_psycopg()
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise StoreError(
            f"cannot read the PostgreSQL URL ({exc}); write it as "
            "postgresql://USER:PASSWORD@HOST:PORT/DBNAME"
        ) from None
    user = f"{info['user']}@" if info.get("user") else ""
    port = f":{info['port']}" if info.get("port") else ""
    return f"postgresql://{user}{info.get('host') or 'localhost'}{port}/{info.get('dbname', '')}"


class PostgresStore:
    """The Store protocol on PostgreSQL. ``url`` is a libpq URL (``postgresql://`` or
    ``postgres://``); the schema is migrated on open (concurrency-safe). ``now`` supplies the
    current time (tests pass a fake clock); ``min_size``/``max_size`` size the pool and
    ``timeout`` is how long to wait for the server or for a free pooled connection."""

    def __init__(
        self,
        url: str,
        *,
        now: Callable[[], datetime] | None = None,
        min_size: int = 1,
        max_size: int = 10,
        timeout: float = 10.0,
    ) -> None:
        psycopg, psycopg_pool = _load_psycopg()
        self._psycopg = psycopg
        self._pool_errors = (psycopg_pool.PoolTimeout, psycopg_pool.PoolClosed)
        self.url = url
        self._where = describe_url(url)
        self._now = now or _utcnow
        self._timeout = timeout
        self._closed = False
        self._close_lock = threading.Lock()
        self._atomic = threading.local()  # .conn: this thread's atomic() transaction
        self._migrate()
        self._pool: ConnectionPool[Connection[Row]] = psycopg_pool.ConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            kwargs={"autocommit": True, "row_factory": psycopg.rows.dict_row},
            configure=self._configure,
            check=psycopg_pool.ConnectionPool.check_connection,
            timeout=timeout,
            name="autoreply",
            open=False,
        )
        try:
            self._pool.open(wait=True, timeout=timeout)
        except psycopg.Error as exc:
            self._pool.close()
            raise self._unreachable(exc) from exc

    # -- connections and transactions ----------------------------------------------------
    def _unreachable(self, exc: Exception) -> StoreError:
        return StoreError(
            f"{self._where}: cannot connect to PostgreSQL ({_oneline(exc)}); check that the "
            "server is running and the URL's host, port, database, user and password"
        )

    def _migrate(self) -> None:
        from autoreply.store.pg_migrations import migrate

        psycopg = self._psycopg
        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=self._timeout)
        except psycopg.Error as exc:
            raise self._unreachable(exc) from exc
        try:
            self._configure(conn)
            migrate(conn, where=self._where)
        except psycopg.Error as exc:
            raise self._wrap(exc) from exc
        finally:
            conn.close()

    @staticmethod
    def _configure(conn: Connection[Any]) -> None:
        """Every new connection: UTC session times, NUL-free text."""
        from psycopg.types.string import StrBinaryDumper, StrDumperUnknown

        class NulFreeText(StrDumperUnknown):
            def dump(self, obj: str) -> Buffer | None:
                return super().dump(obj.replace("\x00", "\ufffd"))

        class NulFreeBinary(StrBinaryDumper):
            def dump(self, obj: str) -> Buffer | None:
                return super().dump(obj.replace("\x00", "\ufffd"))

        conn.adapters.register_dumper(str, NulFreeText)
        conn.adapters.register_dumper(str, NulFreeBinary)
        conn.execute("SET TIME ZONE 'UTC'")

    def _wrap(self, exc: Exception) -> StoreError:
        errors = self._psycopg.errors
        if self._closed or isinstance(exc, self._pool_errors[1]):
            return StoreError(f"{self._where}: the store is closed; open it again")
        if isinstance(exc, self._pool_errors[0]):
            return StoreError(
                f"{self._where}: no free database connection within {self._timeout:g}s "
                f"({exc}); raise the pool's max_size or PostgreSQL's max_connections"
            )
        if isinstance(exc, self._psycopg.IntegrityError):
            return ConflictError(f"{self._where}: the change conflicts with stored data: {exc}")
        if isinstance(exc, errors.SerializationFailure | errors.DeadlockDetected):
            return ConflictError(f"{self._where}: a concurrent change got in the way; try again")
        if isinstance(exc, self._psycopg.OperationalError):
            return StoreError(
                f"{self._where}: the database is unavailable ({_oneline(exc)}); check that "
                "PostgreSQL is running and reachable"
            )
        return StoreError(f"{self._where}: database error: {_oneline(exc)}")

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """One transaction for every call inside, in this thread (see ``Store.atomic``)."""
        if getattr(self._atomic, "conn", None) is not None:
            yield
            return
        with self._tx() as conn:
            self._atomic.conn = conn
            try:
                yield
            finally:
                self._atomic.conn = None

    @contextmanager
    def _tx(self) -> Iterator[Connection[Row]]:
        """One transaction on a pooled connection; psycopg errors come out as StoreError.
        Inside ``atomic()`` it is a savepoint in the transaction already open."""
        if self._closed:
            raise StoreError(f"{self._where}: the store is closed; open it again")
        outer: Connection[Row] | None = getattr(self._atomic, "conn", None)
        try:
            if outer is not None:
                with outer.transaction():
                    yield outer
                return
            with self._pool.connection() as conn, conn.transaction():
                yield conn
        except self._psycopg.Error as exc:
            raise self._wrap(exc) from exc

    def _stamp(self) -> datetime:
        return _aware(self._now())

    # -- row helpers (inside a transaction) ----------------------------------------------
    @staticmethod
    def _one_message(conn: Connection[Row], message_id: int) -> StoredMessage:
        row = conn.execute("SELECT * FROM messages WHERE id = %s", (message_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no message {message_id}")
        return _message(row)

    @staticmethod
    def _one_ticket(conn: Connection[Row], ticket_id: int, *, lock: bool = False) -> Ticket:
        sql = "SELECT * FROM tickets WHERE id = %s" + (" FOR UPDATE" if lock else "")
        row = conn.execute(sql, (ticket_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no ticket {ticket_id}")
        return _ticket(row)

    def _claim(self, conn: Connection[Row], ticket_id: int, agent: str) -> Ticket:
        row = conn.execute(
            "UPDATE tickets SET status = 'claimed', owner = %s, claimed_at = %s "
            "WHERE id = %s AND status = 'open' RETURNING *",
            (agent, self._stamp(), ticket_id),
        ).fetchone()
        if row is None:  # the row is locked FOR UPDATE first; kept as a guard
            raise ConflictError(f"ticket {ticket_id} was claimed meanwhile; reload it")
        return _ticket(row)

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
        (channel, external_id) is unique across every replica: adding it twice raises
        ConflictError."""

        def conflict(conn: Connection[Row]) -> ConflictError | None:
            row = conn.execute(
                "SELECT id FROM messages WHERE channel = %s AND external_id = %s",
                (channel, external_id),
            ).fetchone()
            if row is None:
                return None
            return ConflictError(
                f"message '{external_id}' on channel '{channel}' is already stored as "
                f"message {row['id']}; look it up with find_message() instead"
            )

        with self._tx() as conn:
            if external_id is not None and (found := conflict(conn)) is not None:
                raise found
            if ticket_id is not None:
                self._one_ticket(conn, ticket_id)
            if reply_to is not None:
                self._one_message(conn, reply_to)
            row = conn.execute(
                "INSERT INTO messages (conversation_id, user_id, channel, role, text, "
                "created_at, external_id, action, reason, entry_id, confidence, agent, "
                "ticket_id, reply_to, details) VALUES "
                "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (channel, external_id) DO NOTHING RETURNING *",
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
            ).fetchone()
            if row is None:  # another replica stored it between our check and our insert
                raise conflict(conn) or ConflictError(
                    f"message '{external_id}' on channel '{channel}' is already stored; "
                    "look it up with find_message() instead"
                )
        return _message(row)

    def find_message(self, *, channel: str, external_id: str) -> StoredMessage | None:
        """The customer message with this channel id, or None."""
        with self._tx() as conn:
            row = conn.execute(
                "SELECT * FROM messages WHERE channel = %s AND external_id = %s "
                "AND role = 'customer'",
                (channel, external_id),
            ).fetchone()
        return None if row is None else _message(row)

    def reply_to(self, message_id: int) -> StoredMessage | None:
        """The bot message stored as the reply to customer message ``message_id``."""
        with self._tx() as conn:
            row = conn.execute(
                "SELECT * FROM messages WHERE reply_to = %s AND role = 'bot' ORDER BY id LIMIT 1",
                (message_id,),
            ).fetchone()
        return None if row is None else _message(row)

    def get_message(self, message_id: int) -> StoredMessage:
        """One message by id; NotFoundError if there is none."""
        with self._tx() as conn:
            return self._one_message(conn, message_id)

    def history(self, conversation_id: str, *, limit: int | None = None) -> list[StoredMessage]:
        """The conversation's messages, oldest first; with ``limit``, the newest ``limit``."""
        with self._tx() as conn:
            if limit is None:
                rows = conn.execute(
                    "SELECT * FROM messages WHERE conversation_id = %s ORDER BY id",
                    (conversation_id,),
                ).fetchall()
            else:
                rows = conn.execute(
                    "SELECT * FROM (SELECT * FROM messages WHERE conversation_id = %s "
                    "ORDER BY id DESC LIMIT %s) AS recent ORDER BY id",
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
        with self._tx() as conn:
            # Escalations of one conversation queue up here, on every replica.
            conn.execute(
                "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_TICKET_LOCK, conversation_id)
            )
            row = conn.execute(
                "SELECT * FROM tickets WHERE conversation_id = %s AND status <> 'resolved' "
                "ORDER BY id DESC LIMIT 1 FOR UPDATE",
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
                row = conn.execute(
                    "UPDATE tickets SET priority = %s, context = %s, vip = %s, "
                    "category = COALESCE(category, %s), "
                    "suggested_owner = COALESCE(suggested_owner, %s) WHERE id = %s RETURNING *",
                    (
                        higher.value,
                        _json(merged),
                        ticket.vip or vip,
                        category,
                        suggested_owner,
                        ticket.id,
                    ),
                ).fetchone()
                assert row is not None
                return _ticket(row), False
            now = self._stamp()
            sticky = vip and suggested_owner is not None
            row = conn.execute(
                "INSERT INTO tickets (conversation_id, user_id, channel, status, priority, "
                "reason, category, vip, owner, suggested_owner, context, created_at, "
                "claimed_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "RETURNING *",
                (
                    conversation_id,
                    user_id,
                    channel,
                    (TicketStatus.CLAIMED if sticky else TicketStatus.OPEN).value,
                    priority.value,
                    Reason(reason).value,
                    category,
                    vip,
                    suggested_owner if sticky else None,
                    suggested_owner,
                    _json(context or {}),
                    now,
                    now if sticky else None,
                ),
            ).fetchone()
            assert row is not None
            return _ticket(row), True

    def get_ticket(self, ticket_id: int) -> Ticket:
        """NotFoundError if there is none."""
        with self._tx() as conn:
            return self._one_ticket(conn, ticket_id)

    def active_ticket(self, conversation_id: str) -> Ticket | None:
        """The conversation's unresolved ticket, if any."""
        with self._tx() as conn:
            row = conn.execute(
                "SELECT * FROM tickets WHERE conversation_id = %s AND status <> 'resolved' "
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
            clauses.append("status = %s")
            params.append(TicketStatus(status).value)
        if owner is not None:
            clauses.append("owner = %s")
            params.append(owner)
        if priority is not None:
            clauses.append("priority = %s")
            params.append(Priority(priority).value)
        if category is not None:
            path = category.rstrip("/")
            clauses.append("(category = %s OR starts_with(category, %s))")
            params.extend([path, path + "/"])
        if user_id is not None:
            clauses.append("user_id = %s")
            params.append(user_id)
        where = " AND ".join(clauses) or "TRUE"
        params.append(max(limit, 0))
        sql = (
            f"SELECT * FROM tickets WHERE {where} ORDER BY {_URGENT_FIRST}, created_at, id LIMIT %s"
        )
        with self._tx() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [_ticket(row) for row in rows]

    def claim_ticket(self, ticket_id: int, agent: str) -> Ticket:
        """The agent takes ownership. ConflictError if another agent owns it or it is
        resolved; claiming your own ticket is a no-op. Race-free across replicas: the row
        is locked, so a second claimer waits for the first to commit and then conflicts."""
        with self._tx() as conn:
            ticket = self._one_ticket(conn, ticket_id, lock=True)
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
            return self._claim(conn, ticket_id, agent)

    def transfer_ticket(self, ticket_id: int, *, agent: str, to_agent: str) -> Ticket:
        """The owner hands the ticket to another agent (OwnershipError if not the owner).
        ``claimed_at`` keeps the time of the first claim."""
        with self._tx() as conn:
            ticket = self._one_ticket(conn, ticket_id, lock=True)
            self._require_owner(ticket, agent, doing="transferring")
            if to_agent != agent:
                conn.execute("UPDATE tickets SET owner = %s WHERE id = %s", (to_agent, ticket_id))
            return self._one_ticket(conn, ticket_id)

    def agent_reply(self, ticket_id: int, *, agent: str, text: str) -> StoredMessage:
        """The owner's reply to the customer, stored in the conversation (role agent).
        An open ticket is claimed by the replying agent first. Sets first_reply_at once."""
        with self._tx() as conn:
            ticket = self._one_ticket(conn, ticket_id, lock=True)
            if ticket.status == TicketStatus.OPEN:
                ticket = self._claim(conn, ticket_id, agent)
            self._require_owner(ticket, agent, doing="replying to")
            now = self._stamp()
            row = conn.execute(
                "INSERT INTO messages (conversation_id, user_id, channel, role, text, "
                "created_at, agent, ticket_id) VALUES (%s, %s, %s, 'agent', %s, %s, %s, %s) "
                "RETURNING *",
                (
                    ticket.conversation_id,
                    ticket.user_id,
                    ticket.channel,
                    text,
                    now,
                    agent,
                    ticket_id,
                ),
            ).fetchone()
            conn.execute(
                "UPDATE tickets SET first_reply_at = %s WHERE id = %s AND first_reply_at IS NULL",
                (now, ticket_id),
            )
        assert row is not None
        return _message(row)

    def resolve_ticket(
        self, ticket_id: int, *, agent: str, resolution: str | None = None
    ) -> Ticket:
        """The owner closes the ticket. ``resolution`` defaults to the agent's last reply
        on this ticket (None if there is none)."""
        with self._tx() as conn:
            ticket = self._one_ticket(conn, ticket_id, lock=True)
            self._require_owner(ticket, agent, doing="resolving")
            if resolution is None:
                found = conn.execute(
                    "SELECT text FROM messages WHERE ticket_id = %s AND role = 'agent' "
                    "AND agent = %s ORDER BY id DESC LIMIT 1",
                    (ticket_id, agent),
                ).fetchone()
                resolution = None if found is None else found["text"]
            row = conn.execute(
                "UPDATE tickets SET status = 'resolved', resolved_at = %s, resolution = %s "
                "WHERE id = %s RETURNING *",
                (self._stamp(), resolution, ticket_id),
            ).fetchone()
        assert row is not None
        return _ticket(row)

    def last_agent_for_user(self, user_id: str) -> str | None:
        """The owner of this user's most recently claimed ticket (for VIP stickiness)."""
        with self._tx() as conn:
            row = conn.execute(
                "SELECT owner FROM tickets WHERE user_id = %s AND owner IS NOT NULL "
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
        with self._tx() as conn:
            row = conn.execute(
                "INSERT INTO gaps (question, normalized, reason, best_entry_id, best_score, "
                "category, channel, conversation_id, user_id, created_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING *",
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
            ).fetchone()
        assert row is not None
        return Gap.model_validate(_fields(row))

    def list_gaps(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = 100,
    ) -> list[Gap]:
        """Gaps, newest first, created in ``[since, until)``; ``limit=None`` for all."""
        clauses, params = _window(since, until)
        where = " AND ".join(clauses) or "TRUE"
        sql = f"SELECT * FROM gaps WHERE {where} ORDER BY created_at DESC, id DESC"
        if limit is not None:
            sql += " LIMIT %s"
            params.append(max(limit, 0))
        with self._tx() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [Gap.model_validate(_fields(row)) for row in rows]

    def add_feedback(
        self, message_id: int, *, helpful: bool, comment: str | None = None
    ) -> Feedback:
        """Feedback on a bot message (NotFoundError if the message is not a bot message)."""
        with self._tx() as conn:
            found = conn.execute(
                "SELECT role FROM messages WHERE id = %s", (message_id,)
            ).fetchone()
            if found is None or found["role"] != Role.BOT.value:
                what = "no message" if found is None else f"a {found['role']} message"
                raise NotFoundError(
                    f"no bot message {message_id} ({what}); feedback goes on the bot's "
                    "replies (Reply.message_id)"
                )
            row = conn.execute(
                "INSERT INTO feedback (message_id, helpful, comment, created_at) "
                "VALUES (%s, %s, %s, %s) RETURNING *",
                (message_id, bool(helpful), comment, self._stamp()),
            ).fetchone()
        assert row is not None
        return Feedback.model_validate(_fields(row))

    def list_feedback(self, *, entry_id: str | None = None) -> list[Feedback]:
        """Feedback, newest first; with ``entry_id``, only on answers from that entry."""
        with self._tx() as conn:
            if entry_id is None:
                rows = conn.execute(
                    "SELECT * FROM feedback ORDER BY created_at DESC, id DESC"
                ).fetchall()
            else:
                rows = conn.execute(
                    "SELECT f.* FROM feedback AS f JOIN messages AS m ON m.id = f.message_id "
                    "WHERE m.entry_id = %s ORDER BY f.created_at DESC, f.id DESC",
                    (entry_id,),
                ).fetchall()
        return [Feedback.model_validate(_fields(row)) for row in rows]

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
        with self._tx() as conn:
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
                found = conn.execute(
                    "SELECT text FROM messages WHERE conversation_id = %s "
                    "AND role = 'customer' AND created_at <= %s ORDER BY created_at, id LIMIT 1",
                    (ticket.conversation_id, ticket.created_at),
                ).fetchone()
                question = found["text"] if found is not None else ticket.context.get("question")
            answer = ticket.resolution if answer is None else answer
            if not question or not str(question).strip():
                raise ConflictError(
                    f"ticket {ticket_id} has no customer question to promote; pass question="
                )
            if not answer or not answer.strip():
                raise ConflictError(
                    f"ticket {ticket_id} has no resolution to promote; pass answer="
                )
            row = conn.execute(
                "INSERT INTO faq_candidates (ticket_id, question, answer, category, agent, "
                "status, created_at) VALUES (%s, %s, %s, %s, %s, 'pending', %s) RETURNING *",
                (
                    ticket_id,
                    str(question),
                    answer,
                    category or ticket.category or "general",
                    agent,
                    self._stamp(),
                ),
            ).fetchone()
        assert row is not None
        return FAQCandidate.model_validate(_fields(row))

    def list_candidates(self, *, status: CandidateStatus | None = None) -> list[FAQCandidate]:
        """FAQ candidates, oldest first (a review queue); optionally of one status."""
        with self._tx() as conn:
            if status is None:
                rows = conn.execute(
                    "SELECT * FROM faq_candidates ORDER BY created_at, id"
                ).fetchall()
            else:
                rows = conn.execute(
                    "SELECT * FROM faq_candidates WHERE status = %s ORDER BY created_at, id",
                    (CandidateStatus(status).value,),
                ).fetchall()
        return [FAQCandidate.model_validate(_fields(row)) for row in rows]

    def set_candidate_status(self, candidate_id: int, status: CandidateStatus) -> FAQCandidate:
        """Accept or dismiss a candidate (or put it back to pending)."""
        with self._tx() as conn:
            row = conn.execute(
                "UPDATE faq_candidates SET status = %s WHERE id = %s RETURNING *",
                (CandidateStatus(status).value, candidate_id),
            ).fetchone()
            if row is None:
                raise NotFoundError(f"no FAQ candidate {candidate_id}")
        return FAQCandidate.model_validate(_fields(row))

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
        with self._tx() as conn:
            row = conn.execute(
                "INSERT INTO agents (name, role, token_hash, created_at, expires_at, disabled) "
                "VALUES (%s, %s, %s, %s, %s, FALSE) ON CONFLICT (name) DO NOTHING "
                f"RETURNING {_AGENT_COLUMNS}",
                (
                    name,
                    AgentRole(role).value,
                    hash_token(token),
                    self._stamp(),
                    None if expires_at is None else _aware(expires_at),
                ),
            ).fetchone()
            if row is None:
                raise ConflictError(
                    f"agent '{name}' already exists; issue a new token for it instead "
                    "(autoreply agents token NAME)"
                )
        return Agent.model_validate(_fields(row))

    def set_agent_token(
        self, name: str, *, token: str, expires_at: datetime | None = None
    ) -> Agent:
        """Replace an agent's token (the old one stops working) and its expiry, and enable
        it again. NotFoundError if there is no such agent."""
        with self._tx() as conn:
            row = conn.execute(
                "UPDATE agents SET token_hash = %s, expires_at = %s, disabled = FALSE "
                f"WHERE name = %s RETURNING {_AGENT_COLUMNS}",
                (hash_token(token), None if expires_at is None else _aware(expires_at), name),
            ).fetchone()
            if row is None:
                raise self._no_agent(conn, name)
        return Agent.model_validate(_fields(row))

    def agent_for_token(self, token: str) -> Agent | None:
        """The agent holding this token, also when disabled or expired (the caller decides
        and says why), or None for an unknown token."""
        with self._tx() as conn:
            row = conn.execute(
                f"SELECT {_AGENT_COLUMNS} FROM agents WHERE token_hash = %s",
                (hash_token(token),),
            ).fetchone()
        return None if row is None else Agent.model_validate(_fields(row))

    def get_agent(self, name: str) -> Agent:
        """NotFoundError (listing the known names) if there is none."""
        with self._tx() as conn:
            row = conn.execute(
                f"SELECT {_AGENT_COLUMNS} FROM agents WHERE name = %s", (name,)
            ).fetchone()
            if row is None:
                raise self._no_agent(conn, name)
        return Agent.model_validate(_fields(row))

    def list_agents(self) -> list[Agent]:
        """Every agent, by name."""
        with self._tx() as conn:
            rows = conn.execute(
                f'SELECT {_AGENT_COLUMNS} FROM agents ORDER BY name COLLATE "C"'
            ).fetchall()
        return [Agent.model_validate(_fields(row)) for row in rows]

    def disable_agent(self, name: str) -> Agent:
        """The agent's token stops working; its tickets stay as they are."""
        with self._tx() as conn:
            row = conn.execute(
                f"UPDATE agents SET disabled = TRUE WHERE name = %s RETURNING {_AGENT_COLUMNS}",
                (name,),
            ).fetchone()
            if row is None:
                raise self._no_agent(conn, name)
        return Agent.model_validate(_fields(row))

    @staticmethod
    def _no_agent(conn: Connection[Row], name: str) -> NotFoundError:
        rows = conn.execute('SELECT name FROM agents ORDER BY name COLLATE "C" LIMIT 20')
        known = ", ".join(str(r["name"]) for r in rows) or "none yet (autoreply agents add NAME)"
        return NotFoundError(f"no agent {name!r}; known: {known}")

    # -- quality inspection and deliveries ----------------------------------------------
    def add_interception(
        self, *, agent: str, phrase: str, ticket_id: int | None = None
    ) -> Interception:
        """Record that ``agent``'s reply on ``ticket_id`` was blocked for ``phrase``."""
        with self._tx() as conn:
            if ticket_id is not None:
                self._one_ticket(conn, ticket_id)
            row = conn.execute(
                "INSERT INTO interceptions (agent, ticket_id, phrase, created_at) "
                "VALUES (%s, %s, %s, %s) RETURNING *",
                (agent, ticket_id, phrase, self._stamp()),
            ).fetchone()
        assert row is not None
        return Interception.model_validate(_fields(row))

    def list_interceptions(
        self, *, agent: str | None = None, since: datetime | None = None, limit: int = 100
    ) -> list[Interception]:
        """Interceptions, newest first."""
        clauses, params = _window(since, None)
        if agent is not None:
            clauses.append("agent = %s")
            params.append(agent)
        where = " AND ".join(clauses) or "TRUE"
        params.append(max(limit, 0))
        with self._tx() as conn:
            rows = conn.execute(
                f"SELECT * FROM interceptions WHERE {where} "
                "ORDER BY created_at DESC, id DESC LIMIT %s",
                params,
            ).fetchall()
        return [Interception.model_validate(_fields(row)) for row in rows]

    def count_interceptions(
        self, *, by: Literal["agent", "phrase"], since: datetime | None = None
    ) -> dict[str, int]:
        """Number of interceptions per agent or per phrase, largest first."""
        if by not in ("agent", "phrase"):
            raise StoreError(f"cannot count interceptions by {by!r}; use 'agent' or 'phrase'")
        clauses, params = _window(since, None)
        where = " AND ".join(clauses) or "TRUE"
        with self._tx() as conn:
            rows = conn.execute(
                f"SELECT {by} AS key, COUNT(*) AS n FROM interceptions WHERE {where} "
                f'GROUP BY {by} ORDER BY n DESC, {by} COLLATE "C"',
                params,
            ).fetchall()
        return {str(row["key"]): int(row["n"]) for row in rows}

    def add_delivery(
        self, *, message_id: int, channel: str, status: DeliveryStatus, error: str | None = None
    ) -> Delivery:
        """Record how the agent message ``message_id`` went out (NotFoundError if no such
        message)."""
        with self._tx() as conn:
            self._one_message(conn, message_id)
            row = conn.execute(
                "INSERT INTO deliveries (message_id, channel, status, error, created_at) "
                "VALUES (%s, %s, %s, %s, %s) RETURNING *",
                (message_id, channel, DeliveryStatus(status).value, error, self._stamp()),
            ).fetchone()
        assert row is not None
        return Delivery.model_validate(_fields(row))

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
            clauses.append("d.status = %s")
            params.append(DeliveryStatus(status).value)
        if ticket_id is not None:
            clauses.append("m.ticket_id = %s")
            params.append(ticket_id)
        where = " AND ".join(clauses) or "TRUE"
        params.append(max(limit, 0))
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT d.* FROM deliveries AS d JOIN messages AS m ON m.id = d.message_id "
                f"WHERE {where} ORDER BY d.created_at DESC, d.id DESC LIMIT %s",
                params,
            ).fetchall()
        return [Delivery.model_validate(_fields(row)) for row in rows]

    def decision_counts(self, *, since: datetime | None = None) -> dict[str, int]:
        """Bot replies per action (answer, clarify, escalate), every action present."""
        clauses, params = _window(since, None)
        where = " AND ".join(["role = 'bot'", "action IS NOT NULL", *clauses])
        with self._tx() as conn:
            rows = conn.execute(
                f"SELECT action, COUNT(*) AS n FROM messages WHERE {where} GROUP BY action",
                params,
            ).fetchall()
        counts = dict.fromkeys((a.value for a in Action), 0)
        counts.update({str(row["action"]): int(row["n"]) for row in rows})
        return counts

    # -- gap topics ----------------------------------------------------------------------
    def unclustered_gaps(self, *, limit: int | None = None) -> list[Gap]:
        """Gaps with no stored vector yet (never clustered), oldest first."""
        sql = (
            "SELECT g.* FROM gaps AS g LEFT JOIN gap_assignments AS a ON a.gap_id = g.id "
            "WHERE a.gap_id IS NULL ORDER BY g.id"
        )
        params: list[Any] = []
        if limit is not None:
            sql += " LIMIT %s"
            params.append(max(limit, 0))
        with self._tx() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [Gap.model_validate(_fields(row)) for row in rows]

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
            clauses.append("topic_id = ANY(%s)")
            params.append([int(t) for t in topic_ids])
        if waiting:
            clauses.append("topic_id IS NULL")
        where = " AND ".join(clauses) or "TRUE"
        sql = f"SELECT * FROM gap_assignments WHERE {where} ORDER BY gap_id DESC"
        if limit is not None:
            sql += " LIMIT %s"
            params.append(max(limit, 0))
        with self._tx() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [_assignment(row) for row in rows]

    def save_gap_topics(self, topics: list[GapTopic], assignments: list[GapAssignment]) -> None:
        """Insert or update topics and assignments in one transaction. A stored topic keeps
        its review status whatever ``topics`` says (use set_gap_topic_status)."""
        with self._tx() as conn, conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO gap_topics (id, kind, status, encoder, centroid, size, "
                "representative, keywords, category, entry_id, first_seen, last_seen, "
                "updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
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
                        _aware(t.first_seen),
                        _aware(t.last_seen),
                        _aware(t.updated_at),
                    )
                    for t in topics
                ],
            )
            cur.executemany(
                "INSERT INTO gap_assignments (gap_id, topic_id, similarity, encoder, vector) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (gap_id) DO UPDATE SET "
                "topic_id = excluded.topic_id, similarity = excluded.similarity, "
                "encoder = excluded.encoder, vector = excluded.vector",
                [(a.gap_id, a.topic_id, a.similarity, a.encoder, a.vector) for a in assignments],
            )

    def gap_topics(self, *, status: TopicStatus | None = None) -> list[GapTopic]:
        """Topics, largest first (then by id)."""
        where, params = ("status = %s", [TopicStatus(status).value]) if status else ("TRUE", [])
        with self._tx() as conn:
            rows = conn.execute(
                f"SELECT * FROM gap_topics WHERE {where} ORDER BY size DESC, id", params
            ).fetchall()
        return [_topic(row) for row in rows]

    def get_gap_topic(self, topic_id: int) -> GapTopic:
        """NotFoundError (listing some known ids) if there is none."""
        with self._tx() as conn:
            return self._one_topic(conn, topic_id)

    @staticmethod
    def _one_topic(conn: Connection[Row], topic_id: int) -> GapTopic:
        row = conn.execute("SELECT * FROM gap_topics WHERE id = %s", (topic_id,)).fetchone()
        if row is None:
            known = [
                str(r["id"])
                for r in conn.execute("SELECT id FROM gap_topics ORDER BY size DESC, id LIMIT 20")
            ]
            hint = f"known: {', '.join(known)}" if known else "there are no topics yet"
            raise NotFoundError(
                f"no gap topic {topic_id} ({hint}); list them with: autoreply gaps topics"
            )
        return _topic(row)

    def set_gap_topic_status(self, topic_id: int, status: TopicStatus) -> GapTopic:
        """Mark a topic accepted, dismissed or open again."""
        with self._tx() as conn:
            self._one_topic(conn, topic_id)
            conn.execute(
                "UPDATE gap_topics SET status = %s, updated_at = %s WHERE id = %s",
                (TopicStatus(status).value, self._stamp(), topic_id),
            )
            return self._one_topic(conn, topic_id)

    def delete_gap_topics(self, topic_ids: list[int]) -> None:
        """Delete topics; their gaps stay, waiting (topic None)."""
        if not topic_ids:
            return
        ids = [int(t) for t in topic_ids]
        with self._tx() as conn:
            conn.execute(
                "UPDATE gap_assignments SET topic_id = NULL, similarity = NULL "
                "WHERE topic_id = ANY(%s)",
                (ids,),
            )
            conn.execute("DELETE FROM gap_topics WHERE id = ANY(%s)", (ids,))

    def clear_gap_topics(self) -> None:
        """Forget every topic and every stored gap vector (a rebuild starts from scratch)."""
        with self._tx() as conn:
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
            clauses.append("a.topic_id = %s")
            params.append(int(topic_id))
        where = " AND ".join(clauses) or "TRUE"
        sql = (
            "SELECT g.*, a.topic_id AS topic_id FROM gaps AS g "
            "LEFT JOIN gap_assignments AS a ON a.gap_id = g.id "
            f"WHERE {where} ORDER BY g.created_at DESC, g.id DESC"
        )
        if limit is not None:
            sql += " LIMIT %s"
            params.append(max(limit, 0))
        with self._tx() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [TopicGap.model_validate(_fields(row)) for row in rows]

    # -- weekly report -------------------------------------------------------------------
    def reply_counts(self, *, since: datetime, until: datetime) -> list[ReplyCount]:
        """Bot replies created in ``[since, until)`` counted by action, reason and entry."""
        clauses, params = _window(since, until)
        where = " AND ".join(["role = 'bot'", "action IS NOT NULL", *clauses])
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT action, reason, entry_id, COUNT(*) AS count FROM messages "
                f"WHERE {where} GROUP BY action, reason, entry_id "
                'ORDER BY count DESC, action COLLATE "C", reason COLLATE "C" NULLS FIRST, '
                'entry_id COLLATE "C" NULLS FIRST',
                params,
            ).fetchall()
        return [ReplyCount.model_validate(_fields(row)) for row in rows]

    def feedback_counts(self, *, since: datetime, until: datetime) -> list[FeedbackCount]:
        """Feedback given in ``[since, until)``, per entry of the answer it was given on,
        most not-helpful first."""
        clauses, params = _window(since, until, "f.created_at")
        where = " AND ".join(clauses) or "TRUE"
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT m.entry_id AS entry_id, COUNT(*) FILTER (WHERE f.helpful) AS helpful, "
                "COUNT(*) FILTER (WHERE NOT f.helpful) AS not_helpful FROM feedback AS f "
                f"JOIN messages AS m ON m.id = f.message_id WHERE {where} "
                "GROUP BY m.entry_id "
                'ORDER BY not_helpful DESC, helpful, m.entry_id COLLATE "C" NULLS FIRST',
                params,
            ).fetchall()
        return [FeedbackCount.model_validate(_fields(row)) for row in rows]

    def tickets_between(self, *, since: datetime, until: datetime) -> list[Ticket]:
        """Tickets opened or resolved in ``[since, until)``, by id."""
        opened, params = _window(since, until)
        resolved, more = _window(since, until, "resolved_at")
        with self._tx() as conn:
            rows = conn.execute(
                f"SELECT * FROM tickets WHERE ({' AND '.join(opened)}) "
                f"OR ({' AND '.join(resolved)}) ORDER BY id",
                params + more,
            ).fetchall()
        return [_ticket(row) for row in rows]

    def tickets_for_conversations(self, conversation_ids: list[str]) -> list[Ticket]:
        """Every ticket of these conversations, by id."""
        ids = list(dict.fromkeys(conversation_ids))
        if not ids:
            return []
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT * FROM tickets WHERE conversation_id = ANY(%s) ORDER BY id", (ids,)
            ).fetchall()
        return [_ticket(row) for row in rows]

    # -- trust: conversation keys and the VIP list ---------------------------------------
    def set_conversation_key(self, conversation_id: str, token_hash: str) -> bool:
        """Give a conversation its customer token (sha256 hex) unless it has one already;
        True if this call set it (concurrent first messages: exactly one wins)."""
        with self._tx() as conn:
            cur = conn.execute(
                "INSERT INTO conversation_keys (conversation_id, token_hash, created_at) "
                "VALUES (%s, %s, %s) ON CONFLICT (conversation_id) DO NOTHING",
                (conversation_id, token_hash, self._stamp()),
            )
            return cur.rowcount == 1

    def conversation_key(self, conversation_id: str) -> str | None:
        """The sha256 hex of the conversation's customer token, or None."""
        with self._tx() as conn:
            row = conn.execute(
                "SELECT token_hash FROM conversation_keys WHERE conversation_id = %s",
                (conversation_id,),
            ).fetchone()
        return None if row is None else str(row["token_hash"])

    def add_vip(self, channel: str, user_id: str, *, added_by: str, note: str | None = None) -> Vip:
        """Put a customer on the VIP list (again: updates the note and who added it)."""
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO vips (channel, user_id, note, added_by, added_at) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (channel, user_id) DO UPDATE SET "
                "note = excluded.note, added_by = excluded.added_by, "
                "added_at = excluded.added_at",
                (channel, user_id, note, added_by, self._stamp()),
            )
            row = conn.execute(
                "SELECT * FROM vips WHERE channel = %s AND user_id = %s", (channel, user_id)
            ).fetchone()
        return Vip.model_validate(_fields(row))

    def remove_vip(self, channel: str, user_id: str) -> None:
        """Take a customer off the VIP list; NotFoundError if they are not on it."""
        with self._tx() as conn:
            cur = conn.execute(
                "DELETE FROM vips WHERE channel = %s AND user_id = %s", (channel, user_id)
            )
            if cur.rowcount == 0:
                raise NotFoundError(
                    f"'{user_id}' on channel '{channel}' is not on the VIP list; "
                    "list it with `autoreply vip list`"
                )

    def list_vips(self) -> list[Vip]:
        """The VIP list, by channel then user id."""
        with self._tx() as conn:
            rows = conn.execute("SELECT * FROM vips ORDER BY channel, user_id").fetchall()
        return [Vip.model_validate(_fields(row)) for row in rows]

    def is_vip(self, channel: str, user_id: str) -> bool:
        """Whether (channel, user_id) is on the VIP list."""
        with self._tx() as conn:
            row = conn.execute(
                "SELECT 1 FROM vips WHERE channel = %s AND user_id = %s", (channel, user_id)
            ).fetchone()
        return row is not None

    # -- knowledge version ---------------------------------------------------------------
    def knowledge_version(self) -> int:
        """How many times the knowledge base was reloaded anywhere (0 for a new store)."""
        with self._tx() as conn:
            row = conn.execute("SELECT version FROM knowledge_version WHERE id = 1").fetchone()
        return 0 if row is None else int(row["version"])

    def bump_knowledge_version(self) -> int:
        """Count one reload (one atomic UPDATE, so concurrent bumps all count) and return
        the new version."""
        with self._tx() as conn:
            row = conn.execute(
                "UPDATE knowledge_version SET version = version + 1, updated_at = %s "
                "WHERE id = 1 RETURNING version",
                (self._stamp(),),
            ).fetchone()
        assert row is not None
        return int(row["version"])

    # -- housekeeping --------------------------------------------------------------------
    def ping(self) -> None:
        """Check that the database answers (StoreError if not): the service's readiness."""
        with self._tx() as conn:
            conn.execute("SELECT 1 FROM _migrations LIMIT 1").fetchall()

    def counts(self) -> dict[str, int]:
        """Row counts: messages, tickets_open, tickets_claimed, tickets_resolved, gaps,
        feedback, candidates_pending."""
        with self._tx() as conn:
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
        assert row is not None
        return {key: int(value) for key, value in row.items()}

    def close(self) -> None:
        """Close the pool; further calls raise StoreError. Closing twice is fine."""
        with self._close_lock:
            if not self._closed:
                self._closed = True
                self._pool.close()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
