"""The agent console with TestClient: sign-in and its cookie, CSRF, ownership errors on the
page, escaping of customer text, the prohibited-phrase check, languages, and the knowledge,
gaps and report pages (HashingEncoder, the small FAQ)."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from test_gaps import ROCKET
from test_server import HUMAN, send, served, state

from autoreply.models import CandidateStatus, TicketStatus
from autoreply.settings import Settings
from autoreply.store import AgentRole, LearningSource, new_token

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with served(settings) as c:
        yield c


def make_agent(client: TestClient, name: str, role: AgentRole = AgentRole.AGENT) -> str:
    token = new_token()
    state(client).bot.store.add_agent(name, role=role, token=token)
    return token


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def sign_in(client: TestClient, token: str) -> str:
    """Sign in through the form; the signed-in session's CSRF token."""
    page = client.get("/console/signin")
    response = client.post(
        "/console/signin",
        data={"token": token, "csrf": csrf_of(page.text), "next": "/console/inbox"},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    inbox = client.get(response.headers["location"])
    assert inbox.status_code == 200
    return csrf_of(inbox.text)


@contextmanager
def browser(client: TestClient) -> Iterator[TestClient]:
    """A second browser (its own cookie jar) on the same running app (no second lifespan)."""
    other = TestClient(client.app)
    try:
        yield other
    finally:
        other.close()


def test_pages_need_sign_in_and_the_cookie_is_locked_down(client: TestClient) -> None:
    """Without a session every page redirects to sign-in; the cookie is HttpOnly, SameSite
    and limited to /console; the fetch endpoints answer 401 instead of redirecting."""
    for path in ("/console/inbox", "/console/tickets/1", "/console/gaps", "/console/knowledge"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/console/signin?next=")
    rows = client.get("/console/inbox/rows", headers={"Accept": "application/json"})
    assert rows.status_code == 401
    page = client.get("/console/signin")
    cookie = page.headers["set-cookie"]
    assert "autoreply_console=" in cookie
    assert "HttpOnly" in cookie and "samesite=lax" in cookie.lower()
    assert "Path=/console" in cookie
    assert "default-src 'self'" in page.headers["content-security-policy"]


def test_sign_in_failure_and_success(client: TestClient) -> None:
    """A wrong token is refused on the page saying why; the right one signs in with a new
    session id (the pre-sign-in id stops working), and signing out ends the session."""
    token = make_agent(client, "alice")
    page = client.get("/console/signin")
    before = client.cookies.get("autoreply_console")
    wrong = client.post("/console/signin", data={"token": "ar_nope", "csrf": csrf_of(page.text)})
    assert wrong.status_code == 401 and "unknown token" in wrong.text
    csrf = sign_in(client, token)
    after = client.cookies.get("autoreply_console")
    assert after and after != before
    inbox = client.get("/console/inbox")
    assert "alice" in inbox.text and "/console/signout" in inbox.text
    out = client.post("/console/signout", data={"csrf": csrf}, follow_redirects=False)
    assert out.status_code == 303
    client.cookies.set("autoreply_console", after, path="/console")
    assert client.get("/console/inbox", follow_redirects=False).status_code == 303


def test_a_disabled_agent_is_signed_out(client: TestClient) -> None:
    sign_in(client, make_agent(client, "carol"))
    state(client).bot.store.disable_agent("carol")
    assert client.get("/console/inbox", follow_redirects=False).status_code == 303


def test_posts_without_the_csrf_token_are_refused(client: TestClient) -> None:
    """Claim without the token, with another session's token, and a sign-in from a page
    that was never loaded: all 403, and nothing changes."""
    ticket_id = send(client, HUMAN, user_id="u1")["ticket_id"]
    sign_in(client, make_agent(client, "alice"))
    bare = client.post(f"/console/tickets/{ticket_id}/claim", data={})
    assert bare.status_code == 403 and "CSRF" in bare.text
    forged = client.post(f"/console/tickets/{ticket_id}/claim", data={"csrf": "x" * 43})
    assert forged.status_code == 403
    check = client.post("/console/check", json={"text": "idiot"})
    assert check.status_code == 403
    assert state(client).bot.store.get_ticket(ticket_id).status is TicketStatus.OPEN
    with browser(client) as stranger:
        refused = stranger.post("/console/signin", data={"token": "x", "csrf": "y"})
        assert refused.status_code == 403


def test_ownership_errors_are_shown_on_the_ticket(client: TestClient) -> None:
    """Bob cannot resolve or claim Alice's ticket: the page says why, the ticket stays hers."""
    ticket_id = send(client, HUMAN, user_id="u1")["ticket_id"]
    alice = sign_in(client, make_agent(client, "alice"))
    claimed = client.post(f"/console/tickets/{ticket_id}/claim", data={"csrf": alice})
    assert claimed.status_code == 200 and "ticket" in claimed.text
    with browser(client) as bob_client:
        bob = sign_in(bob_client, make_agent(client, "bob"))
        page = bob_client.post(f"/console/tickets/{ticket_id}/resolve", data={"csrf": bob})
        assert page.status_code == 200
        assert 'class="flash error"' in page.text and "alice" in page.text
        again = bob_client.post(f"/console/tickets/{ticket_id}/claim", data={"csrf": bob})
        assert 'class="flash error"' in again.text
    ticket = state(client).bot.store.get_ticket(ticket_id)
    assert ticket.owner == "alice" and ticket.status is TicketStatus.CLAIMED
    missing = client.get("/console/tickets/99999")
    assert missing.status_code == 404 and "99999" in missing.text


def test_customer_html_is_shown_as_text(client: TestClient) -> None:
    """A customer's <script> is escaped in the inbox, the live rows and the ticket page."""
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)> 我要转人工'
    ticket_id = send(client, evil, user_id="u<b>")["ticket_id"]
    assert ticket_id
    sign_in(client, make_agent(client, "alice"))
    for path in ("/console/inbox", "/console/inbox/rows", f"/console/tickets/{ticket_id}"):
        html = client.get(path).text
        assert "<script>alert" not in html and "<img src=x" not in html, path
        assert "&lt;script&gt;" in html and "u&lt;b&gt;" in html, path


def test_prohibited_phrase_is_flagged_then_refused(client: TestClient) -> None:
    """The check endpoint names the phrase as the agent types; sending it anyway is refused,
    recorded as an interception and the draft kept; a clean reply goes to the customer."""
    ticket_id = send(client, HUMAN, user_id="u1")["ticket_id"]
    csrf = sign_in(client, make_agent(client, "alice"))
    headers = {"X-CSRF-Token": csrf, "Accept": "application/json"}
    flagged = client.post(
        "/console/check", json={"text": "That is NOT my problem"}, headers=headers
    )
    assert flagged.json() == {"phrase": "not my problem"}
    clean = client.post("/console/check", json={"text": "Happy to help"}, headers=headers)
    assert clean.json() == {"phrase": None}
    refused = client.post(
        f"/console/tickets/{ticket_id}/reply", data={"csrf": csrf, "text": "not my problem"}
    )
    assert "not my problem" in refused.text and 'class="flash error"' in refused.text
    assert ">not my problem</textarea>" in refused.text
    store = state(client).bot.store
    assert [i.phrase for i in store.list_interceptions()] == ["not my problem"]
    sent = client.post(
        f"/console/tickets/{ticket_id}/reply", data={"csrf": csrf, "text": "Sorry, fixing it"}
    )
    assert "Sorry, fixing it" in sent.text
    texts = [m.text for m in store.history("api:u1")]
    assert "Sorry, fixing it" in texts and "not my problem" not in texts


def test_language_follows_the_browser_and_the_switch(client: TestClient) -> None:
    """Accept-Language zh gets Chinese; ?lang=en switches and the cookie keeps it."""
    zh = client.get("/console/signin", headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"})
    assert "登录" in zh.text and 'lang="zh-CN"' in zh.text
    en = client.get("/console/signin?lang=en", headers={"Accept-Language": "zh-CN"})
    assert "Sign in" in en.text and "autoreply_lang=en" in en.headers["set-cookie"]
    still = client.get("/console/signin", headers={"Accept-Language": "zh-CN"})
    assert "Sign in" in still.text
    back = client.get("/console/signin?lang=zh")
    assert "坐席令牌" in back.text


def test_ticket_to_faq_entry_and_the_bot_answers(client: TestClient, faq_dir: Path) -> None:
    """Claim, reply, resolve, promote; an admin accepts the candidate into the knowledge
    folder, the index reloads, and the same question is answered by the bot."""
    question = "Can I pay with gift cards?"
    reply = send(client, question, user_id="g1")
    assert reply["decision"] == "escalate"
    ticket_id = reply["ticket_id"]
    csrf = sign_in(client, make_agent(client, "alice"))
    page = client.get(f"/console/tickets/{ticket_id}")
    assert question in page.text and "low_confidence" in page.text
    client.post(f"/console/tickets/{ticket_id}/claim", data={"csrf": csrf})
    client.post(
        f"/console/tickets/{ticket_id}/reply",
        data={"csrf": csrf, "text": "Yes, gift cards work at checkout."},
    )
    client.post(f"/console/tickets/{ticket_id}/resolve", data={"csrf": csrf})
    promoted = client.post(
        f"/console/tickets/{ticket_id}/promote",
        data={"csrf": csrf, "question": question, "category": "billing/payment"},
    )
    assert "FAQ candidate" in promoted.text
    store = state(client).bot.store
    (candidate,) = store.list_candidates(status=CandidateStatus.PENDING)
    refused = client.post(
        f"/console/knowledge/candidates/{candidate.id}/accept", data={"csrf": csrf}
    )
    assert "admin" in refused.text
    before = (faq_dir / "faq.yaml").read_bytes()
    with browser(client) as admin_client:
        root = sign_in(admin_client, make_agent(client, "root", AgentRole.ADMIN))
        listing = admin_client.get("/console/knowledge")
        assert "gift cards" in listing.text
        accepted = admin_client.post(
            f"/console/knowledge/candidates/{candidate.id}/accept",
            data={
                "csrf": root,
                "id": "gift-cards",
                "question": question,
                "answer": candidate.answer,
                "category": "billing/payment",
                "into": "faq.yaml",
            },
        )
        assert "index reloaded" in accepted.text, accepted.text
    after = (faq_dir / "faq.yaml").read_bytes()
    assert after.startswith(before)  # appended: nothing before it changed
    written = yaml.safe_load(after.decode("utf-8"))["entries"]
    assert any(e["id"] == "gift-cards" for e in written)
    assert store.list_candidates(status=CandidateStatus.ACCEPTED)[0].id == candidate.id
    again = send(client, question, user_id="g1")
    assert again["decision"] == "answer" and again["entry_id"] == "gift-cards"


def test_admin_edits_an_entry_and_sees_its_feedback(client: TestClient, faq_dir: Path) -> None:
    """The entry page lists feedback; an admin's edit is validated, written back to the
    entry's file and answered from at once; an empty answer is refused."""
    answered = send(client, "如何退款", user_id="f1")
    state(client).bot.feedback(answered["message_id"], helpful=False, comment="too short")
    with browser(client) as admin_client:
        csrf = sign_in(admin_client, make_agent(client, "root", AgentRole.ADMIN))
        page = admin_client.get("/console/knowledge/entry/refund")
        assert "too short" in page.text and "edit-form" in page.text
        tree = admin_client.get("/console/knowledge", params={"category": "支付"})
        assert 'entry/refund"' in tree.text and 'entry/password"' not in tree.text
        found = admin_client.get("/console/knowledge", params={"q": "subscription"})
        assert "cancel" in found.text
        form = {
            "csrf": csrf,
            "question": "怎么申请退款？",
            "variants": "如何退款\n我想退钱",
            "answer": "新的退款说明。",
            "category": "支付/退款",
            "enabled": "on",
        }
        bad = admin_client.post("/console/knowledge/entry/refund", data=form | {"answer": " "})
        assert 'class="flash error"' in bad.text and "answer" in bad.text
        saved = admin_client.post("/console/knowledge/entry/refund", data=form)
        assert "index reloaded" in saved.text, saved.text
    assert "新的退款说明。" in (faq_dir / "faq.yaml").read_text(encoding="utf-8")
    assert send(client, "如何退款", user_id="f2")["text"] == "新的退款说明。"


def test_gaps_and_report_pages(client: TestClient) -> None:
    """Logged gaps become a topic on the Gaps page; the report page shows the week with
    download links, and Markdown and the CSV zip download."""
    for i, text in enumerate(ROCKET):
        send(client, text, user_id=f"r{i}", conversation_id=f"r{i}")
    sign_in(client, make_agent(client, "pm"))
    gaps = client.get("/console/gaps")
    assert gaps.status_code == 200 and "rocket" in gaps.text and "<polyline" in gaps.text
    report = client.get("/console/report")
    assert report.status_code == 200 and "format=csv" in report.text
    week = re.search(r'name="week" value="([^"]+)"', report.text)
    assert week
    md = client.get("/console/report/download", params={"week": week.group(1), "format": "md"})
    assert md.status_code == 200 and "rocket" in md.text
    csv = client.get("/console/report/download", params={"week": week.group(1), "format": "csv"})
    assert zipfile.ZipFile(io.BytesIO(csv.content)).namelist()
    html = client.get("/console/report/download", params={"week": week.group(1), "inline": 1})
    assert "<svg" in html.text
    bad = client.get("/console/report", params={"week": "2026-W99"})
    assert "W99" in bad.text


def test_admin_reviews_checks_accepts_and_undoes_a_gap_topic(
    client: TestClient, faq_dir: Path
) -> None:
    """The review form: every field editable, variants as checkboxes with editable text plus
    a box for more; Check shows the verdict (a conflict is a warning, nothing written); Accept
    writes only the ticked and added variants into accepted.yaml (faq.yaml untouched), and
    Undo takes it back byte for byte and reopens the topic."""
    for i, text in enumerate(ROCKET):
        send(client, text, user_id=f"r{i}", conversation_id=f"r{i}")
    faq = faq_dir / "faq.yaml"
    before = faq.read_bytes()
    with browser(client) as admin_client:
        csrf = sign_in(admin_client, make_agent(client, "root", AgentRole.ADMIN))
        listing = admin_client.get("/console/gaps")
        topic = re.search(r'href="/console/gaps/(\d+)/review"', listing.text)
        assert topic, listing.text
        url = f"/console/gaps/{topic.group(1)}/review"
        page = admin_client.get(url)
        assert 'name="use_0"' in page.text and 'name="variant_0"' in page.text
        assert 'name="more_variants"' in page.text and "<script>" not in page.text
        count = int(re.search(r'name="variant_count" value="(\d+)"', page.text).group(1))
        texts = re.findall(r'name="variant_\d+" value="([^"]*)"', page.text)
        assert count == len(texts) == len(ROCKET) - 1
        form = {
            "csrf": csrf,
            "question": "When does the rocket launch?",
            "answer": "At 10:00.",
            "category": "space",
            "variant_count": str(count),
            "use_0": "on",
            "variant_0": "rocket launch time?",  # edited
            "variant_1": texts[1],  # not ticked: left out
            "variant_2": texts[2],
            "more_variants": "launch schedule\ninternational shipping\n",
            "into": "accepted.yaml",
        }
        checked = admin_client.post(url, data=form | {"do": "check"})
        assert "international shipping" in checked.text and 'class="warnings"' in checked.text
        refused = admin_client.post(url, data=form | {"do": "save"})
        assert 'class="warnings"' in refused.text and not (faq_dir / "accepted.yaml").exists()
        form["more_variants"] = "launch schedule"
        ok = admin_client.post(url, data=form | {"do": "check"})
        assert "Check passed" in ok.text
        saved = admin_client.post(url, data=form | {"do": "save"})
        assert "index reloaded" in saved.text, saved.text
        (entry,) = yaml.safe_load((faq_dir / "accepted.yaml").read_text(encoding="utf-8"))
        assert entry["variants"] == ["rocket launch time?", "launch schedule"]
        assert entry["category"] == "space" and faq.read_bytes() == before
        assert send(client, "launch schedule", user_id="x")["entry_id"] == entry["id"]
        knowledge = admin_client.get("/console/knowledge")
        assert 'id="changes"' in knowledge.text and entry["id"] in knowledge.text
        undone = admin_client.post("/console/knowledge/undo", data={"csrf": csrf})
        assert "undone" in undone.text, undone.text
    assert not (faq_dir / "accepted.yaml").exists() and faq.read_bytes() == before
    assert state(client).bot.store.get_gap_topic(int(topic.group(1))).status.value == "open"


def test_entry_edit_keeps_the_rest_of_a_commented_file(client: TestClient, faq_dir: Path):
    """Editing one entry from the console changes only that entry's changed lines: the
    file's comments and the other entries stay byte for byte."""
    faq = faq_dir / "faq.yaml"
    original = "# kept by the support team\n" + faq.read_text(encoding="utf-8")
    faq.write_text(original, encoding="utf-8")
    state(client).bot.reload()
    with browser(client) as admin_client:
        csrf = sign_in(admin_client, make_agent(client, "root", AgentRole.ADMIN))
        form = {
            "csrf": csrf,
            "question": "Do you ship internationally?",
            "variants": "international shipping\ncan you ship abroad\nship to another country",
            "answer": "Yes, to over 50 countries.",
            "category": "orders/shipping",
            "enabled": "on",
        }
        saved = admin_client.post("/console/knowledge/entry/shipping", data=form)
        assert "index reloaded" in saved.text, saved.text
    after = faq.read_text(encoding="utf-8")
    assert after == original.replace("Yes, to over 40 countries.", "Yes, to over 50 countries.")


def test_learned_phrasings_are_shown_accepted_and_dismissed(
    client: TestClient, faq_dir: Path
) -> None:
    """The knowledge page and the entry page list learned phrasings with their evidence; an
    admin accepts one (written into the entry, undoable) or dismisses one; agents only see."""
    bot = state(client).bot
    for n, text in enumerate(("money back for order <b>9</b>", "refund me now please")):
        bot.store.add_evidence(
            entry_id="refund",
            text=text,
            normalized=text,
            source=LearningSource.PICKED,
            message_id=n,
        )
    keep, drop = sorted(bot.store.learned_variants(), key=lambda v: v.id)
    with browser(client) as agent_client:
        sign_in(agent_client, make_agent(client, "ann"))
        page = agent_client.get("/console/knowledge")
        assert "money back for order &lt;b&gt;9&lt;/b&gt;" in page.text
        assert f"/console/knowledge/learned/{keep.id}/accept" not in page.text
    with browser(client) as admin_client:
        csrf = sign_in(admin_client, make_agent(client, "root", AgentRole.ADMIN))
        entry = admin_client.get("/console/knowledge/entry/refund", params={"lang": "zh"})
        assert "从对话中学到的问法" in entry.text and "客户选择 × 1" in entry.text
        back = {"csrf": csrf, "back": "/console/knowledge/entry/refund"}
        done = admin_client.post(f"/console/knowledge/learned/{keep.id}/accept", data=back)
        assert 'class="flash ok"' in done.text, done.text
        admin_client.post(f"/console/knowledge/learned/{drop.id}/dismiss", data=back)
    faq = (faq_dir / "faq.yaml").read_text(encoding="utf-8")
    assert "money back for order <b>9</b>" in faq and "refund me now please" not in faq
    assert bot.store.get_learned_variant(keep.id).status.value == "accepted"
    assert bot.store.get_learned_variant(drop.id).status.value == "dismissed"
    assert "money back for order <b>9</b>" in bot.kb.get("refund").variants
