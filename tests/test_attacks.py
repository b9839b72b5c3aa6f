"""The attack suite: each hole found by trying the live service as an attacker would, as a
test that failed on the code before the trust model (see the README's trust model).

1. Anyone could read any conversation (``GET /v1/conversations/telegram:77``, no token).
2. The open webhook could act as another channel: ``"channel": "chatwoot"`` made the service
   use its Chatwoot token on that conversation, and an agent's reply went to a Telegram chat
   that never wrote to the bot.
3. Customers could declare themselves VIP in ``metadata``.
4. Feishu's signature was optional (tests/test_channels_feishu.py and below).
5. A knowledge upload skipped the conflict check.
6. A reused message id with another text silently got the old reply; a duplicate's reply
   came back without its candidates.
7. Every channel's 401 had the error type ``http``.

Storage-backed attacks run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient
from test_channels_feishu import ENCRYPT_KEY, VTOKEN, encrypted_request, receive
from test_channels_slack import SECRET as SLACK_SECRET
from test_channels_slack import event as slack_event
from test_channels_slack import signed as slack_signed
from test_server import BACKENDS, HUMAN, agent, backend_settings, module_settings, roomy, state
from test_server import arrive as arrive_at

from autoreply.app import create_app
from autoreply.channels.config import (
    ChannelsConfig,
    FeishuConfig,
    GenericConfig,
    SlackConfig,
    TelegramConfig,
)
from autoreply.channels.generic import sign_request
from autoreply.encoder import HashingEncoder
from autoreply.models import Message, Reply, Ticket
from autoreply.settings import Settings
from autoreply.store import AgentRole

pytestmark = pytest.mark.usefixtures("restore_autoreply_logging")

WEBHOOK_SECRET = "webhook-secret-42"
TELEGRAM_SECRET = "tg-secret"
DEAD = "http://127.0.0.1:9"


class Recorder:
    """Stands in for a platform adapter and records every outbound action."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.actions: list[tuple[str, Any]] = []

    async def send(self, *, conversation_id: str, user_id: str, text: str) -> None:
        self.actions.append(("send", conversation_id))

    async def handoff(self, ticket: Ticket) -> None:
        self.actions.append(("handoff", ticket.conversation_id))

    async def resolved(self, ticket: Ticket) -> None:
        self.actions.append(("resolved", ticket.conversation_id))


@dataclass
class Ctx:
    client: TestClient
    backend: str
    root: dict[str, str]
    alice: dict[str, str]
    knowledge: Path
    platforms: dict[str, Recorder] = field(default_factory=dict)

    def post(self, body: dict[str, Any], **headers: str) -> httpx.Response:
        return self.client.post("/v1/messages", json=body, headers=headers)


def settle(ctx: Ctx) -> None:
    """Let the app's background notices (handoff, resolved) run."""
    ctx.client.portal.call(state(ctx.client).channels.settle)  # type: ignore[union-attr]


def arrive(ctx: Ctx, message: Message) -> Reply:
    """A message through its channel's own verified route, as the adapter hands it over."""
    return arrive_at(ctx.client, message)


@pytest.fixture(scope="module", params=BACKENDS)
def ctx(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ctx]:
    with backend_settings(request, tmp_path_factory) as settings:
        app = create_app(roomy(settings), encoder=HashingEncoder())
        with TestClient(app) as client:
            c = Ctx(
                client=client,
                backend=request.param,
                root=agent(client, "root", AgentRole.ADMIN),
                alice=agent(client, "alice"),
                knowledge=Path(settings.knowledge),
            )
            for name in ("chatwoot", "telegram"):
                c.platforms[name] = Recorder(name)
                state(client).channels.channels[name] = c.platforms[name]  # type: ignore[assignment]
            yield c


# -- 1. conversations are private ----------------------------------------------------------------


def test_a_channel_conversation_is_not_readable_without_credentials(ctx: Ctx) -> None:
    """``telegram:77`` (a predictable id) answers 401 without a credential and 404 with a
    customer token of another conversation; an agent reads it."""
    arrive(
        ctx,
        Message(text="如何退款", user_id="77", channel="telegram", conversation_id="telegram:77"),
    )
    anonymous = ctx.client.get("/v1/conversations/telegram:77")
    assert anonymous.status_code == 401
    assert "如何退款" not in anonymous.text
    mine = ctx.post({"text": "hello", "user_id": "snoop"}).json()["conversation_token"]
    other = ctx.client.get("/v1/conversations/telegram:77", headers={"X-Conversation-Token": mine})
    assert other.status_code == 404 and "如何退款" not in other.text
    read = ctx.client.get("/v1/conversations/telegram:77", headers=ctx.alice)
    assert read.status_code == 200
    assert read.json()["messages"][0]["text"] == "如何退款"


