"""Authentication and authorization, as a matrix over the app's own routes.

Every route is walked from ``app.routes`` and classified: public (listed by name), bearer
token (``/v1/tickets``, ``/v1/insights``: any agent; ``/v1/admin``: admins), console session
(``/console``) or chat channel (``/channels/``, its platform's signature). A route nobody
classified fails the suite, so a new route cannot ship without deciding who may call it.
Every token route refuses a missing, unknown, malformed, expired and disabled token with 401,
and an agent token on an admin route with 403; every ticket action refuses an agent who does
not own the ticket; every channel route refuses a forged request with 401, and replayed
requests (old timestamps, redeliveries, stale callbacks) are refused or answered once.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from test_channels_chatwoot import TOKEN as CHATWOOT_TOKEN
from test_channels_chatwoot import created as chatwoot_message
from test_channels_dingtalk import SECRET as DINGTALK_SECRET
from test_channels_dingtalk import body as dingtalk_body
from test_channels_dingtalk import headers as dingtalk_headers
from test_channels_feishu import ENCRYPT_KEY, VTOKEN, encrypted_request, receive
from test_channels_slack import SECRET as SLACK_SECRET
from test_channels_slack import event as slack_event
from test_channels_slack import signed as slack_signed
from test_channels_telegram import update as telegram_update
from test_channels_wecom import AES_KEY, CORP, inbound, reference_encrypt, reference_signature
from test_channels_wecom import TOKEN as WECOM_TOKEN
from test_server import HUMAN, agent, error, module_settings, roomy, state

from autoreply.app import create_app
from autoreply.channels import generic
from autoreply.channels.config import (
    ChannelsConfig,
    ChatwootConfig,
    DingTalkConfig,
    FeishuConfig,
    GenericConfig,
    SlackConfig,
    TelegramConfig,
    WeComConfig,
)
from autoreply.channels.generic import SIGNATURE_HEADER, verify_callback_signature
from autoreply.encoder import HashingEncoder
from autoreply.models import Role
from autoreply.settings import Settings
from autoreply.store import AgentRole

PUBLIC = {
    ("POST", "/v1/messages"): "the customer webhook (its own namespace; tests/test_attacks.py)",
    ("GET", "/v1/conversations/{conversation_id:path}"): "conversation token (test_attacks)",
    ("POST", "/v1/feedback"): "conversation token (test_attacks)",
    ("GET", "/healthz"): "load balancer",
    ("GET", "/readyz"): "load balancer",
    ("GET", "/metrics"): "Prometheus",
    ("GET", "/openapi.json"): "API docs",
    ("GET", "/docs"): "API docs",
    ("GET", "/docs/oauth2-redirect"): "API docs",
    ("GET", "/redoc"): "API docs",
    ("GET", "/console"): "redirects to the inbox or sign-in",
    ("GET", "/console/"): "redirects to the inbox or sign-in",
    ("GET", "/console/signin"): "the sign-in form",
    ("POST", "/console/signin"): "signing in (CSRF-checked)",
    ("POST", "/console/signout"): "signing out",
    ("GET", "/console/static/{name}"): "CSS and JS",
}
AGENT_PREFIXES = ("/v1/tickets", "/v1/insights")
ADMIN_PREFIXES = ("/v1/admin",)
CONSOLE_PREFIX = "/console"
CHANNEL_PREFIX = "/channels/"
TELEGRAM_SECRET = "tg-secret-token"
CALLBACK_SECRET = "callback-secret"
DEAD = "http://127.0.0.1:9"  # platform APIs: refused at once (the replies are not the point)


def routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path template) the app serves, HEAD aside, included routers walked."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI copies included routes into app.routes
        contexts: list[Any] = list(app.routes)
    else:
        contexts = list(iter_route_contexts(app.routes))
    found = {
        (method, route.path)
        for route in contexts
        if getattr(route, "methods", None) and route.path
        for method in route.methods
        if method != "HEAD"
    }
    return sorted(found, key=lambda r: (r[1], r[0]))


def access(method: str, path: str) -> str:
    """Who may call a route: public, agent, admin, console or channel."""
    if (method, path) in PUBLIC:
        return "public"
    if path.startswith(ADMIN_PREFIXES):
        return "admin"
    if path.startswith(AGENT_PREFIXES):
        return "agent"
    if path.startswith(CONSOLE_PREFIX):
        return "console"
    if path.startswith(CHANNEL_PREFIX):
        return "channel"
    return "unclassified"


def concrete(path: str) -> str:
    """A path template with its parameters filled in (ids 1, paths 'x')."""
    return re.sub(r"\{[^}:]+(:path)?\}", lambda m: "x" if m.group(1) else "1", path)


# The app without its lifespan: the routes exist from create_app() on (channels aside).
API_ROUTES = routes(create_app(Settings(db="sqlite://:memory:"), knowledge_poll_seconds=None))
TOKEN_ROUTES = [r for r in API_ROUTES if access(*r) in ("agent", "admin")]
ADMIN_ROUTES = [r for r in TOKEN_ROUTES if access(*r) == "admin"]
CONSOLE_ROUTES = [r for r in API_ROUTES if access(*r) == "console"]


def route_id(route: tuple[str, str]) -> str:
    return f"{route[0]} {route[1]}"


CHANNELS = ChannelsConfig(
    slack=SlackConfig(signing_secret=SLACK_SECRET, bot_token="xoxb-1", api_base=DEAD),
    telegram=TelegramConfig(secret_token=TELEGRAM_SECRET, bot_token="1:abc", api_base=DEAD),
    wecom=WeComConfig(token=WECOM_TOKEN, encoding_aes_key=AES_KEY, corp_id=CORP, api_base=DEAD),
    dingtalk=DingTalkConfig(app_secret=DINGTALK_SECRET, api_base=DEAD),
    feishu=FeishuConfig(
        verification_token=VTOKEN,
        encrypt_key=ENCRYPT_KEY,
        app_id="cli_a1",
        app_secret="s",
        api_base=DEAD,
    ),
    chatwoot=ChatwootConfig(base_url=DEAD, api_token="t", webhook_token=CHATWOOT_TOKEN),
    generic=GenericConfig(
        callback_url="http://callback.test/hook", callback_secret=CALLBACK_SECRET
    ),
    retries=0,
    timeout_seconds=1,
    backoff_seconds=0,
)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """One app with every channel enabled; tokens for each kind of caller in ``tokens``."""
    settings = module_settings(tmp_path_factory).model_copy(update={"channels": CHANNELS})
    with TestClient(create_app(roomy(settings), encoder=HashingEncoder())) as c:
        yield c


@pytest.fixture(scope="module")
def tokens(client: TestClient) -> dict[str, dict[str, str]]:
    past = datetime.now(UTC) - timedelta(minutes=1)
    headers = {
        "agent": agent(client, "alice"),
        "other": agent(client, "bob"),
        "admin": agent(client, "root", AgentRole.ADMIN),
        "expired": agent(client, "old", expires_at=past),
        "disabled": agent(client, "gone"),
        "expired-admin": agent(client, "old-root", AgentRole.ADMIN, expires_at=past),
        "disabled-admin": agent(client, "gone-root", AgentRole.ADMIN),
    }
    state(client).bot.store.disable_agent("gone")
    state(client).bot.store.disable_agent("gone-root")
    return headers


pytestmark = pytest.mark.usefixtures("restore_autoreply_logging")


# -- every route is classified --------------------------------------------------------------------


def test_every_route_is_classified(client: TestClient) -> None:
    """Each route the running app serves (channels included) is public by name, or behind a
    token, a console session or a channel signature; the matrix size is printed."""
    served = routes(client.app)  # type: ignore[arg-type]
    kinds = {route: access(*route) for route in served}
    unclassified = [route_id(r) for r, kind in kinds.items() if kind == "unclassified"]
    assert not unclassified, f"decide who may call these routes (see PUBLIC): {unclassified}"
    assert set(PUBLIC) <= set(served), "PUBLIC names a route that no longer exists"
    count = {k: sum(v == k for v in kinds.values()) for k in sorted(set(kinds.values()))}
    print(
        f"\nroutes: {count}; token matrix {len(TOKEN_ROUTES)} routes x {len(BAD_TOKENS)} bad "
        f"tokens + {len(ADMIN_ROUTES)} admin routes x 1 agent token + {len(CONSOLE_ROUTES)} "
        f"console routes x 3 + {count.get('channel', 0)} channel routes forged"
    )
    assert TOKEN_ROUTES and ADMIN_ROUTES and CONSOLE_ROUTES


# -- bearer tokens --------------------------------------------------------------------------------

BAD_TOKENS: dict[str, tuple[Callable[[dict[str, dict[str, str]]], dict[str, str]], str]] = {
    "missing": (lambda t: {}, "missing bearer token"),
    "empty": (lambda t: {"Authorization": "Bearer "}, "missing bearer token"),
    "unknown": (lambda t: {"Authorization": "Bearer ar_" + "0" * 43}, "unknown token"),
    "garbage": (lambda t: {"Authorization": "Bearer ' OR 1=1 --"}, "unknown token"),
    "basic-scheme": (lambda t: {"Authorization": "Basic cm9vdDpyb290"}, "missing bearer token"),
    "token-without-scheme": (
        lambda t: {"Authorization": t["admin"]["Authorization"].removeprefix("Bearer ")},
        "missing bearer token",
    ),
    "expired": (lambda t: t["expired"], "expired"),
    "disabled": (lambda t: t["disabled"], "is disabled"),
    "expired-admin": (lambda t: t["expired-admin"], "expired"),
    "disabled-admin": (lambda t: t["disabled-admin"], "is disabled"),
}


@pytest.mark.parametrize("bad", list(BAD_TOKENS))
@pytest.mark.parametrize("route", TOKEN_ROUTES, ids=route_id)
def test_bad_tokens_are_refused_with_401(
    client: TestClient, tokens: dict[str, dict[str, str]], route: tuple[str, str], bad: str
) -> None:
    """401 ``unauthorized`` saying what is wrong, with ``WWW-Authenticate: Bearer``; the
    route does nothing (no body is even read)."""
    headers, says = BAD_TOKENS[bad]
    method, path = route
    before = state(client).bot.store.counts()
    response = client.request(method, concrete(path), headers=headers(tokens))
    body = error(response, 401, "unauthorized")
    assert says in body["message"]
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert state(client).bot.store.counts() == before


@pytest.mark.parametrize("route", ADMIN_ROUTES, ids=route_id)
def test_agent_token_on_admin_routes_is_403(
    client: TestClient, tokens: dict[str, dict[str, str]], route: tuple[str, str]
) -> None:
    """An agent's valid token on an admin route: 403 ``forbidden`` naming the role."""
    method, path = route
    response = client.request(method, concrete(path), headers=tokens["agent"])
    assert "role 'agent'" in error(response, 403, "forbidden")["message"]


