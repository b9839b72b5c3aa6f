"""The console's desk work with TestClient (issue 21): scripts in the customer's language, the
promote form pre-filled with the reply that was sent, the inbox's category and customer name,
expired agents out of the transfer list (HashingEncoder, the small FAQ)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from test_console import csrf_of, make_agent, sign_in
from test_server import HUMAN, send, served, state

from autoreply.models import Message
from autoreply.settings import Settings
from autoreply.store import AgentRole, new_token


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with served(settings) as c:
        yield c


def scripts_of(html: str) -> list[str]:
    """The entry ids offered as standard scripts on a ticket page."""
    block = html.split('<ul class="scripts">', 1)[1].split("</ul>", 1)[0]
    return re.findall(r"<small>([\w-]+) · ", block)


def test_scripts_follow_the_customers_language(client: TestClient) -> None:
    """An English question is offered English answers only, a Chinese one Chinese only."""
    sign_in(client, make_agent(client, "alice"))
    english = send(client, "I forgot my password, help!!!", user_id="en")["ticket_id"]
    chinese = send(client, "忘记密码怎么办 我要投诉", user_id="zh")["ticket_id"]
    en_ids = scripts_of(client.get(f"/console/tickets/{english}").text)
    zh_ids = scripts_of(client.get(f"/console/tickets/{chinese}").text)
    assert "reset-password" in en_ids and "password" not in en_ids
    assert "password" in zh_ids and "reset-password" not in zh_ids
    assert not {"refund", "password"} & set(en_ids)
    assert not {"reset-password", "shipping", "cancel"} & set(zh_ids)


def test_promote_form_offers_the_reply_that_was_sent(client: TestClient) -> None:
    """After reply and resolve (with a note), the promote form's answer is the reply sent to
    the customer, not the internal resolution note."""
    ticket_id = send(client, HUMAN, user_id="u1")["ticket_id"]
    csrf = sign_in(client, make_agent(client, "alice"))
    url = f"/console/tickets/{ticket_id}"
    client.post(f"{url}/claim", data={"csrf": csrf})
    client.post(f"{url}/reply", data={"csrf": csrf, "text": "Parcels arrive in 3 days."})
    client.post(f"{url}/resolve", data={"csrf": csrf, "resolution": "told them; closed"})
    page = client.get(url).text
    form = page.split('id="promote-form"', 1)[1]
    answer = form.split('name="answer"', 1)[1].split("</textarea>", 1)[0]
    assert "Parcels arrive in 3 days." in answer
    assert "told them; closed" not in answer


def test_inbox_shows_a_likely_category_and_the_customers_name(client: TestClient) -> None:
    """A ticket without a category (a request for a person skips the search) shows the
    category its question is nearest to as a guess; the name a verified channel gave is
    shown, while an anonymous webhook's claimed name is not."""
    bot = state(client).bot
    named = bot.handle(
        Message(
            text="can't remember my password, talk to a human",
            user_id="w-1",
            channel="web",
            metadata={"name": "Wang Fang"},
        )
    )
    assert named.ticket_id is not None
    send(client, HUMAN, user_id="anon", metadata={"name": "Mallory"})
    sign_in(client, make_agent(client, "alice"))
    rows = client.get("/console/inbox/rows").text
    row = rows.split(f'data-ticket="{named.ticket_id}"', 1)[1].split("</tr>", 1)[0]
    assert "Wang Fang" in row and "w-1" in row
    assert 'class="guess"' in row and "account/password" in row
    assert "Mallory" not in rows


def test_transfer_list_leaves_out_expired_and_disabled_agents(client: TestClient) -> None:
    """Only agents who can sign in are offered; a transfer to an expired one is refused."""
    store = state(client).bot.store
    ticket_id = send(client, HUMAN, user_id="u1")["ticket_id"]
    csrf = sign_in(client, make_agent(client, "alice"))
    make_agent(client, "bob")
    store.add_agent(
        "old", role=AgentRole.AGENT, token=new_token(), expires_at=datetime.now(UTC) - timedelta(1)
    )
    make_agent(client, "gone")
    store.disable_agent("gone")
    url = f"/console/tickets/{ticket_id}"
    client.post(f"{url}/claim", data={"csrf": csrf})
    page = client.get(url).text
    offered = re.findall(r"<option>([\w-]+)</option>", page.split('name="to"', 1)[1])
    assert offered == ["bob"]
    refused = client.post(f"{url}/transfer", data={"csrf": csrf, "to": "old"})
    assert "expired" in refused.text
    assert store.get_ticket(ticket_id).owner == "alice"
    assert csrf_of(refused.text)
