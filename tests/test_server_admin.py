"""The admin API: reload (also while messages are in flight), knowledge upload with file/line
errors, FAQ candidates, stats."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml
from conftest import SMALL_FAQ
from fastapi.testclient import TestClient
from test_server import agent, error, escalate, roomy, send, served, state

from autoreply.app import create_app
from autoreply.encoder import HashingEncoder, Kind
from autoreply.settings import Settings
from autoreply.store import AgentRole

GIFT = {
    "id": "gift-cards",
    "question": "Do you sell gift cards?",
    "variants": ["gift card", "buy a gift voucher"],
    "answer": "Yes, on the Gifts page.",
    "category": "orders/gifts",
}


@pytest.fixture
def admin_client(settings: Settings) -> Iterator[tuple[TestClient, dict[str, str]]]:
    with served(settings) as client:
        yield client, agent(client, "root", AgentRole.ADMIN)


def upload(client: TestClient, headers: dict[str, str], name: str, data: bytes) -> httpx.Response:
    return client.post("/v1/admin/knowledge", headers=headers, files={"file": (name, data)})


def test_reload_picks_up_a_changed_folder(
    admin_client: tuple[TestClient, dict[str, str]], settings: Settings
) -> None:
    """Edit the FAQ folder, POST /v1/admin/reload, the new entry answers."""
    client, root = admin_client
    assert send(client, "Do you sell gift cards?")["entry_id"] != "gift-cards"
    faq = Path(settings.knowledge) / "faq.yaml"
    faq.write_text(yaml.safe_dump({"entries": [*SMALL_FAQ, GIFT]}, allow_unicode=True))
    result = client.post("/v1/admin/reload", headers=root)
    assert result.status_code == 200
    assert result.json()["entries"] == len(SMALL_FAQ) + 1
    assert send(client, "Do you sell gift cards?", user_id="u2")["entry_id"] == "gift-cards"


def test_reload_of_a_broken_folder_keeps_the_old_index(
    admin_client: tuple[TestClient, dict[str, str]], settings: Settings
) -> None:
    """A broken knowledge base is refused with file/line problems; the bot keeps answering."""
    client, root = admin_client
    (Path(settings.knowledge) / "faq.yaml").write_text("entries:\n  - id: x\n    question: q\n")
    body = error(client.post("/v1/admin/reload", headers=root), 422, "knowledge_invalid")
    assert body["problems"][0]["file"].endswith("faq.yaml")
    assert body["problems"][0]["field"] == "answer"
    assert send(client, "如何退款")["entry_id"] == "refund"


def test_upload_of_a_bad_file_returns_every_problem_with_file_and_line(
    admin_client: tuple[TestClient, dict[str, str]], settings: Settings
) -> None:
    """Validation errors come back as JSON (file, line, field); nothing is written."""
    client, root = admin_client
    bad = (
        b"- id: a\n  question: Q1\n  answer: A1\n"
        b"- id: b\n  question: Q2\n"
        b"- id: a\n  question: Q3\n  answer: A3\n"
    )
    body = error(upload(client, root, "extra.yaml", bad), 422, "knowledge_invalid")
    problems = body["problems"]
    assert {p["file"] for p in problems} == {"extra.yaml"}
    missing = next(p for p in problems if p["field"] == "answer")
    assert missing["line"] == 4 and missing["message"].startswith("extra.yaml:4:")
    assert any("a" in p["problem"] and p["line"] == 6 for p in problems if p["field"] == "id")
    assert not (Path(settings.knowledge) / "extra.yaml").exists()
    broken = error(upload(client, root, "x.json", b"{not json"), 422, "knowledge_invalid")
    assert broken["problems"][0]["file"] == "x.json" and broken["problems"][0]["line"] == 1


def test_upload_of_a_good_file_is_written_and_answers(
    admin_client: tuple[TestClient, dict[str, str]], settings: Settings
) -> None:
    """A valid file lands in the knowledge folder (no temp files left) and answers at once."""
    client, root = admin_client
    data = yaml.safe_dump([GIFT], allow_unicode=True).encode()
    response = upload(client, root, "gifts.yaml", data)
    assert response.status_code == 200, response.text
    assert response.json()["entries"] == 1 and response.json()["file"] == "gifts.yaml"
    assert response.json()["reload"]["entries"] == len(SMALL_FAQ) + 1
    folder = Path(settings.knowledge)
    assert (folder / "gifts.yaml").read_bytes() == data
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]
    assert send(client, "Do you sell gift cards?")["entry_id"] == "gift-cards"


def test_upload_that_breaks_the_whole_base_is_rolled_back(
    admin_client: tuple[TestClient, dict[str, str]], settings: Settings
) -> None:
    """A file whose id clashes with another file's: refused, and the folder is as before."""
    client, root = admin_client
    clash = yaml.safe_dump([{**GIFT, "id": "refund"}], allow_unicode=True).encode()
    body = error(upload(client, root, "clash.yaml", clash), 422, "knowledge_invalid")
    assert "refund" in body["message"]
    assert not (Path(settings.knowledge) / "clash.yaml").exists()
    assert send(client, "如何退款")["entry_id"] == "refund"


