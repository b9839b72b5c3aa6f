"""Persistence: the Store protocol, the records it speaks, and its one SQL implementation over
SQLite or PostgreSQL, chosen by a database URL.

    base.py               the Store protocol, split by concern
    records.py            the records it speaks (those of autoreply.models, and its own)
    schema.py             the schema (one list of migrations) and migrate()
    core.py               the Dialect, transactions (Tx), rows to records
    sql.py                SQLStore: the SQL, once (with sql_conversations.py, sql_gaps.py,
                          sql_agents.py, sql_trust.py, sql_learning.py)
    sqlite.py, postgres.py  the two dialects and SQLiteStore / PostgresStore

A new column is a migration appended in schema.py (both databases), its field on the record,
and, where a caller passes it, a parameter of the Protocol method: the methods that insert
or filter on a row's fields (``add_message``, ``open_ticket``, ``add_gap``...) take their
parameters from the Protocol (``core.follows``), so the SQL needs no edit. A new table is a
migration; a new method is its Protocol signature in base.py and its SQL, once, in sql*.py.
"""

from __future__ import annotations

from pathlib import Path

from autoreply.errors import ConfigError
from autoreply.store import records
from autoreply.store.base import Store
from autoreply.store.records import *  # noqa: F403 (the records are the store's vocabulary)

__all__ = ["Store", "open_store", *records.__all__]

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def open_store(url: str | Path) -> Store:
    """Open the store a URL names: ``sqlite:///path/to.db``, ``sqlite://:memory:`` or a
    plain file path (SQLite), or ``postgresql://USER:PASSWORD@HOST:PORT/DBNAME`` (also
    ``postgres://``; needs ``pip install 'autoreply[postgres]'``)."""
    text = str(url)
    if text.startswith(POSTGRES_SCHEMES):
        from autoreply.store.postgres import PostgresStore

        return PostgresStore(text)

    from autoreply.store.sqlite import SQLiteStore

    if text.startswith("sqlite:///"):
        return SQLiteStore(text.removeprefix("sqlite:///"))
    if text in ("sqlite://", "sqlite://:memory:", ":memory:"):
        return SQLiteStore(":memory:")
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise ConfigError(
            f"unsupported database URL scheme '{scheme}'; known: sqlite:///PATH (or a file "
            "path), postgresql://USER:PASSWORD@HOST:PORT/DBNAME"
        )
    return SQLiteStore(text)
