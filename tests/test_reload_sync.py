"""Reload propagation: ``AutoReply.reload()`` counts the reload in the store, and every other bot
sharing the store (another replica, the CLI) reloads when it sees the knowledge version move,
in the library (``sync_knowledge``) and in the service (the lifespan's follower task). On
SQLite here; test_replicas.py does it with two uvicorn processes on PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import SMALL_FAQ
from fastapi.testclient import TestClient
from test_server import roomy, send

from autoreply.app import create_app
from autoreply.encoder import Encoder, HashingEncoder
from autoreply.errors import AutoreplyError
from autoreply.service import AutoReply
from autoreply.settings import Settings

GIFT = {
    "id": "gift-cards",
    "question": "Do you sell gift cards?",
    "variants": ["gift card", "buy a gift voucher"],
    "answer": "Yes, on the Gifts page.",
    "category": "orders/gifts",
}


def add_gift_entry(settings: Settings) -> None:
    faq = Path(settings.knowledge) / "faq.yaml"
    faq.write_text(yaml.safe_dump({"entries": [*SMALL_FAQ, GIFT]}, allow_unicode=True))


@pytest.fixture
def pair(settings: Settings, hashing: Encoder) -> Iterator[tuple[AutoReply, AutoReply]]:
    """Two bots on one knowledge folder and one database: two replicas' worth."""
    with (
        AutoReply.from_settings(settings, encoder=hashing) as a,
        AutoReply.from_settings(settings, encoder=hashing) as b,
    ):
        yield a, b


def test_reload_elsewhere_is_followed(
    pair: tuple[AutoReply, AutoReply], settings: Settings
) -> None:
    """A reloads a changed folder; B's sync_knowledge() reloads too, once; A's does nothing."""
    a, b = pair
    assert (a.sync_knowledge(), b.sync_knowledge()) == (False, False)
    add_gift_entry(settings)
    version = a.store.knowledge_version()
    a.reload()
    assert a.store.knowledge_version() == version + 1
    assert b.handle("Do you sell gift cards?", user_id="u1").entry_id != "gift-cards"
    assert a.sync_knowledge() is False
    assert b.sync_knowledge() is True
    assert b.handle("Do you sell gift cards?", user_id="u2").entry_id == "gift-cards"
    assert b.sync_knowledge() is False


def test_broken_knowledge_elsewhere_keeps_the_old_index_and_is_not_retried(
    pair: tuple[AutoReply, AutoReply], settings: Settings
) -> None:
    """If B cannot load what A loaded (its folder is broken), B raises once and keeps answering
    with the old index; the next check does not try again until the version moves."""
    a, b = pair
    a.reload()
    (Path(settings.knowledge) / "faq.yaml").write_text("entries:\n  - id: x\n    question: q\n")
    with pytest.raises(AutoreplyError):
        b.sync_knowledge()
    assert b.sync_knowledge() is False
    assert b.handle("如何退款", user_id="u1").entry_id == "refund"


def test_a_bot_started_after_a_reload_does_not_reload_again(
    settings: Settings, hashing: Encoder
) -> None:
    """The version is read when the bot loads, so a reload before that is not followed."""
    with AutoReply.from_settings(settings, encoder=hashing) as a:
        a.reload()
        with AutoReply.from_settings(settings, encoder=hashing) as late:
            assert late.sync_knowledge() is False


def test_service_follows_a_reload_made_elsewhere(settings: Settings, hashing: Encoder) -> None:
    """The app's follower task reloads within a few polls of another bot's reload."""
    app = create_app(roomy(settings), encoder=HashingEncoder(), knowledge_poll_seconds=0.05)
    with TestClient(app) as client, AutoReply.from_settings(settings, encoder=hashing) as other:
        assert send(client, "Do you sell gift cards?")["entry_id"] != "gift-cards"
        add_gift_entry(settings)
        other.reload()
        deadline = time.monotonic() + 10
        # A new customer each time: one asking before the follower caught up may be escalated,
        # and an open ticket keeps the bot out of that customer's conversation.
        attempt = 0
        while send(client, "Do you sell gift cards?", user_id=f"u{attempt}")["entry_id"] != (
            "gift-cards"
        ):
            assert time.monotonic() < deadline, "the service did not follow the reload"
            attempt += 1
            time.sleep(0.05)


def test_service_without_polling_does_not_follow(settings: Settings, hashing: Encoder) -> None:
    """knowledge_poll_seconds=None turns the follower off (a single-process deployment)."""
    app = create_app(roomy(settings), encoder=HashingEncoder(), knowledge_poll_seconds=None)
    with TestClient(app) as client, AutoReply.from_settings(settings, encoder=hashing) as other:
        add_gift_entry(settings)
        other.reload()
        time.sleep(0.3)
        assert send(client, "Do you sell gift cards?")["entry_id"] != "gift-cards"


def test_reloads_do_not_keep_old_engines_alive(settings: Settings, hashing: Encoder) -> None:
    """Ten reloads leave one engine alive: an old index is freed once nothing answers on it
    (the soak reloads every 2 minutes; bench/README.md, soak)."""
    import gc
    import weakref

    with AutoReply.from_settings(settings, encoder=hashing) as bot:
        bot.handle("怎么退款", user_id="u1")
        old = []
        for _ in range(10):
            old.append(weakref.ref(bot.engine))
            bot.reload()
            bot.handle("怎么退款", user_id="u1")
        gc.collect()
        assert [ref() for ref in old] == [None] * 10
