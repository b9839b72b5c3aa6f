"""What the one SQL store stands on: the Dialect a backend provides, the open transaction
(``Tx``) every query runs in, and turning rows into records.

The SQL of store/sql*.py is written once, with ``?`` markers, in the SQL that SQLite and
PostgreSQL both understand. A Dialect supplies only what differs: the connection and its
transactions (with locking and the mapping of driver errors to StoreError), the parameter
marker, how a time is stored, how an inserted row comes back (``RETURNING``), row locks, a
lock on one conversation's tickets, the schema's type names and byte-wise text order.
"""

from __future__ import annotations

import functools
import inspect
import json
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel

from autoreply.errors import NotFoundError
from autoreply.models import StoredMessage, Ticket

Row = dict[str, Any]
M = TypeVar("M", bound=BaseModel)
R = TypeVar("R")


class Dialect(ABC):
    """One database: its connection(s) and the handful of things its SQL spells its own way."""

    where: str
    """The database as named in messages (a path, or a URL without its password)."""
    marker: str = "?"
    """The driver's parameter marker; the store's SQL is written with ``?``."""
    types: Mapping[str, str]
    """The schema's type names (see store/schema.py)."""
    for_update: str = ""
    """Appended to a SELECT of a row about to change, to lock it until the commit."""

    @abstractmethod
    def transaction(self, *, write: bool) -> AbstractContextManager[Tx]:
        """One transaction (joining the ``atomic()`` one open in this thread); driver errors
        come out as StoreError (ConflictError for a broken constraint)."""

    @abstractmethod
    def atomic(self) -> AbstractContextManager[None]:
        """One write transaction for every call inside (see ``Store.atomic``)."""

    @abstractmethod
    def time(self, value: datetime) -> Any:
        """A time as the database stores it (naive times are taken to be UTC)."""

    @abstractmethod
    def insert(self, tx: Tx, table: str, sql: str, params: Sequence[Any]) -> Row | None:
        """Run an INSERT and return the row it stored (None when ``ON CONFLICT DO NOTHING``
        stored nothing)."""

    def lock_conversation(self, tx: Tx, conversation_id: str) -> None:
        """Queue up writers of one conversation's tickets until the commit (nothing to do
        where a write transaction already excludes every other writer)."""
        return None

    def lock_migrations(self, tx: Tx) -> None:
        """Queue up processes migrating the schema until the commit (likewise)."""
        return None

    def migrated(self, tx: Tx, count: int) -> None:
        """After the ``count``-th migration was applied, in its transaction."""
        return None

    def order(self, column: str) -> str:
        """ORDER BY text in byte order, NULL first (SQLite's default)."""
        return column

    @abstractmethod
    def close(self) -> None:
        """Close the connection(s); closing twice is fine."""


class Tx:
    """An open transaction on one connection. ``?`` in the SQL becomes the dialect's marker
    (values always go in as parameters, so no literal holds a ``?``); rows are dicts."""

    def __init__(self, conn: Any, dialect: Dialect) -> None:
        self.conn = conn
        self.dialect = dialect

    def sql(self, text: str) -> str:
        marker = self.dialect.marker
        return text if marker == "?" else text.replace("%", "%%").replace("?", marker)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement; the driver's cursor (``rowcount``, ``fetchone``...)."""
        return self.conn.execute(self.sql(sql), params)

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        row: Row | None = self.execute(sql, params).fetchone()
        return row

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return list(self.execute(sql, params).fetchall())

    def many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.conn.cursor().executemany(self.sql(sql), list(rows))

    def insert(self, table: str, values: Mapping[str, Any], *, unique: str = "") -> Row | None:
        """Insert one row and return it as stored. With ``unique`` (the conflict target,
        such as ``"(channel, external_id)"``) a row that would break it is not stored and
        None comes back."""
        columns = ", ".join(values)
        sql = f"INSERT INTO {table} ({columns}) VALUES ({marks(values)})"
        if unique:
            sql += f" ON CONFLICT {unique} DO NOTHING"
        return self.dialect.insert(self, table, self.sql(sql), list(values.values()))


def marks(values: Iterable[object]) -> str:
    """``?, ?, ?``: one marker per value."""
    return ", ".join("?" for _ in values)


def where(clauses: list[str]) -> str:
    return " AND ".join(clauses) or "1 = 1"