def test_a_webhook_conversation_opens_with_its_own_token_only(ctx: Ctx) -> None:
    """The first reply carries the conversation's token (once); it opens that conversation
    and nothing else; an unknown and a forbidden conversation get the same 404."""
    first = ctx.post({"text": "如何退款", "user_id": "widget-1"}).json()
    token = first["conversation_token"]
    assert token and first["conversation_id"] == "api:widget-1"
    again = ctx.post(
        {"text": "怎么修改密码？", "user_id": "widget-1"}, **{"X-Conversation-Token": token}
    ).json()
    assert again["conversation_token"] is None  # issued once, with the first reply
    own = ctx.client.get("/v1/conversations/api:widget-1", headers={"X-Conversation-Token": token})
    assert [m["text"] for m in own.json()["messages"]][::2] == ["如何退款", "怎么修改密码？"]
    ctx.post({"text": "hi", "user_id": "widget-2"})
    forbidden = ctx.client.get(
        "/v1/conversations/api:widget-2", headers={"X-Conversation-Token": token}
    )
    unknown = ctx.client.get(
        "/v1/conversations/api:nobody-at-all", headers={"X-Conversation-Token": token}
    )
    assert forbidden.status_code == unknown.status_code == 404
    assert forbidden.json()["error"]["message"].replace("widget-2", "X") == unknown.json()["error"][
        "message"
    ].replace("nobody-at-all", "X")


def test_another_client_cannot_write_into_a_conversation(ctx: Ctx) -> None:
    """An unsigned message into someone else's conversation (ids are guessable) is refused
    without its token; a retry of the very message that started it is still answered."""
    first = ctx.post({"text": "如何退款", "user_id": "victim", "message_id": "v-1"}).json()
    intruder = ctx.post({"text": HUMAN, "user_id": "victim"})
    assert intruder.status_code == 403
    assert intruder.json()["error"]["type"] == "forbidden"
    retry = ctx.post({"text": "如何退款", "user_id": "victim", "message_id": "v-1"})
    assert retry.status_code == 200 and retry.json()["duplicate"]
    assert retry.json()["conversation_token"] is None
    assert retry.json()["message_id"] == first["message_id"]


def test_feedback_needs_the_conversations_credentials(ctx: Ctx) -> None:
    """Votes teach the FAQ: nobody votes on another customer's answers."""
    reply = ctx.post({"text": "如何退款", "user_id": "voter"}).json()
    body = {"message_id": reply["message_id"], "helpful": False}
    assert ctx.client.post("/v1/feedback", json=body).status_code == 401
    stranger = ctx.post({"text": "hi", "user_id": "stranger"}).json()["conversation_token"]
    wrong = ctx.client.post("/v1/feedback", json=body, headers={"X-Conversation-Token": stranger})
    assert wrong.status_code == 404
    right = ctx.client.post(
        "/v1/feedback", json=body, headers={"X-Conversation-Token": reply["conversation_token"]}
    )
    assert right.status_code == 201


# -- 2. a channel's identity comes from its route ------------------------------------------------


def test_the_open_webhook_cannot_act_on_a_chatwoot_conversation(ctx: Ctx) -> None:
    """``"channel": "chatwoot", "conversation_id": "chatwoot:3:4242"`` stays in the api
    namespace: no Chatwoot call, the ticket is the api channel's."""
    reply = ctx.post(
        {
            "text": HUMAN,
            "user_id": "attacker",
            "channel": "chatwoot",
            "conversation_id": "chatwoot:3:4242",
            "metadata": {"vip": True},
        }
    ).json()
    assert reply["decision"] == "escalate"
    assert reply["conversation_id"] == "api:chatwoot:3:4242"
    settle(ctx)
    assert ctx.platforms["chatwoot"].actions == []
    ticket = state(ctx.client).bot.store.get_ticket(reply["ticket_id"])
    assert ticket.channel == "api" and ticket.conversation_id == "api:chatwoot:3:4242"
    assert not ticket.vip and ticket.priority.value == "normal"  # not raised for a VIP


