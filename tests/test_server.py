"""The HTTP service, customer side and operations: messages, conversations, feedback, limits,
errors, health, metrics, request ids and logs. TestClient on the small FAQ with the
HashingEncoder. Shared helpers for the other ``test_server_*`` files live here too."""

from __future__ import annotations

import asyncio
import json
import re
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import httpx
import pytest
from conftest import ALWAYS_OPEN, write_small_faq
from fastapi import FastAPI
from fastapi.testclient import TestClient

from autoreply.app import create_app
from autoreply.encoder import Encoder, HashingEncoder
from autoreply.models import Message, Reply
from autoreply.settings import ServerConfig, Settings
from autoreply.store import AgentRole, new_token, open_store
from autoreply.web.state import ServiceState

HUMAN = "I want to talk to a human"

# -- helpers shared by the test_server_* files ------------------------------------------------


def roomy(settings: Settings, **server: Any) -> Settings:
    """Settings whose rate limits never get in the way, unless ``server`` says otherwise."""
    limits = {"rate_per_user": 1000.0, "burst_per_user": 1000, "rate_per_ip": 1000.0}
    limits |= {"burst_per_ip": 10_000, **server}
    return settings.model_copy(update={"server": ServerConfig(**limits)})


@contextmanager
def served(
    settings: Settings, *, encoder: Encoder | None = None, **server: Any
) -> Iterator[TestClient]:
    app = create_app(roomy(settings, **server), encoder=encoder or HashingEncoder())
    with TestClient(app) as client:
        yield client


def state(client: TestClient) -> ServiceState:
    app: FastAPI = client.app  # type: ignore[assignment]
    service: ServiceState = app.state.service
    return service


def agent(
    client: TestClient,
    name: str,
    role: AgentRole = AgentRole.AGENT,
    *,
    expires_at: datetime | None = None,
) -> dict[str, str]:
    """Create an agent in the app's store; its Authorization header."""
    token = new_token()
    state(client).bot.store.add_agent(name, role=role, token=token, expires_at=expires_at)
    return {"Authorization": f"Bearer {token}"}


_TOKENS: weakref.WeakKeyDictionary[TestClient, dict[str, str]] = weakref.WeakKeyDictionary()


def conversation_of(fields: dict[str, Any]) -> str:
    """The stored id of a ``POST /v1/messages`` conversation (the ``api`` namespace)."""
    name = fields.get("conversation_id") or f"{fields.get('channel', 'api')}:" + str(
        fields.get("user_id", "anonymous")
    )
    return name if name.startswith("api:") else f"api:{name}"


def token_for(client: TestClient, conversation_id: str) -> dict[str, str]:
    """The X-Conversation-Token header for a conversation ``send`` started on ``client``."""
    token = _TOKENS.get(client, {}).get(conversation_id)
    return {"X-Conversation-Token": token} if token else {}


