"""Chatwoot agent bot: ``POST /channels/chatwoot/webhook?token=...``, replies through its API.

Create an agent bot in Chatwoot whose outgoing URL is
``https://<host>/channels/chatwoot/webhook?token=<webhook_token>`` (Chatwoot does not sign bot
webhooks, so the shared token in the URL is the check: wrong or missing → 401; keep it out of
access logs) and connect it to an inbox. Conversations then start as ``pending`` (the bot's):

- ``message_created`` from a contact (``incoming``, not private) is acknowledged at once and
  answered in a background task with ``POST /api/v1/accounts/{a}/conversations/{c}/messages``
  (header ``api_access_token``). Outgoing, private and activity messages are ignored, and so is
  everything in an ``open`` conversation: a person is on it.
- ``handoff(ticket)`` sets the conversation to ``open`` (``toggle_status``), which puts it in the
  agents' queue, and posts a private note with the handoff payload: reason, priority, VIP,
  question, the bot's candidates with scores, the customer's messages.
- When an agent resolves it in Chatwoot (``conversation_status_changed`` to ``resolved``, or
  ``conversation_resolved``), the conversation is the bot's again: Chatwoot reopens it as
  ``pending`` on the customer's next message. Nothing to do but accept the event.
  ``resolved(ticket)`` (an agent resolved through autoreply's API) sets ``resolved`` in
  Chatwoot too; if Chatwoot already resolved it, that changes nothing.

Conversation ids: ``chatwoot:{account_id}:{conversation_id}``.
"""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import APIRouter, BackgroundTasks, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from autoreply.channels.base import (
    Channel,
    Handler,
    SeenIds,
    build_message,
    obj,
    parse_json,
    same,
    split_address,
)
from autoreply.channels.config import ChannelsConfig
from autoreply.models import Ticket

RESOLVED_EVENTS = {"conversation_resolved", "conversation_status_changed"}