def test_upload_names_and_targets_are_checked(
    admin_client: tuple[TestClient, dict[str, str]], settings: Settings
) -> None:
    """Not an FAQ file name: 422; a service on one file (or the bundled demo) has no folder
    to write into: 409."""
    client, root = admin_client
    error(upload(client, root, "notes.txt", b"hello"), 422, "invalid")
    error(upload(client, root, ".hidden.yaml", b"[]"), 422, "invalid")
    missing = client.post("/v1/admin/knowledge", headers=root)
    error(missing, 422, "invalid")
    one_file = settings.model_copy(update={"knowledge": Path(settings.knowledge) / "faq.yaml"})
    with served(one_file) as single:
        admin = agent(single, "single-root", AgentRole.ADMIN)
        refused = error(
            upload(single, admin, "g.yaml", yaml.safe_dump([GIFT]).encode()), 409, "conflict"
        )
        assert "--knowledge FOLDER" in refused["message"]


def test_candidates_and_stats(admin_client: tuple[TestClient, dict[str, str]]) -> None:
    """Promoted answers are listed for review, accepted or dismissed; stats count it all."""
    client, root = admin_client
    alice = agent(client, "alice")
    for user in ("c1", "c2"):
        ticket_id = escalate(client, user=user)
        client.post(f"/v1/tickets/{ticket_id}/reply", headers=alice, json={"text": "Use X."})
        client.post(f"/v1/tickets/{ticket_id}/resolve", headers=alice)
        client.post(f"/v1/tickets/{ticket_id}/promote", headers=alice)
    first, second = client.get("/v1/admin/candidates", headers=root).json()
    client.post(f"/v1/admin/candidates/{first['id']}/accept", headers=root)
    dismissed = client.post(f"/v1/admin/candidates/{second['id']}/dismiss", headers=root)
    assert dismissed.json()["status"] == "dismissed"
    assert client.get("/v1/admin/candidates", headers=root).json() == []
    accepted = client.get("/v1/admin/candidates", headers=root, params={"status": "accepted"})
    assert [c["id"] for c in accepted.json()] == [first["id"]]
    error(client.post("/v1/admin/candidates/999/accept", headers=root), 404, "not_found")
    send(client, "如何退款")
    stats = client.get("/v1/admin/stats", headers=root).json()
    assert stats["counts"]["tickets_resolved"] == 2
    assert stats["decisions"]["escalate"] == 2 and stats["decisions"]["answer"] == 1
    assert stats["deliveries_failed"] == 0
    assert stats["knowledge"]["entries"] == len(SMALL_FAQ)


