"""Conversation customer tokens and the VIP list in SQL, for every dialect (the TrustStore
part of SQLStore; the rules they serve are in autoreply/api/customer.py and the service)."""

from __future__ import annotations

from autoreply.errors import NotFoundError
from autoreply.store.core import SQLCore, record, records
from autoreply.store.records import Vip


class TrustSQL(SQLCore):
    """The TrustStore part of SQLStore."""

    def set_conversation_key(self, conversation_id: str, token_hash: str) -> bool:
        with self._tx(write=True) as tx:
            row = tx.insert(
                "conversation_keys",
                {
                    "conversation_id": conversation_id,
                    "token_hash": token_hash,
                    "created_at": self._stamp(),
                },
                unique="(conversation_id)",
            )
        return row is not None

    def conversation_key(self, conversation_id: str) -> str | None:
        with self._tx() as tx:
            row = tx.one(
                "SELECT token_hash FROM conversation_keys WHERE conversation_id = ?",
                (conversation_id,),
            )
        return None if row is None else str(row["token_hash"])

    def add_vip(self, channel: str, user_id: str, *, added_by: str, note: str | None = None) -> Vip:
        with self._tx(write=True) as tx:
            tx.execute(
                "INSERT INTO vips (channel, user_id, note, added_by, added_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (channel, user_id) DO UPDATE SET "
                "note = excluded.note, added_by = excluded.added_by, "
                "added_at = excluded.added_at",
                (channel, user_id, note, added_by, self._stamp()),
            )
            row = tx.one("SELECT * FROM vips WHERE channel = ? AND user_id = ?", (channel, user_id))
        assert row is not None
        return record(Vip, row)

    def remove_vip(self, channel: str, user_id: str) -> None:
        with self._tx(write=True) as tx:
            gone = tx.execute(
                "DELETE FROM vips WHERE channel = ? AND user_id = ?", (channel, user_id)
            )
            if gone.rowcount == 0:
                raise NotFoundError(
                    f"'{user_id}' on channel '{channel}' is not on the VIP list; "
                    "list it with `autoreply vip list`"
                )

    def list_vips(self) -> list[Vip]:
        with self._tx() as tx:
            rows = tx.all("SELECT * FROM vips ORDER BY channel, user_id")
        return records(Vip, rows)

    def is_vip(self, channel: str, user_id: str) -> bool:
        with self._tx() as tx:
            row = tx.one(
                "SELECT 1 AS yes FROM vips WHERE channel = ? AND user_id = ?", (channel, user_id)
            )
        return row is not None