def send(client: TestClient, text: str, **fields: Any) -> dict[str, Any]:
    """POST a customer message as its web widget would: keeping the conversation token the
    first reply returned and sending it with the next messages."""
    headers = token_for(client, conversation_of(fields))
    response = client.post("/v1/messages", json={"text": text, **fields}, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    if body.get("conversation_token"):
        _TOKENS.setdefault(client, {})[body["conversation_id"]] = body["conversation_token"]
    return body


def escalate(client: TestClient, user: str = "u1", **fields: Any) -> int:
    """A customer asks for a person; the new ticket's id."""
    reply = send(client, HUMAN, user_id=user, **fields)
    assert reply["decision"] == "escalate"
    ticket_id: int = reply["ticket_id"]
    return ticket_id


def error(response: httpx.Response, status: int, type_: str) -> dict[str, Any]:
    """The error body, after checking status and error type."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()["error"]
    assert body["type"] == type_
    return body


async def concurrently(app: FastAPI, requests: Sequence[dict[str, Any]]) -> list[httpx.Response]:
    """POST the bodies to /v1/messages all at once, inside the app's lifespan."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await asyncio.gather(*(client.post("/v1/messages", json=r) for r in requests))


def module_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings on a fresh copy of the small FAQ, for a module-scoped app."""
    tmp = tmp_path_factory.mktemp("server")
    return Settings(
        knowledge=write_small_faq(tmp / "knowledge"),
        db=str(tmp / "bot.db"),
        cache_dir=tmp / "cache",
        hours=ALWAYS_OPEN,
    )


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
"""Module-fixture params for suites that run on both stores (``backend_settings``)."""


@contextmanager
def backend_settings(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Settings]:
    """``module_settings`` on the store ``request.param`` names: a fresh database on the
    session's PostgreSQL cluster (dropped afterwards) for ``"postgres"``."""
    settings = module_settings(tmp_path_factory)
    if request.param != "postgres":
        yield settings
        return
    cluster = request.getfixturevalue("pg_cluster")
    database = cluster.new_database()
    try:
        yield settings.model_copy(update={"db": cluster.url(database)})
    finally:
        cluster.drop_database(database)


def arrive(client: TestClient, message: Message) -> Reply:
    """A message through its channel's own (verified) route, as the adapter hands it to
    the app: ``POST /v1/messages`` can no longer speak for another channel."""
    reply: Reply = client.portal.call(state(client).handle, message)  # type: ignore[union-attr]
    return reply


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """One app for the module (starting one costs a knowledge load): tests use their own
    user ids. Tests that count or break things use ``fresh``."""
    with served(module_settings(tmp_path_factory)) as c:
        yield c


@pytest.fixture
def fresh(settings: Settings) -> Iterator[TestClient]:
    with served(settings) as c:
        yield c


# -- customer side ------------------------------------------------------------------------------


def test_message_is_answered(client: TestClient) -> None:
    """A known question gets the FAQ answer with its entry, confidence and ids."""
    reply = send(client, "如何退款", user_id="answered", message_id="m-answered")
    assert reply["decision"] == "answer"
    assert reply["entry_id"] == "refund"
    assert reply["conversation_id"] == "api:answered"
    assert reply["message_id"] and not reply["duplicate"]


def test_repeated_message_id_returns_the_first_reply(client: TestClient) -> None:
    """The same (channel, message_id) again: the first reply, duplicate, stored once."""
    first = send(client, "如何退款", user_id="rep", message_id="m-rep")
    again = send(client, "如何退款", user_id="rep", message_id="m-rep")
    assert again["duplicate"] and again["message_id"] == first["message_id"]
    assert again["text"] == first["text"]
    assert len(state(client).bot.store.history("api:rep")) == 2
    other_channel = send(client, "如何退款", user_id="rep", message_id="m-rep", channel="web")
    assert not other_channel["duplicate"]


def test_concurrent_duplicates_are_handled_once(settings: Settings) -> None:
    """Ten copies of one message at the same moment: one answer stored, nine duplicates."""
    app = create_app(roomy(settings), encoder=HashingEncoder())
    body = {"text": HUMAN, "user_id": "u1", "message_id": "same"}
    responses = asyncio.run(concurrently(app, [body] * 10))
    replies = [r.json() for r in responses]
    assert all(r.status_code == 200 for r in responses)
    assert sum(not r["duplicate"] for r in replies) == 1
    assert len({r["message_id"] for r in replies}) == 1
    assert len({r["ticket_id"] for r in replies}) == 1
    store = open_store(settings.db)
    try:
        assert [m.role.value for m in store.history("api:u1")] == ["customer", "bot"]
    finally:
        store.close()


def test_conversation_shows_history_and_polls_with_after(client: TestClient) -> None:
    """History oldest first; ``after`` returns only newer messages; unknown ids are 404."""
    first = send(client, "如何退款", user_id="poll")
    send(client, "怎么修改密码？", user_id="poll")
    token = token_for(client, "api:poll")
    messages = client.get("/v1/conversations/api:poll", headers=token).json()["messages"]
    assert [m["role"] for m in messages] == ["customer", "bot", "customer", "bot"]
    newer = client.get(
        "/v1/conversations/api:poll", params={"after": first["message_id"]}, headers=token
    )
    assert [m["role"] for m in newer.json()["messages"]] == ["customer", "bot"]
    body = error(client.get("/v1/conversations/nobody", headers=token), 404, "not_found")
    assert "no conversation 'nobody'" in body["message"]


def test_feedback_on_a_bot_answer(client: TestClient) -> None:
    """Feedback is stored on the bot's reply; on anything else it is 404."""
    reply = send(client, "如何退款", user_id="fb")
    response = client.post(
        "/v1/feedback",
        json={"message_id": reply["message_id"], "helpful": False, "comment": "?"},
        headers=token_for(client, "api:fb"),
    )
    assert response.status_code == 201
    assert response.json()["helpful"] is False
    assert response.json()["message_id"] == reply["message_id"]
    token = token_for(client, "api:fb")
    missing = client.post("/v1/feedback", json={"message_id": 999, "helpful": True}, headers=token)
    error(missing, 404, "not_found")
    error(client.post("/v1/feedback", json={"message_id": "x", "helpful": 1.5}), 422, "invalid")


# -- malformed and oversized requests ------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"{bad", "not valid JSON at character 1"),
        (b"", "body is empty"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"txt": "hi"}', "text: Field required"),
        (b'{"text": 5}', "text: Input should be a valid string"),
    ],
)
def test_malformed_bodies_get_clear_422s(client: TestClient, content: bytes, problem: str) -> None:
    """Bad JSON or fields: 422 ``invalid`` saying what is wrong and where."""
    response = client.post(
        "/v1/messages", content=content, headers={"Content-Type": "application/json"}
    )
    body = error(response, 422, "invalid")
    assert problem in body["message"]
    assert body["errors"]


