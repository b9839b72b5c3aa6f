"""SQLiteStore: the default Store, one SQLite file (or ``:memory:``) shared by every thread.

What is SQLite's own (the SQL is store/sql*.py, the schema store/schema.py): one connection
(``check_same_thread=False``) guarded by an RLock serves the whole process; each
transaction is ``BEGIN IMMEDIATE`` when it writes, so two agents claiming the same ticket
cannot both win, even from two processes on one file, and no row locks are needed. Times
are stored as ISO-8601 UTC text with microseconds (fixed width, so text order is time
order). An inserted row is read back by its rowid (no ``RETURNING`` before SQLite 3.35).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from autoreply.errors import ConflictError, NotFoundError, StoreError
from autoreply.store.core import Dialect, Row, Tx, aware
from autoreply.store.schema import Migration, migrate
from autoreply.store.sql import SQLStore

__all__ = ["SQLiteDialect", "SQLiteStore"]

_BUSY_TIMEOUT_MS = 5000


def _dict_row(cursor: sqlite3.Cursor, values: tuple[Any, ...]) -> Row:
    return {column[0]: value for column, value in zip(cursor.description, values, strict=True)}


class SQLiteDialect(Dialect):
    """A SQLite file (created with its folders) or ``":memory:"``, migrated on open (with
    ``migrations``, only those: tests make older databases this way)."""

    types = {
        "id": "INTEGER PRIMARY KEY",
        "key": "INTEGER",
        "time": "TEXT",
        "flag": "INTEGER",
        "no": "0",
        "real": "REAL",
        "blob": "BLOB",
    }

    def __init__(
        self, path: str | Path, *, migrations: list[tuple[str, Migration]] | None = None
    ) -> None:
        self.path: Path | str = ":memory:" if str(path) == ":memory:" else Path(path).expanduser()
        self.where = str(self.path)
        self._lock = threading.RLock()
        self._depth = 0  # transactions open under the lock (more than one: atomic())
        self._closed = False
        self._conn = self._connect()
        try:
            migrate(self, migrations=migrations)
        except BaseException:
            self.close()
            raise

    def _connect(self) -> sqlite3.Connection:
        if isinstance(self.path, Path):
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(
                    f"{self.where}: cannot create its folder ({exc.strerror}); "
                    "choose a path you can write to"
                ) from exc
        try:
            conn = sqlite3.connect(
                self.where,
                timeout=_BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,  # we issue BEGIN / COMMIT ourselves
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise StoreError(
                f"{self.where}: cannot open the database ({exc}); "
                "check the path and its permissions"
            ) from exc
        try:
            conn.row_factory = _dict_row
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_MS)}")
            if isinstance(self.path, Path):
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error as exc:
            conn.close()
            raise self._wrap(exc) from exc
        return conn

    def _wrap(self, exc: sqlite3.Error) -> StoreError:
        if self._closed:
            return StoreError(f"{self.where}: the store is closed; open it again")
        if getattr(exc, "sqlite_errorname", "") in ("SQLITE_NOTADB", "SQLITE_CORRUPT"):
            return StoreError(
                f"{self.where} is not a usable SQLite database ({exc}); move it away or "
                "point the store at another file"
            )
        if isinstance(exc, sqlite3.IntegrityError):
            return ConflictError(f"{self.where}: the change conflicts with stored data: {exc}")
        return StoreError(f"{self.where}: database error: {exc}")

    @contextmanager
    def atomic(self) -> Iterator[None]:
        with self.transaction(write=True):
            yield

    @contextmanager
    def transaction(self, *, write: bool) -> Iterator[Tx]:
        """Under the lock; inside ``atomic()`` (this thread holds the lock) it joins the
        transaction already open."""
        with self._lock:
            tx = Tx(self._conn, self)
            if self._depth:
                try:
                    yield tx
                except sqlite3.Error as exc:
                    raise self._wrap(exc) from exc
                return
            try:
                self._conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            except sqlite3.Error as exc:
                raise self._wrap(exc) from exc
            self._depth += 1
            try:
                yield tx
            except BaseException as exc:
                self._rollback()
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
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise self._wrap(exc) from exc

    def _rollback(self) -> None:
        try:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # the original error is the one worth reporting

    def time(self, value: datetime) -> str:
        return aware(value).isoformat(timespec="microseconds")

    def insert(self, tx: Tx, table: str, sql: str, params: Sequence[Any]) -> Row | None:
        cur = tx.conn.execute(sql, params)
        if cur.rowcount == 0:
            return None
        return tx.one(f"SELECT * FROM {table} WHERE rowid = ?", (cur.lastrowid,))

    def migrated(self, tx: Tx, count: int) -> None:
        # Mirrored for tools that only read the header. PRAGMA takes no parameters; the
        # value is an int we computed, never user input.
        tx.execute(f"PRAGMA user_version = {int(count)}")

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()


class SQLiteStore(SQLStore):
    """The Store on SQLite. ``path`` is a file (created with its folders) or ``":memory:"``;
    ``now`` supplies the current time (tests pass a fake clock)."""

    db: SQLiteDialect

    def __init__(self, path: str | Path, *, now: Callable[[], datetime] | None = None) -> None:
        super().__init__(SQLiteDialect(path), now=now)
        self.path = self.db.path