class GatedEncoder(HashingEncoder):
    """Query encodes wait at a gate while it is closed (index builds pass straight through)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.gate.set()
        self.waiting = threading.Event()

    def encode(self, texts: Sequence[str], *, kind: Kind = "query") -> np.ndarray:
        if kind == "query" and not self.gate.is_set():
            self.waiting.set()
            self.gate.wait(10)
        return super().encode(texts, kind=kind)


def test_reload_while_messages_are_in_flight(settings: Settings) -> None:
    """A message being answered when the reload lands finishes on the old index; the reload
    does not wait for it, and the next message uses the new index."""
    encoder = GatedEncoder()
    app = create_app(roomy(settings), encoder=encoder)
    faq = Path(settings.knowledge) / "faq.yaml"

    async def scenario() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        async with app.router.lifespan_context(app):
            root = agent_token(app)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                encoder.gate.clear()
                question = {"text": "Do you sell gift cards?", "user_id": "early"}
                early = asyncio.create_task(client.post("/v1/messages", json=question))
                await asyncio.to_thread(encoder.waiting.wait, 10)
                faq.write_text(yaml.safe_dump({"entries": [*SMALL_FAQ, GIFT]}))
                reload = await client.post("/v1/admin/reload", headers=root)
                assert not early.done()  # still on its way through the old index
                encoder.gate.set()
                late = await client.post("/v1/messages", json={**question, "user_id": "late"})
                return await early, reload, late

    early, reload, late = asyncio.run(scenario())
    assert reload.status_code == 200 and reload.json()["entries"] == len(SMALL_FAQ) + 1
    assert early.status_code == 200 and early.json()["entry_id"] != "gift-cards"
    assert late.json()["entry_id"] == "gift-cards"


def agent_token(app: object) -> dict[str, str]:
    """An admin's header, made directly in the running app's store."""
    from autoreply.store import new_token

    token = new_token()
    service = app.state.service  # type: ignore[attr-defined]
    service.bot.store.add_agent("root", role=AgentRole.ADMIN, token=token)
    return {"Authorization": f"Bearer {token}"}


def test_admin_routes_need_an_admin(admin_client: tuple[TestClient, dict[str, str]]) -> None:
    """No token is 401 and an agent token is 403 on every admin route."""
    client, _ = admin_client
    alice = agent(client, "alice")
    for method, path in [
        ("POST", "/v1/admin/reload"),
        ("POST", "/v1/admin/knowledge"),
        ("GET", "/v1/admin/candidates"),
        ("POST", "/v1/admin/candidates/1/accept"),
        ("POST", "/v1/admin/candidates/1/dismiss"),
        ("GET", "/v1/admin/stats"),
        ("GET", "/v1/admin/interceptions"),
    ]:
        error(client.request(method, path), 401, "unauthorized")
        error(client.request(method, path, headers=alice), 403, "forbidden")
    assert state(client).bot.store.list_interceptions() == []


def test_accept_a_gap_topic_through_the_api_then_undo(
    admin_client: tuple[TestClient, dict[str, str]], faq_dir: Path
) -> None:
    """dry_run returns the entry and the verdict; a conflict is refused unless forced; a
    saved entry lands in accepted.yaml (faq.yaml untouched) and undo takes it back."""
    from test_gaps import ROCKET

    client, root = admin_client
    for i, text in enumerate(ROCKET):
        send(client, text, user_id=f"r{i}", conversation_id=f"r{i}")
    (topic,) = client.get("/v1/insights/gaps", headers=root).json()
    url = f"/v1/admin/gaps/{topic['id']}/accept"
    before = (faq_dir / "faq.yaml").read_bytes()
    body = {"answer": "At 10:00.", "variants": ["launch schedule", "international shipping"]}
    dry = client.post(url, headers=root, json=body | {"dry_run": True}).json()
    assert not dry["saved"] and "international shipping" in dry["warnings"][0]
    error(client.post(url, headers=root, json=body), 422, "knowledge_invalid")
    assert not (faq_dir / "accepted.yaml").exists()
    saved = client.post(url, headers=root, json=body | {"variants": ["launch schedule"]})
    assert saved.status_code == 200 and saved.json()["saved"], saved.text
    assert saved.json()["file"] == "accepted.yaml" and (faq_dir / "faq.yaml").read_bytes() == before
    undone = client.post("/v1/admin/knowledge/undo", headers=root)
    assert undone.status_code == 200 and not (faq_dir / "accepted.yaml").exists()
    error(client.post("/v1/admin/knowledge/undo", headers=root), 409, "conflict")


def test_learned_variants_are_listed_accepted_and_dismissed(
    admin_client: tuple[TestClient, dict[str, str]], settings: Settings
) -> None:
    """An agent's standard script on an escalated question becomes a candidate variant; an
    admin lists, accepts (written into the entry, reloaded) or dismisses it; agents may not."""
    client, root = admin_client
    alice = agent(client, "alice")
    cancel = next(e for e in SMALL_FAQ if e["id"] == "cancel")
    for n, question in enumerate(("how to quit paying monthly", "my cat ate the invoice")):
        send(client, question, user_id=f"c{n}", conversation_id=f"c{n}")
        ticket_id = escalate(client, user=f"c{n}", conversation_id=f"c{n}")
        reply = client.post(
            f"/v1/tickets/{ticket_id}/reply", headers=alice, json={"text": cancel["answer"]}
        )
        assert reply.status_code == 201, reply.text
    error(client.get("/v1/admin/learning", headers=alice), 403, "forbidden")
    listed = client.get("/v1/admin/learning", headers=root).json()
    assert sorted(v["text"] for v in listed) == [
        "how to quit paying monthly",
        "my cat ate the invoice",
    ]
    assert all(v["entry_id"] == "cancel" and v["counts"] == {"agent_script": 1} for v in listed)
    keep = next(v for v in listed if v["text"] == "how to quit paying monthly")
    drop = next(v for v in listed if v["text"] == "my cat ate the invoice")
    done = client.post("/v1/admin/learning/accept", headers=root, json={"ids": [keep["id"]]})
    assert done.status_code == 200, done.text
    assert done.json()["variants"][0]["status"] == "accepted" and done.json()["changes"]
    faq = yaml.safe_load((Path(settings.knowledge) / "faq.yaml").read_text("utf-8"))
    entry = next(e for e in faq["entries"] if e["id"] == "cancel")
    assert "how to quit paying monthly" in entry["variants"]
    assert "how to quit paying monthly" in state(client).bot.kb.get("cancel").variants
    gone = client.post("/v1/admin/learning/dismiss", headers=root, json={"ids": [drop["id"]]})
    assert gone.json()["variants"][0]["status"] == "dismissed"
    assert client.get("/v1/admin/learning", headers=root).json() == []
    error(
        client.post("/v1/admin/learning/dismiss", headers=root, json={"ids": [999]}),
        404,
        "not_found",
    )