GOOD_TOKEN_CASES = [
    pytest.param(route, who, id=f"{route_id(route)}-{who}")
    for route in TOKEN_ROUTES
    for who in ("agent", "admin")
    if not (who == "agent" and access(*route) == "admin")  # that is the 403 above
]


@pytest.mark.parametrize(("route", "who"), GOOD_TOKEN_CASES)
def test_good_tokens_get_past_authentication(
    client: TestClient, tokens: dict[str, dict[str, str]], route: tuple[str, str], who: str
) -> None:
    """The other side of the matrix: a valid token is never 401, and it is 403 only for an
    agent on an admin route (so the refusals above are about the token, not the route)."""
    method, path = route
    response = client.request(method, concrete(path), headers=tokens[who])
    assert response.status_code not in (401, 403), response.text


# -- ticket ownership -----------------------------------------------------------------------------

CONFLICT, NOT_OWNED = (409, "conflict"), (403, "not_owner")
NOT_OWNER: dict[str, tuple[dict[str, Any] | None, tuple[int, str], tuple[int, str]]] = {
    # action: (body, what another agent gets on a claimed ticket, ... on a resolved one).
    # The ticket's state is checked first: claiming a claimed ticket and promoting an
    # unresolved one are conflicts for everyone; on a resolved ticket only promote is left.
    "claim": (None, CONFLICT, CONFLICT),
    "reply": ({"text": "I'll take it from here"}, NOT_OWNED, CONFLICT),
    "transfer": ({"to": "bob"}, NOT_OWNED, CONFLICT),
    "resolve": ({"resolution": "closed by bob"}, NOT_OWNED, CONFLICT),
    "promote": ({"question": "q?", "answer": "a"}, CONFLICT, NOT_OWNED),
}
TICKET_ACTIONS = [
    path.rsplit("/", 1)[1]
    for method, path in API_ROUTES
    if method == "POST" and path.startswith("/v1/tickets/{ticket_id}/")
]