def test_text_longer_than_the_cap_is_422(settings: Settings) -> None:
    """max_text_chars is enforced with the limit in the message."""
    with served(settings, max_text_chars=10) as client:
        body = error(client.post("/v1/messages", json={"text": "x" * 11}), 422, "invalid")
        assert "limit is 10 (server.max_text_chars)" in body["message"]
        assert send(client, "x" * 10)["decision"]


def test_oversized_bodies_are_413(settings: Settings) -> None:
    """A declared or a streamed (chunked) body over max_body_bytes is refused with 413."""
    with served(settings, max_body_bytes=2048) as client:
        big = json.dumps({"text": "x" * 3000})
        body = error(
            client.post("/v1/messages", content=big, headers={"Content-Type": "application/json"}),
            413,
            "too_large",
        )
        assert "limit is 2048" in body["message"]

        def chunks() -> Iterator[bytes]:
            yield big[:1000].encode()
            yield big[1000:].encode()

        streamed = client.post(
            "/v1/messages", content=chunks(), headers={"Content-Type": "application/json"}
        )
        error(streamed, 413, "too_large")
        small = client.post("/v1/messages", content=json.dumps({"text": "如何退款"}).encode())
        assert "Content-Type: application/json" in error(small, 422, "invalid")["message"]
        assert client.post("/v1/messages", json={"text": "如何退款"}).status_code == 200


# -- rate limits ----------------------------------------------------------------------------------


def test_per_user_rate_limit_is_429_with_retry_after(settings: Settings) -> None:
    """A user past their burst gets 429 with Retry-After; another user is unaffected."""
    with served(settings, rate_per_user=0.01, burst_per_user=2) as client:
        send(client, "hi", user_id="u1")
        send(client, "hi", user_id="u1")
        response = client.post(
            "/v1/messages",
            json={"text": "hi", "user_id": "u1"},
            headers=token_for(client, "api:u1"),
        )
        body = error(response, 429, "rate_limited")
        assert int(response.headers["Retry-After"]) >= 1
        assert "user api:u1" in body["message"]
        send(client, "hi", user_id="u2")
        metrics = client.get("/metrics").text
        assert 'autoreply_rate_limited_total{scope="user"} 1.0' in metrics


def test_per_ip_rate_limit_spares_health_checks(settings: Settings) -> None:
    """One IP past its burst gets 429; /healthz, /readyz and /metrics are never limited."""
    with served(settings, rate_per_ip=0.01, burst_per_ip=3) as client:
        for i in range(3):
            send(client, "hi", user_id=f"u{i}")
        response = client.post("/v1/messages", json={"text": "hi", "user_id": "u9"})
        error(response, 429, "rate_limited")
        assert response.headers["Retry-After"].isdigit()
        for _ in range(5):
            assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200


# -- operations -----------------------------------------------------------------------------------


def test_health_and_readiness(fresh: TestClient) -> None:
    """healthz is up; readyz checks the index and the database, 503 when one fails."""
    assert fresh.get("/healthz").json() == {"status": "ok", "checks": {}}
    ready = fresh.get("/readyz").json()
    assert ready["status"] == "ready"
    assert ready["checks"]["database"] == "ok"
    state(fresh).bot.store.close()
    response = fresh.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"].startswith("unreachable")


