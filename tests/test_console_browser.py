"""The agent console in a real headless Chromium (Playwright) against a real uvicorn on
127.0.0.1 with the HashingEncoder: a ticket worked from escalation to a new FAQ entry the
bot answers from, and a gap topic on the Gaps page. Screenshots of every page are taken; with
AUTOREPLY_SCREENSHOTS=1 they replace the README's in docs/screenshots/, else they go to a
temporary directory. Skipped when no chromium binary is installed (apt-get install chromium).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from conftest import ALWAYS_OPEN, REPO, write_small_faq
from test_gaps import ROCKET
from test_server import roomy
from test_server_uvicorn import free_port

from autoreply.app import create_app
from autoreply.encoder import HashingEncoder
from autoreply.settings import Settings
from autoreply.store import AgentRole, new_token
from autoreply.web.state import ServiceState

sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package")

CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium binary found (apt-get install chromium)"
)
SHOTS = (
    REPO / "docs" / "screenshots"
    if os.environ.get("AUTOREPLY_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / "autoreply-screenshots"
)
QUESTION = "Can I pay with gift cards?"
ANSWER = "Yes: gift cards work at checkout, in the payment step."


@dataclass
class Server:
    url: str
    state: ServiceState
    knowledge: Path
    tokens: dict[str, str] = field(default_factory=dict)

    def agent(self, name: str, role: AgentRole = AgentRole.AGENT) -> str:
        token = new_token()
        self.state.bot.store.add_agent(name, role=role, token=token)
        return token

    def say(self, text: str, **fields: Any) -> dict[str, Any]:
        """A customer message through the public API, keeping the conversation's token (as
        the customer's web widget does) for the next one."""
        conversation = f"api:{fields.get('user_id', 'anonymous')}"
        token = self.tokens.get(conversation)
        reply = httpx.post(
            f"{self.url}/v1/messages",
            json={"text": text, **fields},
            headers={"X-Conversation-Token": token} if token else {},
            timeout=10,
        )
        assert reply.status_code == 200, reply.text
        body: dict[str, Any] = reply.json()
        if body.get("conversation_token"):
            self.tokens[body["conversation_id"]] = body["conversation_token"]
        return body


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("console")
    knowledge = write_small_faq(root / "knowledge")
    settings = Settings(
        knowledge=knowledge, db=str(root / "bot.db"), cache_dir=root / "cache", hours=ALWAYS_OPEN
    )
    app = create_app(roomy(settings), encoder=HashingEncoder())
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield Server(f"http://127.0.0.1:{port}", app.state.service, knowledge)
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 860}, locale="en-US")
    context.set_default_timeout(10_000)
    try:
        yield context.new_page()
    finally:
        context.close()


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def sign_in(page: Any, server: Server, token: str, *, screenshot: bool = False) -> None:
    page.goto(f"{server.url}/console/inbox")
    assert "/console/signin" in page.url
    page.fill("#token", token)
    if screenshot:
        shot(page, "signin")
    page.click("button[type=submit].primary")
    page.wait_for_url("**/console/inbox**")


def sign_out(page: Any) -> None:
    page.click("form[action='/console/signout'] button")
    page.wait_for_url("**/console/signin**")