def test_every_ticket_action_has_an_ownership_rule() -> None:
    """A new POST /v1/tickets/{id}/ACTION must say what a non-owner gets."""
    assert sorted(TICKET_ACTIONS) == sorted(NOT_OWNER)


@pytest.mark.parametrize("resolved", [False, True], ids=["claimed", "resolved"])
@pytest.mark.parametrize("action", sorted(NOT_OWNER))
def test_agents_cannot_act_on_tickets_they_do_not_own(
    client: TestClient, tokens: dict[str, dict[str, str]], action: str, resolved: bool
) -> None:
    """Alice owns the ticket (claimed, or resolved by her): Bob's action is refused and
    changes nothing: owner, status, conversation and FAQ candidates stay as they were."""
    store = state(client).bot.store
    reply = client.post("/v1/messages", json={"text": HUMAN, "user_id": f"own-{action}-{resolved}"})
    ticket_id = reply.json()["ticket_id"]
    alice, bob = tokens["agent"], tokens["other"]
    assert client.post(f"/v1/tickets/{ticket_id}/claim", headers=alice).status_code == 200
    if resolved:
        done = client.post(f"/v1/tickets/{ticket_id}/resolve", headers=alice, json={})
        assert done.status_code == 200, done.text
    before = store.get_ticket(ticket_id)
    messages = len(store.history(before.conversation_id))
    candidates = len(store.list_candidates(status=None))
    body, on_claimed, on_resolved = NOT_OWNER[action]
    status, type_ = on_resolved if resolved else on_claimed
    response = client.post(f"/v1/tickets/{ticket_id}/{action}", headers=bob, json=body)
    message = error(response, status, type_)["message"]
    assert "alice" in message or "resolve" in message or "claimed" in message
    after = store.get_ticket(ticket_id)
    assert after.owner == before.owner == "alice" and after.status == before.status
    assert len(store.history(before.conversation_id)) == messages
    assert len(store.list_candidates(status=None)) == candidates