def test_an_agent_reply_never_reaches_a_chat_that_did_not_write(ctx: Ctx) -> None:
    """``"channel": "telegram", "conversation_id": "telegram:99999"``: the agent's reply is
    kept for polling on the api channel, never sent to Telegram chat 99999."""
    reply = ctx.post(
        {
            "text": HUMAN,
            "user_id": "attacker2",
            "channel": "telegram",
            "conversation_id": "telegram:99999",
        }
    ).json()
    ticket_id = reply["ticket_id"]
    ctx.client.post(f"/v1/tickets/{ticket_id}/claim", headers=ctx.alice)
    sent = ctx.client.post(
        f"/v1/tickets/{ticket_id}/reply", headers=ctx.alice, json={"text": "Hello there"}
    )
    assert sent.json()["delivery"]["status"] == "poll"
    assert sent.json()["delivery"]["channel"] == "generic"
    settle(ctx)
    assert ("send", "telegram:99999") not in ctx.platforms["telegram"].actions
    # the same conversation through Telegram's own route does reach Telegram
    real = arrive(
        ctx, Message(text=HUMAN, user_id="55", channel="telegram", conversation_id="telegram:55")
    )
    ctx.client.post(f"/v1/tickets/{real.ticket_id}/claim", headers=ctx.alice)
    ctx.client.post(
        f"/v1/tickets/{real.ticket_id}/reply", headers=ctx.alice, json={"text": "Hi from a person"}
    )
    settle(ctx)
    assert ("send", "telegram:55") in ctx.platforms["telegram"].actions


# -- 3. trusted metadata only from trusted senders -------------------------------------------------


def test_an_anonymous_customer_cannot_declare_themselves_vip(
    ctx: Ctx, caplog: pytest.LogCaptureFixture
) -> None:
    """``metadata.vip``, ``priority`` and ``agent_id`` from an unsigned request are ignored
    (and logged), so no priority, no dedicated agent, no 5-minute SLA."""
    with caplog.at_level("WARNING", logger="autoreply.api"):
        reply = ctx.post(
            {
                "text": HUMAN,
                "user_id": "selfvip",
                "metadata": {
                    "vip": True,
                    "priority": "urgent",
                    "agent_id": "alice",
                    "page": "/orders",
                },
            }
        ).json()
    ticket = state(ctx.client).bot.store.get_ticket(reply["ticket_id"])
    assert not ticket.vip and ticket.priority.value == "normal"
    assert ticket.suggested_owner is None
    assert ticket.context["metadata"] == {"page": "/orders"}
    assert any(r.getMessage() == "untrusted metadata ignored" for r in caplog.records)
    assert "ignored" not in json.dumps(reply)  # said in the logs, not to the caller


def test_the_vip_list_counts_for_senders_the_channel_proves(ctx: Ctx) -> None:
    """An admin puts telegram user 88 on the VIP list: their escalation through Telegram's
    route is VIP; an anonymous webhook user claiming the same id is not."""
    put = ctx.client.put(
        "/v1/admin/vips/telegram/88", headers=ctx.root, json={"note": "key account"}
    )
    assert put.status_code == 200 and put.json()["added_by"] == "root"
    assert ctx.client.put("/v1/admin/vips/telegram/88", headers=ctx.alice).status_code == 403
    real = arrive(
        ctx, Message(text=HUMAN, user_id="88", channel="telegram", conversation_id="telegram:88")
    )
    vip_ticket = state(ctx.client).bot.store.get_ticket(real.ticket_id or 0)
    assert vip_ticket.vip and vip_ticket.priority.value == "high"  # one step up
    assert vip_ticket.context["metadata"]["vip_source"] == "list"
    ctx.client.put("/v1/admin/vips/api/88", headers=ctx.root)
    fake = ctx.post({"text": HUMAN, "user_id": "88"}).json()
    assert not state(ctx.client).bot.store.get_ticket(fake["ticket_id"]).vip
    listed = ctx.client.get("/v1/admin/vips", headers=ctx.root).json()
    assert {(v["channel"], v["user_id"]) for v in listed} >= {("telegram", "88"), ("api", "88")}
    assert ctx.client.delete("/v1/admin/vips/telegram/88", headers=ctx.root).status_code == 204
    assert ctx.client.delete("/v1/admin/vips/telegram/88", headers=ctx.root).status_code == 404