def _fmt(value: Any, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "?"


def render_handoff(ticket: Ticket) -> str:
    """The handoff payload as a note an agent can read at a glance."""
    ctx = ticket.context
    lines = [
        f"autoreply handoff · ticket #{ticket.id}",
        f"Reason: {ctx.get('reason') or ticket.reason.value}",
        f"Priority: {ctx.get('priority') or ticket.priority.value}",
        f"VIP: {'yes' if ctx.get('vip', ticket.vip) else 'no'}",
    ]
    if ticket.category:
        lines.append(f"Category: {ticket.category}")
    owner = ctx.get("suggested_owner") or ticket.suggested_owner
    if owner:
        lines.append(f"Suggested owner: {owner}")
    lines.append(f"Question: {ctx.get('question', '')}")
    candidates = [c for c in ctx.get("candidates") or [] if isinstance(c, dict)]
    if candidates:
        lines.append("Bot's candidates:")
        for n, c in enumerate(candidates, 1):
            lines.append(
                f'  {n}. {c.get("entry_id")} ({c.get("category")}) "{c.get("question")}" '
                f"confidence {_fmt(c.get('confidence'))}, similarity {_fmt(c.get('similarity'))}"
            )
    else:
        lines.append("Bot's candidates: none")
    messages = [m for m in ctx.get("messages") or [] if isinstance(m, dict)]
    if messages:
        lines.append("Customer's messages:")
        lines.extend(f"  - {m.get('text', '')}" for m in messages)
    attempts = [a for a in ctx.get("attempts") or [] if isinstance(a, dict)]
    if attempts:
        lines.append("Bot's earlier replies:")
        lines.extend(
            f"  - {a.get('decision')}/{a.get('reason')} ({_fmt(a.get('confidence'))}): "
            f"{a.get('text', '')}"
            for a in attempts
        )
    return "\n".join(lines)


class ChatwootChannel(Channel):
    """autoreply as a Chatwoot agent bot, handing conversations to the team's inbox."""

    name = "chatwoot"

    def __init__(self, config: ChannelsConfig, http: httpx.AsyncClient) -> None:
        super().__init__(config, http)
        self.seen = SeenIds()

    @classmethod
    def enabled(cls, config: ChannelsConfig) -> bool:
        cfg = config.chatwoot
        return bool(cfg.base_url and cfg.api_token and cfg.webhook_token)

    def router(self, handle: Handler) -> APIRouter:
        router = APIRouter()

        @router.post("/webhook", summary="Chatwoot agent bot webhook")
        async def webhook(request: Request, background: BackgroundTasks) -> Response:
            token = request.query_params.get("token")
            if not token:
                raise self.reject(request, "missing_token", "missing ?token=")
            if not same(token, self.config.chatwoot.webhook_token):
                raise self.reject(request, "bad_token", "wrong token")
            data = parse_json(await request.body())
            event = data.get("event")
            if event in RESOLVED_EVENTS:
                return JSONResponse({"ok": True, "status": data.get("status")})
            if event != "message_created":
                return JSONResponse({"ok": True, "ignored": f"event {event!r}"})
            if not self._from_contact(data):
                return JSONResponse({"ok": True, "ignored": "not a contact's message"})
            conversation = data.get("conversation")
            account = data.get("account")
            if not isinstance(conversation, dict) or not isinstance(account, dict):
                raise HTTPException(400, "message_created without conversation or account")
            conv_id, account_id = conversation.get("id"), account.get("id")
            if not isinstance(conv_id, int) or not isinstance(account_id, int):
                raise HTTPException(400, "conversation.id and account.id must be integers")
            if conversation.get("status") == "open":
                return JSONResponse({"ok": True, "ignored": "a person is on this conversation"})
            if data.get("id") is not None and not self.seen.add(str(data["id"])):
                return JSONResponse({"ok": True, "ignored": "redelivered message"})
            sender = obj(data.get("sender"))
            message = build_message(
                text=data["content"],
                user_id=str(sender.get("id") or f"conversation-{conv_id}"),
                conversation_id=f"chatwoot:{account_id}:{conv_id}",
                channel=self.name,
                message_id=str(data["id"]) if data.get("id") is not None else None,
                metadata={"name": sender.get("name"), "inbox_id": conversation.get("inbox_id")},
            )
            background.add_task(
                self.reply_later,
                handle,
                message,
                lambda text: self._post(account_id, conv_id, {"content": text}),
            )
            return JSONResponse({"ok": True})

        return router

    @staticmethod
    def _from_contact(data: dict[str, Any]) -> bool:
        sender = data.get("sender")
        sender_type = sender.get("type") if isinstance(sender, dict) else None
        return (
            data.get("message_type") in ("incoming", 0)
            and not data.get("private")
            and sender_type in (None, "contact")
            and isinstance(data.get("content"), str)
            and bool(data["content"].strip())
        )

    def _url(self, account: str | int, conversation: str | int, action: str) -> str:
        base = self.config.chatwoot.base_url.rstrip("/")
        return f"{base}/api/v1/accounts/{account}/conversations/{conversation}/{action}"

    async def _post(
        self, account: str | int, conversation: str | int, body: dict[str, Any]
    ) -> None:
        await self.call(
            "POST",
            self._url(account, conversation, "messages"),
            label="create message",
            json={"message_type": "outgoing", "private": False, **body},
            headers={"api_access_token": self.config.chatwoot.api_token},
        )

    async def _status(self, conversation_id: str, status: str) -> None:
        account, conversation = split_address(conversation_id, self.name, 2)
        await self.call(
            "POST",
            self._url(account, conversation, "toggle_status"),
            label="toggle_status",
            json={"status": status},
            headers={"api_access_token": self.config.chatwoot.api_token},
        )

    async def send(self, *, conversation_id: str, user_id: str, text: str) -> None:
        account, conversation = split_address(conversation_id, self.name, 2)
        await self._post(account, conversation, {"content": text})

    async def handoff(self, ticket: Ticket) -> None:
        """Open the conversation for the team and leave the handoff payload as a private note."""
        await self._status(ticket.conversation_id, "open")
        account, conversation = split_address(ticket.conversation_id, self.name, 2)
        await self._post(
            account, conversation, {"content": render_handoff(ticket), "private": True}
        )

    async def resolved(self, ticket: Ticket) -> None:
        """Resolve the conversation in Chatwoot too (no change if it was resolved there)."""
        await self._status(ticket.conversation_id, "resolved")
