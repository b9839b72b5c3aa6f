"""Persistence: the Store protocol and its backends, chosen by a database URL."""

from __future__ import annotations

from pathlib import Path

from autoreply.errors import ConfigError
from autoreply.store.base import Store

__all__ = ["Store", "open_store"]

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