# -- 6. message ids ------------------------------------------------------------------------------


def test_a_reused_message_id_with_another_text_is_409(ctx: Ctx) -> None:
    """The same id with a different text names the id in a 409, instead of silently
    answering the old question."""
    first = ctx.post({"text": "如何退款", "user_id": "reuse", "message_id": "mid-7"}).json()
    token = first["conversation_token"]
    other = ctx.post(
        {"text": "怎么修改密码？", "user_id": "reuse", "message_id": "mid-7"},
        **{"X-Conversation-Token": token},
    )
    assert other.status_code == 409
    assert "mid-7" in other.json()["error"]["message"]


def test_a_true_duplicate_returns_the_original_reply_whole(ctx: Ctx) -> None:
    """A retried message gets back exactly the first reply, candidates included."""
    body = {"text": "password", "user_id": "dup-whole", "message_id": "dw-1"}
    first = ctx.post(body).json()
    assert first["candidates"], "the question must be one with candidates"
    again = ctx.post(body, **{"X-Conversation-Token": first["conversation_token"]}).json()
    assert again["duplicate"] is True
    skip = {"duplicate", "conversation_token"}
    assert {k: v for k, v in again.items() if k not in skip} == {
        k: v for k, v in first.items() if k not in skip
    }


# -- 5. knowledge uploads run the full check -----------------------------------------------------


def test_an_upload_that_conflicts_is_refused_with_file_line_field(ctx: Ctx) -> None:
    """A file whose question another entry already has: 422 with the file:line/field report
    (nothing written); ``dry_run`` reports without writing; ``accept_warnings`` installs."""
    clash = yaml.safe_dump(
        [{"id": f"dup-refund-{ctx.backend}", "question": "如何退款", "answer": "Another answer."}],
        allow_unicode=True,
    ).encode()
    name = f"clash-{ctx.backend}.yaml"
    refused = ctx.client.post(
        "/v1/admin/knowledge", headers=ctx.root, files={"file": (name, clash)}
    )
    assert refused.status_code == 422, refused.text
    problem = refused.json()["error"]["problems"][0]
    assert problem["file"] == name and problem["line"] == 1 and problem["field"] == "question"
    assert "refund" in problem["problem"]
    assert not (ctx.knowledge / name).exists()
    dry = ctx.client.post(
        "/v1/admin/knowledge",
        headers=ctx.root,
        params={"dry_run": "true"},
        files={"file": (name, clash)},
    )
    assert dry.status_code == 200 and dry.json()["dry_run"] and dry.json()["warnings"]
    assert not (ctx.knowledge / name).exists()
    taken = ctx.client.post(
        "/v1/admin/knowledge",
        headers=ctx.root,
        params={"accept_warnings": "true"},
        files={"file": (name, clash)},
    )
    assert taken.status_code == 200 and taken.json()["warnings"]
    assert (ctx.knowledge / name).read_bytes() == clash
    (ctx.knowledge / name).unlink()
    ctx.client.post("/v1/admin/reload", headers=ctx.root)


# -- 4, 7 and the generic webhook's secret: every refusal says which ---------------------------


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """An app with a webhook secret and Slack, Telegram and Feishu configured."""
    channels = ChannelsConfig(
        generic=GenericConfig(webhook_secret=WEBHOOK_SECRET),
        slack=SlackConfig(signing_secret=SLACK_SECRET, bot_token="xoxb-1", api_base=DEAD),
        telegram=TelegramConfig(secret_token=TELEGRAM_SECRET, bot_token="1:a", api_base=DEAD),
        feishu=FeishuConfig(
            verification_token=VTOKEN,
            encrypt_key=ENCRYPT_KEY,
            app_id="a",
            app_secret="s",
            api_base=DEAD,
        ),
        retries=0,
    )
    settings: Settings = module_settings(tmp_path_factory)
    app = create_app(
        roomy(settings.model_copy(update={"channels": channels})), encoder=HashingEncoder()
    )
    with TestClient(app) as client:
        yield client


