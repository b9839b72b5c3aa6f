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


def test_notes_tags_and_search_on_the_console(client: TestClient) -> None:
    """A note shows on the ticket for agents, never in the customer's conversation; a tag
    is added (a bad one refused, naming it), filtered on and removed; the search box finds
    tickets by conversation text and customer id; posts without CSRF change nothing."""
    store = state(client).bot.store
    parcel = send(client, "my parcel is lost, talk to a human", user_id="p-1")["ticket_id"]
    other = send(client, HUMAN, user_id="o-1")["ticket_id"]
    csrf = sign_in(client, make_agent(client, "alice"))
    url = f"/console/tickets/{parcel}"
    assert client.post(f"{url}/note", data={"text": "no csrf"}).status_code == 403
    client.post(f"{url}/note", data={"csrf": csrf, "text": "<b>called</b> the courier"})
    page = client.get(url).text
    notes = page.split('id="notes"', 1)[1].split("</section>", 1)[0]
    assert "&lt;b&gt;called&lt;/b&gt; the courier" in notes
    conversation = page.split('class="conversation"', 1)[1].split("</ol>", 1)[0]
    assert "courier" not in conversation
    assert all("courier" not in m.text for m in store.history("api:p-1"))

    client.post(f"{url}/tag", data={"csrf": csrf, "tags": "Lost-Parcel，urgent"})
    assert store.tags_of([parcel]) == {parcel: ["lost-parcel", "urgent"]}
    refused = client.post(f"{url}/tag", data={"csrf": csrf, "tags": "two words"})
    assert "two words" in refused.text and store.tags_of([parcel])[parcel] == [
        "lost-parcel",
        "urgent",
    ]
    filtered = client.get("/console/inbox/rows?tag=lost-parcel").text
    assert f'data-ticket="{parcel}"' in filtered and f'data-ticket="{other}"' not in filtered
    client.post(f"{url}/untag", data={"csrf": csrf, "tag": "urgent"})
    assert store.tags_of([parcel])[parcel] == ["lost-parcel"]

    found = client.get("/console/inbox?q=PARCEL").text
    assert f'data-ticket="{parcel}"' in found and f'data-ticket="{other}"' not in found
    by_customer = client.get("/console/inbox/rows?q=o-1").text
    assert f'data-ticket="{other}"' in by_customer and f'data-ticket="{parcel}"' not in by_customer
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    assert f'data-ticket="{parcel}"' in client.get(f"/console/inbox/rows?since={today}").text
    assert "data-ticket=" not in client.get("/console/inbox/rows?until=2020-01-01").text


def test_bulk_claim_and_resolve_from_the_inbox(client: TestClient) -> None:
    """Tick three tickets: claim takes the two free ones and names the one bob holds;
    resolve closes alice's two and refuses bob's (only the owner resolves)."""
    store = state(client).bot.store
    ids = [send(client, HUMAN, user_id=f"k-{i}")["ticket_id"] for i in range(3)]
    make_agent(client, "bob")
    store.claim_ticket(ids[2], "bob")
    csrf = sign_in(client, make_agent(client, "alice"))
    ticked = [str(i) for i in ids]
    claimed = client.post(
        "/console/inbox/bulk", data={"csrf": csrf, "action": "claim", "ticket": ticked}
    )
    assert "2 ticket(s) done" in claimed.text and f"#{ids[2]}" in claimed.text
    assert [store.get_ticket(i).owner for i in ids] == ["alice", "alice", "bob"]
    resolved = client.post(
        "/console/inbox/bulk", data={"csrf": csrf, "action": "resolve", "ticket": ticked}
    )
    assert "2 ticket(s) done" in resolved.text and "owned by bob" in resolved.text
    assert [store.get_ticket(i).status.value for i in ids] == ["resolved", "resolved", "claimed"]
    forged = client.post("/console/inbox/bulk", data={"action": "resolve", "ticket": ticked})
    assert forged.status_code == 403


def test_profile_panel_shows_identity_vip_and_who_set_it(client: TestClient) -> None:
    """A listed VIP's panel names the admin who listed them; a channel-marked VIP says
    'channel'; identity comes from the verified channel's metadata."""
    bot = state(client).bot
    bot.store.add_vip("web", "v-1", added_by="root", note="key account")
    listed = bot.handle(
        Message(text=HUMAN, user_id="v-1", channel="web", metadata={"email": "v@example.com"})
    )
    marked = bot.handle(Message(text=HUMAN, user_id="v-2", channel="web", metadata={"vip": True}))
    sign_in(client, make_agent(client, "alice"))
    panel = client.get(f"/console/tickets/{listed.ticket_id}").text.split('id="profile"', 1)[1]
    panel = panel.split("</section>", 1)[0]
    assert "set by root" in panel and "key account" in panel and "v@example.com" in panel
    other = client.get(f"/console/tickets/{marked.ticket_id}").text.split('id="profile"', 1)[1]
    assert "set by channel" in other.split("</section>", 1)[0]