def test_ticket_becomes_an_faq_entry_the_bot_answers(server: Server, page: Any) -> None:
    """Sign in; a customer's question escalates and appears in the live inbox; claim it;
    a prohibited phrase is flagged as typed and refused when sent; reply, resolve, promote;
    an admin accepts the candidate (written to the knowledge file, index reloaded); the
    customer's identical question is then answered by the bot."""
    expect = sync_api.expect
    sign_in(page, server, server.agent("alice"), screenshot=True)
    server.say("I want to talk to a human", user_id="vip-7", metadata={"vip": True})
    server.say('<script>alert("x")</script> 我要投诉！', user_id="u-angry")
    ticket_id = server.say(QUESTION, user_id="gift")["ticket_id"]
    assert ticket_id
    row = page.locator(f'tr[data-ticket="{ticket_id}"]')
    expect(row).to_be_visible(timeout=10_000)  # arrives by the inbox's own polling
    expect(page.locator("table.queue")).to_contain_text('<script>alert("x")</script>')
    shot(page, "inbox")

    row.locator("td.q a").click()
    page.wait_for_url(f"**/console/tickets/{ticket_id}")
    expect(page.locator(".conversation")).to_contain_text(QUESTION)
    expect(page.locator("aside")).to_contain_text("low_confidence")
    page.click("#claim")
    expect(page.locator("#owner")).to_have_text("alice")

    page.fill("#reply-text", "Sorry, that is not my problem.")
    warning = page.locator("#phrase-warning")
    expect(warning).to_be_visible()
    expect(warning).to_contain_text("not my problem")
    shot(page, "ticket")
    page.click("#send")
    expect(page.locator("main > .flash.error")).to_contain_text("not my problem")
    expect(page.locator(".msg.agent")).to_have_count(0)

    page.fill("#reply-text", "")
    page.locator("button.insert").first.click()  # a standard script, then edited
    page.fill("#reply-text", ANSWER)
    expect(warning).to_be_hidden()
    page.click("#send")
    expect(page.locator(".msg.agent")).to_contain_text(ANSWER)
    page.click("#resolve")
    expect(page.locator("#promote-form")).to_be_visible()
    page.fill("#promote-form input[name=category]", "billing/payment")
    page.click("#promote")
    expect(page.locator("main > .flash.ok")).to_contain_text("FAQ candidate")
    sign_out(page)

    sign_in(page, server, server.agent("root", AgentRole.ADMIN))
    page.goto(f"{server.url}/console/knowledge")
    candidate = page.locator("section.candidate").first
    expect(candidate).to_contain_text(QUESTION)
    candidate.locator("input[name=id]").fill("gift-cards")
    shot(page, "knowledge")
    faq = (server.knowledge / "faq.yaml").read_bytes()
    candidate.locator("button.primary").click()
    expect(page.locator("main > .flash.ok")).to_contain_text("index reloaded")
    page.goto(f"{server.url}/console/knowledge?category=billing")
    expect(page.locator("table.entries")).to_contain_text("gift-cards")
    # the default target is a file of its own: the user's faq.yaml is not touched
    assert "gift-cards" in (server.knowledge / "accepted.yaml").read_text(encoding="utf-8")
    assert (server.knowledge / "faq.yaml").read_bytes() == faq

    again = server.say(QUESTION, user_id="gift")
    assert again["decision"] == "answer" and again["entry_id"] == "gift-cards"
    assert again["text"] == ANSWER


def test_gap_topic_appears_on_the_gaps_page(server: Server, page: Any) -> None:
    """Unanswered questions about one thing become a topic with its draft entry; the report
    page shows the week with its charts and downloads."""
    for i, text in enumerate(ROCKET):
        assert server.say(text, user_id=f"r{i}", conversation_id=f"rocket-{i}")["gap_id"]
    sign_in(page, server, server.agent("pm"))
    page.goto(f"{server.url}/console/gaps")
    topic = page.locator("section.topic", has_text="rocket").first
    expect = sync_api.expect
    expect(topic).to_be_visible()
    expect(topic.locator("svg.spark polyline")).to_have_count(1)
    expect(topic).to_contain_text(ROCKET[1])
    shot(page, "gaps")
    page.goto(f"{server.url}/console/report")
    frame = page.frame_locator("iframe.report")
    expect(frame.locator("h1")).to_contain_text("Weekly report")
    expect(page.locator("a[href*='format=csv']")).to_be_visible()
    page.wait_for_timeout(300)
    shot(page, "report")
    page.goto(f"{server.url}/console/inbox?lang=zh")
    expect(page.locator("h1")).to_have_text("工单队列")
    shot(page, "inbox-zh")


def test_admin_reviews_checks_and_accepts_a_gap_topic(server: Server, page: Any) -> None:
    """The review form works in a real browser under the CSP (no console errors): write the
    answer, add a variant, Check shows the verdict, Accept writes accepted.yaml and leaves
    faq.yaml byte for byte as it was."""
    errors: list[str] = []

    def seen(message: Any) -> None:  # a CSP violation or a script error; not the favicon
        if message.type == "error" and "favicon" not in message.location.get("url", ""):
            errors.append(f"{message.text} ({message.location.get('url')})")

    page.on("console", seen)
    for i, text in enumerate(ROCKET):
        server.say(text, user_id=f"rv{i}", conversation_id=f"review-{i}")
    faq = (server.knowledge / "faq.yaml").read_bytes()
    sign_in(page, server, server.agent("boss", AgentRole.ADMIN))
    page.goto(f"{server.url}/console/gaps")
    page.locator("section.topic", has_text="rocket").first.locator("a.button").click()
    expect = sync_api.expect
    expect(page.locator("#review-form input[name=variant_0]")).to_be_visible()
    page.fill("#review-form textarea[name=answer]", "At 10:00.")
    page.fill("#review-form textarea[name=more_variants]", "launch schedule")
    page.click("#review-form button[value=check]")
    expect(page.locator("#verdict")).to_contain_text("Check passed")
    shot(page, "review")
    page.click("#review-form button[value=save]")
    expect(page.locator("main > .flash.ok")).to_contain_text("index reloaded")
    assert "launch schedule" in (server.knowledge / "accepted.yaml").read_text(encoding="utf-8")
    assert (server.knowledge / "faq.yaml").read_bytes() == faq
    assert not errors, errors