# -- console sessions -----------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["no-cookie", "forged-cookie", "fetch"])
@pytest.mark.parametrize("route", CONSOLE_ROUTES, ids=route_id)
def test_console_pages_need_a_session(client: TestClient, route: tuple[str, str], how: str) -> None:
    """Without a signed-in session (none, or a made-up cookie) a console page redirects to
    the sign-in page; the console's fetch calls get 401 instead."""
    method, path = route
    accept = {"Accept": "application/json"} if how == "fetch" else {}
    client.cookies.clear()
    if how == "forged-cookie":
        client.cookies.set("autoreply_console", "forged-session-id", path="/console")
    try:
        response = client.request(method, concrete(path), headers=accept, follow_redirects=False)
    finally:
        client.cookies.clear()
    if how == "fetch":
        assert response.status_code == 401, response.text
    else:
        assert response.status_code == 303, response.text
        assert response.headers["location"].startswith("/console/signin?next=")


# -- chat channels: forged requests ---------------------------------------------------------------


def wecom_query(encrypted: str, *, signature: str | None = None, at: str | None = None) -> str:
    ts, nonce = at or str(int(time.time())), "1372623149"
    sig = signature or reference_signature(WECOM_TOKEN, ts, nonce, encrypted)
    return urlencode({"msg_signature": sig, "timestamp": ts, "nonce": nonce})


