"""The agent API's desk routes: internal notes (never reaching a channel or the customer's
view of the conversation), tags and the tag filter, search, and bulk actions under the
ownership rules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from test_server import HUMAN, agent, error, module_settings, send, served, state, token_for
from test_server_agents import FakeChannel, arrive, eventually

from autoreply.models import Message


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, FakeChannel]]:
    with served(module_settings(tmp_path_factory)) as client:
        fake = FakeChannel()
        state(client).channels.channels["fake"] = fake  # type: ignore[assignment]
        yield client, fake


@pytest.fixture(scope="module")
def client(shop: tuple[TestClient, FakeChannel]) -> TestClient:
    return shop[0]


@pytest.fixture(scope="module")
def alice(client: TestClient) -> dict[str, str]:
    return agent(client, "alice")


@pytest.fixture(scope="module")
def bob(client: TestClient) -> dict[str, str]:
    return agent(client, "bob")


def test_notes_never_reach_the_channel_or_the_customer(
    shop: tuple[TestClient, FakeChannel], alice: dict[str, str], bob: dict[str, str]
) -> None:
    """A note is stored for agents (detail and notes route) but never sent through the
    conversation's channel, never in the customer's view of the conversation."""
    client, fake = shop
    ticket_id = arrive(
        client, Message(text=HUMAN, user_id="n-1", channel="fake", conversation_id="fake:n-1")
    ).ticket_id
    assert ticket_id is not None
    eventually(lambda: any(t.id == ticket_id for t in fake.handoffs))
    sent_before = list(fake.sent)
    note = client.post(
        f"/v1/tickets/{ticket_id}/notes", headers=bob, json={"text": "VIP, offer a voucher"}
    )
    assert note.status_code == 201 and note.json()["agent"] == "bob"
    assert fake.sent == sent_before
    assert [n["text"] for n in client.get(f"/v1/tickets/{ticket_id}/notes", headers=alice).json()]
    detail = client.get(f"/v1/tickets/{ticket_id}", headers=alice).json()
    assert detail["notes"][0]["text"] == "VIP, offer a voucher"
    assert all("voucher" not in m["text"] for m in detail["conversation"])
    error(
        client.post(f"/v1/tickets/{ticket_id}/notes", headers=bob, json={"text": ""}),
        422,
        "invalid",
    )
    error(client.post("/v1/tickets/9999/notes", headers=bob, json={"text": "x"}), 404, "not_found")
    assert client.post(f"/v1/tickets/{ticket_id}/notes", json={"text": "x"}).status_code == 401

    # the generic webhook's customer, with their own conversation token, sees no note
    api_ticket = send(client, HUMAN, user_id="n-2")["ticket_id"]
    client.post(f"/v1/tickets/{api_ticket}/notes", headers=alice, json={"text": "secret plan"})
    own = client.get("/v1/conversations/api:n-2", headers=token_for(client, "api:n-2"))
    assert own.status_code == 200 and "secret plan" not in own.text


def test_tags_filter_and_search(client: TestClient, alice: dict[str, str]) -> None:
    """Tags are added (bad ones refused naming the tag), listed, filtered on and removed;
    q finds tickets by conversation text and customer id."""
    first = send(client, "my parcel never came, talk to a human", user_id="t-1")["ticket_id"]
    second = send(client, HUMAN, user_id="t-2")["ticket_id"]
    tagged = client.post(
        f"/v1/tickets/{first}/tags", headers=alice, json={"tags": ["Shipping", "退款"]}
    )
    assert tagged.json() == {"ticket_id": first, "tags": ["shipping", "退款"]}
    bad = error(
        client.post(f"/v1/tickets/{second}/tags", headers=alice, json={"tags": ["no spaces"]}),
        422,
        "invalid",
    )
    assert "no spaces" in bad["message"]
    ids = [t["id"] for t in client.get("/v1/tickets?tag=shipping", headers=alice).json()]
    assert ids == [first]
    found = [t["id"] for t in client.get("/v1/tickets?q=PARCEL", headers=alice).json()]
    assert found == [first]
    assert [t["id"] for t in client.get("/v1/tickets?q=t-2", headers=alice).json()] == [second]
    removed = client.delete(f"/v1/tickets/{first}/tags/shipping", headers=alice)
    assert removed.json()["tags"] == ["退款"]
    assert client.get(f"/v1/tickets/{first}", headers=alice).json()["tags"] == ["退款"]


def test_bulk_actions_follow_the_ownership_rules(
    shop: tuple[TestClient, FakeChannel], alice: dict[str, str], bob: dict[str, str]
) -> None:
    """Bulk claim takes the free tickets and reports the one bob holds; bulk resolve
    resolves alice's and refuses bob's (not_owner); bulk tag tags them all; a transfer to
    nobody is 422 with nothing done."""
    client, fake = shop
    ids = [send(client, HUMAN, user_id=f"b-{i}")["ticket_id"] for i in range(3)]
    client.post(f"/v1/tickets/{ids[2]}/claim", headers=bob)
    claimed = client.post(
        "/v1/tickets/bulk", headers=alice, json={"action": "claim", "ticket_ids": ids}
    ).json()
    assert [(r["ticket_id"], r["ok"]) for r in claimed] == [
        (ids[0], True),
        (ids[1], True),
        (ids[2], False),
    ]
    assert claimed[2]["error"]["type"] == "conflict"
    tag = {"action": "tag", "ticket_ids": ids, "tags": ["batch"]}
    assert all(r["ok"] for r in client.post("/v1/tickets/bulk", headers=alice, json=tag).json())
    resolved = client.post(
        "/v1/tickets/bulk", headers=alice, json={"action": "resolve", "ticket_ids": ids}
    ).json()
    assert [r["ok"] for r in resolved] == [True, True, False]
    assert resolved[2]["error"]["type"] == "not_owner"
    store = state(client).bot.store
    assert [store.get_ticket(i).status.value for i in ids] == ["resolved", "resolved", "claimed"]
    assert store.tagged("batch") == set(ids)
    nobody = client.post(
        "/v1/tickets/bulk", headers=bob, json={"action": "transfer", "ticket_ids": [ids[2]]}
    )
    assert error(nobody, 422, "invalid")["field"] == "to"
    assert store.get_ticket(ids[2]).owner == "bob"
    error(
        client.post("/v1/tickets/bulk", headers=bob, json={"action": "x", "ticket_ids": [1]}),
        422,
        "invalid",
    )
    error(
        client.post("/v1/tickets/bulk", headers=bob, json={"action": "claim", "ticket_ids": []}),
        422,
        "invalid",
    )


def test_csat_comes_in_through_the_generic_webhook(client: TestClient, alice: dict[str, str]):
    """Only the conversation's customer (its token) rates; before resolution 409; once
    resolved 1-5 is stored (outside: 422 naming rating); a second rating 409; another
    conversation's token or an agent's token is refused."""
    reply = send(client, HUMAN, user_id="c-1")
    ticket_id, conversation = reply["ticket_id"], reply["conversation_id"]
    own = token_for(client, conversation)
    other_reply = send(client, "hello", user_id="c-2")
    stranger = token_for(client, other_reply["conversation_id"])
    body = {"conversation_id": conversation, "rating": 5}
    assert client.post("/v1/csat", json=body).status_code == 401
    error(client.post("/v1/csat", json=body, headers=alice), 401, "unauthorized")
    error(client.post("/v1/csat", json=body, headers=stranger), 404, "not_found")
    error(client.post("/v1/csat", json=body, headers=own), 409, "conflict")
    client.post(f"/v1/tickets/{ticket_id}/claim", headers=alice)
    client.post(f"/v1/tickets/{ticket_id}/resolve", headers=alice, json={})
    bad = client.post("/v1/csat", json={**body, "rating": 6}, headers=own)
    assert bad.status_code == 422 and "rating" in bad.text
    rated = client.post("/v1/csat", json={**body, "comment": "fast"}, headers=own)
    assert rated.status_code == 201, rated.text
    assert rated.json()["ticket_id"] == ticket_id and rated.json()["rating"] == 5
    error(client.post("/v1/csat", json={**body, "rating": 1}, headers=own), 409, "conflict")
    assert state(client).bot.store.ratings_of([ticket_id])[ticket_id].comment == "fast"