def equal(**columns: Any) -> tuple[list[str], list[Any]]:
    """Clauses ``column = ?`` and their parameters for the values that are not None (an
    enum by its value)."""
    given = {column: value for column, value in columns.items() if value is not None}
    return [f"{c} = ?" for c in given], [getattr(v, "value", v) for v in given.values()]


def aware(value: datetime | str) -> datetime:
    """A time (a datetime, or ISO-8601 text as SQLite stores it) as an aware UTC datetime;
    a naive one is taken to be UTC already (what ``datetime.utcnow()`` gives)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


@functools.cache
def _time_fields(model: type[BaseModel]) -> tuple[str, ...]:
    return tuple(
        name
        for name, field in model.model_fields.items()
        if field.annotation is datetime or datetime in typing.get_args(field.annotation)
    )


def record(model: type[M], row: Row, **json_fields: str) -> M:
    """The row as a ``model``: its time fields made aware UTC datetimes, and each of
    ``json_fields`` (name=default) decoded from its JSON text."""
    data = dict(row)
    for name in _time_fields(model):
        if data.get(name) is not None:
            data[name] = aware(data[name])
    for name, default in json_fields.items():
        data[name] = json.loads(data[name] or default)
    return model.model_validate(data)


def records(model: type[M], rows: Iterable[Row], **json_fields: str) -> list[M]:
    return [record(model, row, **json_fields) for row in rows]


Args = dict[str, Any]


def follows(contract: Callable[..., R]) -> Callable[[Callable[[Any, Args], R]], Callable[..., R]]:
    """Implement a Protocol method whose parameters are a row's fields (``add_message``,
    ``open_ticket``...) without writing its signature a second time: the call is checked
    against ``contract`` (a wrong or missing name is a TypeError, as for any call), its
    defaults filled in, and the arguments handed over as one dict. The method shows the
    contract's signature and docstring, so ``help()`` reads as before. A parameter added
    to the contract reaches the method without another edit."""
    signature = inspect.signature(contract)

    def decorate(method: Callable[[Any, Args], R]) -> Callable[..., R]:
        @functools.wraps(contract)
        def call(self: Any, *args: Any, **kwargs: Any) -> R:
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            given = dict(bound.arguments)
            del given["self"]
            return method(self, given)

        return call

    return decorate


class SQLCore:
    """What every part of the SQL store shares: the dialect, the clock, transactions and the
    rows more than one part reads."""

    def __init__(self, db: Dialect, *, now: Callable[[], datetime] | None = None) -> None:
        self.db = db
        self._now = now or (lambda: datetime.now(UTC))

    def _tx(self, *, write: bool = False) -> AbstractContextManager[Tx]:
        return self.db.transaction(write=write)

    def _stamp(self) -> Any:
        """The current time as the database stores it."""
        return self.db.time(self._now())

    def _window(
        self, since: datetime | None, until: datetime | None, column: str = "created_at"
    ) -> tuple[list[str], list[Any]]:
        """SQL clauses for the half-open window ``[since, until)`` on ``column``."""
        clauses: list[str] = []
        params: list[Any] = []
        for bound, op in ((since, ">="), (until, "<")):
            if bound is not None:
                clauses.append(f"{column} {op} ?")
                params.append(self.db.time(bound))
        return clauses, params

    def _add(self, tx: Tx, table: str, model: type[M], values: Mapping[str, Any]) -> M:
        """Insert a row created now; it comes back as a ``model``."""
        row = tx.insert(table, {**values, "created_at": self._stamp()})
        assert row is not None
        return record(model, row)

    def _one_message(self, tx: Tx, message_id: int) -> StoredMessage:
        row = tx.one("SELECT * FROM messages WHERE id = ?", (message_id,))
        if row is None:
            raise NotFoundError(f"no message {message_id}")
        return record(StoredMessage, row)

    def _one_ticket(self, tx: Tx, ticket_id: int, *, lock: bool = False) -> Ticket:
        """The ticket; with ``lock``, its row is locked until the commit (it is about to
        change: a second writer waits, then sees the change)."""
        sql = "SELECT * FROM tickets WHERE id = ?" + (self.db.for_update if lock else "")
        row = tx.one(sql, (ticket_id,))
        if row is None:
            raise NotFoundError(f"no ticket {ticket_id}")
        return record(Ticket, row, context="{}")
