"""Persistence: the Store protocol and its backends, chosen by a database URL."""

from __future__ import annotations

from pathlib import Path

from autoreply.errors import ConfigError
from autoreply.store.base import Store

__all__ = ["Store", "open_store"]


def open_store(url: str | Path) -> Store:
    """Open the store a URL names: ``sqlite:///path/to.db``, ``sqlite://:memory:`` or a
    plain file path (SQLite)."""
    from autoreply.store.sqlite import SQLiteStore

    text = str(url)
    if text.startswith("sqlite:///"):
        return SQLiteStore(text.removeprefix("sqlite:///"))
    if text in ("sqlite://", "sqlite://:memory:", ":memory:"):
        return SQLiteStore(":memory:")
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise ConfigError(
            f"unsupported database URL scheme '{scheme}'; known: sqlite:///PATH (or a file path)"
        )
    return SQLiteStore(text)