def wecom_body(encrypted: str) -> str:
    return f"<xml><ToUserName>{CORP}</ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"


def forged_slack(c: TestClient) -> httpx.Response:
    req = slack_signed(slack_event())
    req["content"] = req["content"].replace(b"refund", b"forged")  # changed after signing
    return c.post("/channels/slack/events", **req)


def forged_telegram(c: TestClient) -> httpx.Response:
    headers = {"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET + "x"}
    return c.post("/channels/telegram/webhook", json=telegram_update(), headers=headers)


def forged_dingtalk(c: TestClient) -> httpx.Response:
    headers = dingtalk_headers(secret="not-the-app-secret")
    return c.post("/channels/dingtalk/webhook", json=dingtalk_body(), headers=headers)


def forged_feishu(c: TestClient) -> httpx.Response:
    req = encrypted_request(receive())
    req["headers"]["X-Lark-Signature"] = "0" * 64
    return c.post("/channels/feishu/events", **req)


def forged_chatwoot(c: TestClient) -> httpx.Response:
    return c.post("/channels/chatwoot/webhook?token=guess", json=chatwoot_message())


def forged_wecom_check(c: TestClient) -> httpx.Response:
    echostr = reference_encrypt("1616140317555161061")
    query = wecom_query(echostr, signature="0" * 40)
    return c.get(f"/channels/wecom/callback?{query}&{urlencode({'echostr': echostr})}")


def forged_wecom(c: TestClient) -> httpx.Response:
    encrypted = reference_encrypt(inbound())
    query = wecom_query(encrypted, signature="f" * 40)
    return c.post(f"/channels/wecom/callback?{query}", content=wecom_body(encrypted))


FORGED: dict[tuple[str, str], Callable[[TestClient], httpx.Response]] = {
    ("POST", "/channels/slack/events"): forged_slack,
    ("POST", "/channels/telegram/webhook"): forged_telegram,
    ("POST", "/channels/dingtalk/webhook"): forged_dingtalk,
    ("POST", "/channels/feishu/events"): forged_feishu,
    ("POST", "/channels/chatwoot/webhook"): forged_chatwoot,
    ("GET", "/channels/wecom/callback"): forged_wecom_check,
    ("POST", "/channels/wecom/callback"): forged_wecom,
}


def test_every_channel_route_has_a_forgery_case(client: TestClient) -> None:
    """The mounted channel routes are exactly the ones the forgery table covers."""
    mounted = [r for r in routes(client.app) if access(*r) == "channel"]  # type: ignore[arg-type]
    assert sorted(mounted) == sorted(FORGED)


@pytest.mark.parametrize("route", sorted(FORGED), ids=route_id)
def test_forged_channel_requests_are_401_and_never_handled(
    client: TestClient, route: tuple[str, str]
) -> None:
    """A wrong signature, secret or token: 401, and nothing reaches the store."""
    before = state(client).bot.store.counts()
    response = FORGED[route](client)
    assert response.status_code == 401, response.text
    assert state(client).bot.store.counts() == before


# -- chat channels: replays -----------------------------------------------------------------------


def telegram_customer_messages(client: TestClient) -> int:
    history = state(client).bot.store.history("telegram:12345")
    return sum(m.role is Role.CUSTOMER for m in history)


@pytest.mark.parametrize(
    ("name", "replay"),
    [
        ("slack", lambda c: c.post(
            "/channels/slack/events",
            **slack_signed(slack_event(HUMAN, event_id="Ev-old"), at=time.time() - 600))),
        ("dingtalk", lambda c: c.post(
            "/channels/dingtalk/webhook", json=dingtalk_body(HUMAN),
            headers=dingtalk_headers(at_ms=int((time.time() - 7200) * 1000)))),
    ],
    ids=["slack-10-minutes-old", "dingtalk-2-hours-old"],
)  # fmt: skip
def test_correctly_signed_but_old_requests_are_401(
    client: TestClient, name: str, replay: Callable[[TestClient], httpx.Response]
) -> None:
    """A captured request sent again later (its signature still right): 401, not handled."""
    before = state(client).bot.store.counts()
    response = replay(client)
    assert response.status_code == 401, response.text
    assert "replay" in response.json()["error"]["message"]
    assert state(client).bot.store.counts() == before


@pytest.mark.parametrize("replay", ["wecom", "feishu"])
def test_signed_requests_from_yesterday_are_refused(client: TestClient, replay: str) -> None:
    """WeCom and Feishu sign the timestamp: a correct signature on a day-old request is a
    replay and is refused, like Slack's and DingTalk's."""
    yesterday = str(int(time.time()) - 86_400)
    if replay == "wecom":
        encrypted = reference_encrypt(inbound(HUMAN))
        query = wecom_query(encrypted, at=yesterday)
        response = client.post(f"/channels/wecom/callback?{query}", content=wecom_body(encrypted))
    else:
        req = encrypted_request(receive(HUMAN, event_id="ev-old", message_id="om_old"))
        req["headers"]["X-Lark-Request-Timestamp"] = yesterday
        req["headers"]["X-Lark-Signature"] = _lark_signature(yesterday, req)
        response = client.post("/channels/feishu/events", **req)
    assert response.status_code == 401, response.text


def _lark_signature(ts: str, req: dict[str, Any]) -> str:
    nonce = req["headers"]["X-Lark-Request-Nonce"]
    return hashlib.sha256((ts + nonce + ENCRYPT_KEY).encode() + req["content"]).hexdigest()


def test_a_redelivered_telegram_update_is_answered_once(client: TestClient) -> None:
    """Telegram signs nothing with a time: the secret token is checked and a redelivered
    update (same update_id) is acknowledged, not handled again."""
    headers = {"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET}
    update = telegram_update(HUMAN, update_id=777_001)
    first = client.post("/channels/telegram/webhook", json=update, headers=headers)
    assert first.status_code == 200 and first.json() == {"ok": True}
    store = state(client).bot.store
    deadline = time.monotonic() + 5
    while store.find_message(channel="telegram", external_id="777001") is None:
        assert time.monotonic() < deadline, "the update was never handled"
        time.sleep(0.02)
    count = telegram_customer_messages(client)
    again = client.post("/channels/telegram/webhook", json=update, headers=headers)
    assert again.status_code == 200 and again.json()["ignored"] == "redelivered update"
    time.sleep(0.1)
    assert telegram_customer_messages(client) == count


def test_generic_callbacks_are_signed_and_refuse_tampering_and_replays(
    client: TestClient, tokens: dict[str, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An agent reply to a /v1/messages conversation is POSTed to the callback URL, signed:
    the receiver's check passes on the exact bytes, and fails on a changed body, another
    secret, no header, or the same request replayed after ``max_age``."""
    captured: list[httpx.Request] = []

    def platform(request: httpx.Request) -> httpx.Response:
        captured.append(request)
        return httpx.Response(200, json={"ok": True})

    channel = state(client).channels.channels["generic"]
    channel.http = httpx.AsyncClient(transport=httpx.MockTransport(platform))
    ticket_id = client.post("/v1/messages", json={"text": HUMAN, "user_id": "cb"}).json()[
        "ticket_id"
    ]
    sent = client.post(
        f"/v1/tickets/{ticket_id}/reply", headers=tokens["agent"], json={"text": "on my way"}
    )
    assert sent.status_code == 201 and sent.json()["delivery"]["status"] == "sent", sent.text
    (request,) = captured
    body, header = request.content, request.headers[SIGNATURE_HEADER]
    assert verify_callback_signature(body, header, CALLBACK_SECRET, max_age=300)
    assert not verify_callback_signature(body.replace(b"on my way", b"send money"), header,
                                         CALLBACK_SECRET)  # fmt: skip
    assert not verify_callback_signature(body, header, "another-secret")
    assert not verify_callback_signature(body, None, CALLBACK_SECRET)
    later = time.time() + 301
    monkeypatch.setattr(generic, "time", SimpleNamespace(time=lambda: later))
    assert not verify_callback_signature(body, header, CALLBACK_SECRET, max_age=300)