def test_metrics_count_requests_decisions_and_escalations(fresh: TestClient) -> None:
    """Prometheus text with requests by route, decisions, escalations, batches, queue depth."""
    send(fresh, "如何退款", user_id="u1")
    escalate(fresh, user="u2")
    text = fresh.get("/metrics").text
    assert 'autoreply_requests_total{method="POST",route="/v1/messages",status="200"} 2.0' in text
    assert 'autoreply_decisions_total{action="answer"} 1.0' in text
    assert 'autoreply_escalations_total{reason="asked_for_human"} 1.0' in text
    assert 'autoreply_queue_depth{status="open"} 1.0' in text
    assert "autoreply_batch_size_count 2.0" in text
    assert 'autoreply_request_seconds_bucket{le="10.0",route="/v1/messages"} 2.0' in text


def test_each_app_has_its_own_metrics(settings: Settings) -> None:
    """Two apps in one process do not share counters."""
    with served(settings) as one:
        send(one, "如何退款")
    with served(settings) as two:
        assert 'route="/v1/messages"' not in two.get("/metrics").text


def test_request_id_is_echoed_and_logged(client: TestClient, capsys: Any) -> None:
    """A sane X-Request-ID is kept, a bad one replaced; the JSON log line carries it."""
    capsys.readouterr()
    response = client.post(
        "/v1/messages", json={"text": "如何退款"}, headers={"X-Request-ID": "r-1"}
    )
    assert response.headers["X-Request-ID"] == "r-1"
    odd = client.get("/healthz", headers={"X-Request-ID": "bad id!"})
    assert odd.headers["X-Request-ID"] != "bad id!" and len(odd.headers["X-Request-ID"]) == 32
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    request = [e for e in lines if e["event"] == "request" and e.get("request_id") == "r-1"]
    assert request and request[0]["route"] == "/v1/messages" and request[0]["status"] == 200
    assert any(e["event"] == "reply" and e.get("request_id") == "r-1" for e in lines)


def test_openapi_documents_the_handoff_payload(client: TestClient) -> None:
    """/docs is served; the schema has every route and the HandoffPayload model."""
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    for path in ("/v1/messages", "/v1/tickets/{ticket_id}", "/v1/admin/knowledge", "/readyz"):
        assert path in schema["paths"]
    handoff = schema["components"]["schemas"]["HandoffPayload"]
    assert {"question", "messages", "attempts", "candidates", "reason"} <= set(
        handoff["properties"]
    )


def test_docs_pages_load_nothing_from_elsewhere(client: TestClient) -> None:
    """/docs and /redoc name only this server's files, which are served (offline use); no
    other file of the docs folder is reachable."""
    for page in ("/docs", "/redoc"):
        response = client.get(page)
        html = response.text
        assert "img-src 'self' data:" in response.headers["content-security-policy"]
        assert "http://" not in html and "https://" not in html, page
        for url in re.findall(r'(?:src|href)="(/[^"]+)"', html) + re.findall(
            r"url: '(/[^']+)'", html
        ):
            assert client.get(url).status_code == 200, url
    assert (
        client.get("/docs/static/swagger-ui-bundle.js")
        .headers["content-type"]
        .startswith("text/javascript")
    )
    assert client.get("/docs/static/__init__.py").status_code == 404
    assert client.get("/docs/static/..%2Fcore.py").status_code == 404


def test_unknown_routes_use_the_error_shape(client: TestClient) -> None:
    """404 and 405 from routing are JSON errors too."""
    error(client.get("/nope"), 404, "http")
    error(client.get("/v1/messages"), 405, "http")


def test_escalation_reads_the_ticket_back_only_for_channels_that_announce_it(
    fresh: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The generic webhook tells no platform about new tickets, so the hot path does not
    fetch the ticket for a handoff notice nobody sends."""
    store = state(fresh).bot.store
    reads: list[int] = []
    original = store.get_ticket

    def counting(ticket_id: int) -> Any:
        reads.append(ticket_id)
        return original(ticket_id)

    monkeypatch.setattr(store, "get_ticket", counting)
    ticket_id = escalate(fresh, user="quiet")
    assert state(fresh).channels.announces_handoff("api") is False
    assert reads == []
    assert original(ticket_id).status.value == "open"