def signed_post(
    client: TestClient,
    body: dict[str, Any],
    *,
    at: float | None = None,
    secret: str = WEBHOOK_SECRET,
) -> httpx.Response:
    raw = json.dumps(body).encode()
    ts = str(int(at if at is not None else time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-Autoreply-Timestamp": ts,
        "X-Autoreply-Signature": sign_request(raw, secret, ts),
    }
    return client.post("/v1/messages", content=raw, headers=headers)


def test_every_refusal_names_its_reason(guarded: TestClient) -> None:
    """401s carry a specific type per failure, not ``http``."""

    def kind(response: httpx.Response) -> str:
        assert response.status_code == 401, response.text
        found: str = response.json()["error"]["type"]
        return found

    hi = {"text": "hi", "user_id": "x"}
    assert kind(guarded.post("/v1/messages", json=hi)) == "missing_signature"
    assert kind(signed_post(guarded, hi, secret="wrong")) == "bad_signature"
    assert kind(signed_post(guarded, hi, at=time.time() - 3600)) == "stale_timestamp"
    slack = "/channels/slack/events"
    assert kind(guarded.post(slack, json=slack_event())) == "missing_signature"
    forged = slack_signed(slack_event())
    forged["headers"]["X-Slack-Signature"] = "v0=" + "0" * 64
    assert kind(guarded.post(slack, **forged)) == "bad_signature"
    assert kind(guarded.post(slack, **slack_signed(slack_event(), at=time.time() - 3600))) == (
        "stale_timestamp"
    )
    telegram = "/channels/telegram/webhook"
    assert kind(guarded.post(telegram, json={"update_id": 1})) == "missing_token"
    wrong = {"X-Telegram-Bot-Api-Secret-Token": "nope"}
    assert kind(guarded.post(telegram, json={"update_id": 1}, headers=wrong)) == "bad_token"
    feishu = "/channels/feishu/events"
    unsigned = encrypted_request(receive(), sign=False)
    assert kind(guarded.post(feishu, **unsigned)) == "missing_signature"


def test_a_signed_webhook_may_claim_vip_and_an_unsigned_one_is_refused(
    guarded: TestClient,
) -> None:
    """With the secret set, a signed request's VIP, priority and identity count; the same
    request unsigned never reaches the bot."""
    body = {"text": HUMAN, "user_id": "vip-signed", "metadata": {"vip": True, "name": "Wang"}}
    reply = signed_post(guarded, body)
    assert reply.status_code == 200, reply.text
    ticket = state(guarded).bot.store.get_ticket(reply.json()["ticket_id"])
    assert ticket.vip and ticket.priority.value == "high"
    assert ticket.context["metadata"]["name"] == "Wang"
    urgent = signed_post(guarded, {**body, "user_id": "v3", "metadata": {"priority": "urgent"}})
    assert state(guarded).bot.store.get_ticket(urgent.json()["ticket_id"]).priority == "urgent"
    assert guarded.post("/v1/messages", json={**body, "user_id": "v2"}).status_code == 401
    assert state(guarded).bot.store.history("api:v2") == []


def test_a_signed_backend_rates_only_api_conversations(guarded: TestClient) -> None:
    """CSAT through a signed request: the webhook's key rates a resolved ticket of an api
    conversation, and opens nothing on another channel (the same 404 as an unknown one)."""
    ann = agent(guarded, "ann-csat")
    reply = signed_post(guarded, {"text": HUMAN, "user_id": "rate-signed"}).json()
    ticket_id = reply["ticket_id"]
    guarded.post(f"/v1/tickets/{ticket_id}/claim", headers=ann)
    guarded.post(f"/v1/tickets/{ticket_id}/resolve", headers=ann)

    def rate(conversation_id: str) -> httpx.Response:
        raw = json.dumps({"conversation_id": conversation_id, "rating": 4}).encode()
        ts = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Autoreply-Timestamp": ts,
            "X-Autoreply-Signature": sign_request(raw, WEBHOOK_SECRET, ts),
        }
        return guarded.post("/v1/csat", content=raw, headers=headers)

    assert rate(reply["conversation_id"]).status_code == 201
    assert state(guarded).bot.store.ratings_of([ticket_id])[ticket_id].rating == 4
    assert rate("telegram:12345").status_code == 404
    unsigned = guarded.post(
        "/v1/csat", json={"conversation_id": reply["conversation_id"], "rating": 5}
    )
    assert unsigned.status_code == 401
