"""Agents (API tokens, kept as sha256 only), interceptions and deliveries in SQL, for every
dialect."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from autoreply.errors import ConflictError, NotFoundError, StoreError
from autoreply.store.base import AgentStore
from autoreply.store.core import Args, SQLCore, Tx, follows, record, records, where
from autoreply.store.records import (
    Agent,
    AgentRole,
    Delivery,
    DeliveryStatus,
    Interception,
    hash_token,
)

_AGENT_NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")
_AGENT_COLUMNS = "id, name, role, created_at, expires_at, disabled"


class AgentsSQL(SQLCore):
    """The AgentStore part of SQLStore."""

    def _expiry(self, expires_at: datetime | None) -> Any:
        return None if expires_at is None else self.db.time(expires_at)

    def add_agent(
        self, name: str, *, role: AgentRole, token: str, expires_at: datetime | None = None
    ) -> Agent:
        if not _AGENT_NAME.fullmatch(name):
            raise StoreError(
                f"agent name {name!r} is not allowed; use 1-64 letters, digits, '.', '_', '@' "
                "or '-'"
            )
        new = {
            "name": name,
            "role": AgentRole(role).value,
            "token_hash": hash_token(token),
            "expires_at": self._expiry(expires_at),
            "disabled": False,
        }
        with self._tx(write=True) as tx:
            if tx.insert("agents", {**new, "created_at": self._stamp()}, unique="(name)") is None:
                raise ConflictError(
                    f"agent '{name}' already exists; issue a new token for it instead "
                    "(autoreply agents token NAME)"
                )
            return self._agent(tx, name)

    def set_agent_token(
        self, name: str, *, token: str, expires_at: datetime | None = None
    ) -> Agent:
        with self._tx(write=True) as tx:
            tx.execute(
                "UPDATE agents SET token_hash = ?, expires_at = ?, disabled = ? WHERE name = ?",
                (hash_token(token), self._expiry(expires_at), False, name),
            )
            return self._agent(tx, name)

    def agent_for_token(self, token: str) -> Agent | None:
        with self._tx() as tx:
            row = tx.one(
                f"SELECT {_AGENT_COLUMNS} FROM agents WHERE token_hash = ?", (hash_token(token),)
            )
        return None if row is None else record(Agent, row)

    def get_agent(self, name: str) -> Agent:
        with self._tx() as tx:
            return self._agent(tx, name)

    def list_agents(self) -> list[Agent]:
        order = self.db.order("name")
        with self._tx() as tx:
            return records(Agent, tx.all(f"SELECT {_AGENT_COLUMNS} FROM agents ORDER BY {order}"))

    def disable_agent(self, name: str) -> Agent:
        with self._tx(write=True) as tx:
            tx.execute("UPDATE agents SET disabled = ? WHERE name = ?", (True, name))
            return self._agent(tx, name)

    def _agent(self, tx: Tx, name: str) -> Agent:
        row = tx.one(f"SELECT {_AGENT_COLUMNS} FROM agents WHERE name = ?", (name,))
        if row is None:
            rows = tx.all(f"SELECT name FROM agents ORDER BY {self.db.order('name')} LIMIT 20")
            known = (
                ", ".join(str(r["name"]) for r in rows) or "none yet (autoreply agents add NAME)"
            )
            raise NotFoundError(f"no agent {name!r}; known: {known}")
        return record(Agent, row)

    # -- quality inspection and deliveries -----------------------------------------------
    def add_interception(
        self, *, agent: str, phrase: str, ticket_id: int | None = None
    ) -> Interception:
        new = {"agent": agent, "ticket_id": ticket_id, "phrase": phrase}
        with self._tx(write=True) as tx:
            if ticket_id is not None:
                self._one_ticket(tx, ticket_id)
            return self._add(tx, "interceptions", Interception, new)

    def list_interceptions(
        self, *, agent: str | None = None, since: datetime | None = None, limit: int = 100
    ) -> list[Interception]:
        clauses, params = self._window(since, None)
        if agent is not None:
            clauses.append("agent = ?")
            params.append(agent)
        params.append(max(limit, 0))
        with self._tx() as tx:
            rows = tx.all(
                f"SELECT * FROM interceptions WHERE {where(clauses)} "
                "ORDER BY created_at DESC, id DESC LIMIT ?",
                params,
            )
        return records(Interception, rows)

    def count_interceptions(
        self, *, by: Literal["agent", "phrase"], since: datetime | None = None
    ) -> dict[str, int]:
        if by not in ("agent", "phrase"):
            raise StoreError(f"cannot count interceptions by {by!r}; use 'agent' or 'phrase'")
        clauses, params = self._window(since, None)
        with self._tx() as tx:
            rows = tx.all(
                f"SELECT {by} AS key, COUNT(*) AS n FROM interceptions WHERE {where(clauses)} "
                f"GROUP BY {by} ORDER BY n DESC, {self.db.order(by)}",
                params,
            )
        return {str(row["key"]): int(row["n"]) for row in rows}

    def add_delivery(
        self, *, message_id: int, channel: str, status: DeliveryStatus, error: str | None = None
    ) -> Delivery:
        new = dict(message_id=message_id, channel=channel, status=DeliveryStatus(status).value)
        with self._tx(write=True) as tx:
            self._one_message(tx, message_id)
            return self._add(tx, "deliveries", Delivery, {**new, "error": error})

    @follows(AgentStore.list_deliveries)
    def list_deliveries(self, given: Args) -> list[Delivery]:
        clauses: list[str] = []
        params: list[Any] = []
        if given["status"] is not None:
            clauses.append("d.status = ?")
            params.append(DeliveryStatus(given["status"]).value)
        if given["ticket_id"] is not None:
            clauses.append("m.ticket_id = ?")
            params.append(given["ticket_id"])
        params.append(max(given["limit"], 0))
        with self._tx() as tx:
            rows = tx.all(
                "SELECT d.* FROM deliveries AS d JOIN messages AS m ON m.id = d.message_id "
                f"WHERE {where(clauses)} ORDER BY d.created_at DESC, d.id DESC LIMIT ?",
                params,
            )
        return records(Delivery, rows)
