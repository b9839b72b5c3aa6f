"""Shared fixtures: a small FAQ written by code, bots on the HashingEncoder (fast) and the real
bundled e5 encoder on the demo knowledge base (session-scoped, loaded once)."""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import yaml

from autoreply.encoder import Encoder, HashingEncoder, get_encoder
from autoreply.knowledge import bundled_knowledge_dir
from autoreply.service import AutoReply
from autoreply.settings import HoursConfig, Settings

REPO = Path(__file__).resolve().parent.parent

SMALL_FAQ = [
    {
        "id": "refund",
        "question": "怎么申请退款？",
        "variants": ["如何退款", "我想退钱", "退款流程是什么"],
        "answer": "在「我的订单」里点击「申请退款」即可。",
        "category": "支付/退款",
    },
    {
        "id": "password",
        "question": "怎么修改密码？",
        "variants": ["密码怎么改", "忘记密码怎么办", "修改登录密码"],
        "answer": "进入「设置 → 账户安全 → 修改密码」。",
        "category": "账户/密码",
    },
    {
        "id": "reset-password",
        "question": "How do I reset my password?",
        "variants": ["forgot my password", "can't remember my password", "password reset"],
        "answer": "Click 'Forgot password' on the sign-in page.",
        "category": "account/password",
    },
    {
        "id": "shipping",
        "question": "Do you ship internationally?",
        "variants": ["international shipping", "can you ship abroad", "ship to another country"],
        "answer": "Yes, to over 40 countries.",
        "category": "orders/shipping",
    },
    {
        "id": "cancel",
        "question": "How do I cancel my subscription?",
        "variants": ["cancel subscription", "stop my plan", "end my membership"],
        "answer": "Go to Billing → Subscription → Cancel.",
        "category": "billing/subscription",
    },
    {
        "id": "legal",
        "question": "I want to take legal action",
        "variants": ["legal complaint", "my lawyer will contact you", "court case"],
        "answer": "Our legal team will contact you.",
        "category": "legal/disputes",
        "escalate": True,
    },
]


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Wait up to 60 s for a service started as ``proc`` to answer ``/readyz`` with 200;
    fail with the tail of its ``log`` if it exits or never gets ready."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"{url} exited: {log.read_text(errors='replace')[-3000:]}"
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{url} not ready in 60s: {log.read_text(errors='replace')[-3000:]}")


@pytest.fixture(scope="module", autouse=True)
def restore_autoreply_logging() -> Iterator[None]:
    """The app adds a JSON stderr handler to the ``autoreply`` logger for the whole process;
    take it away after every module, so later tests (the CLI's) see only their own output
    whatever order the modules run in."""
    logger = logging.getLogger("autoreply")
    handlers, level = list(logger.handlers), logger.level
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)


def write_small_faq(folder: Path) -> Path:
    """Write the 6-entry fixture FAQ (Chinese and English) plus the bundled phrase lists."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "faq.yaml").write_text(
        yaml.safe_dump({"entries": SMALL_FAQ}, allow_unicode=True, sort_keys=False),
        encoding="utf-8",
    )
    bundled = bundled_knowledge_dir()
    shutil.copytree(bundled / "phrases", folder / "phrases", dirs_exist_ok=True)
    shutil.copy(bundled / "synonyms.txt", folder / "synonyms.txt")
    return folder


ALWAYS_OPEN = HoursConfig(weekly={})


@pytest.fixture
def faq_dir(tmp_path: Path) -> Path:
    return write_small_faq(tmp_path / "knowledge")


@pytest.fixture
def hashing() -> Encoder:
    return HashingEncoder()


@pytest.fixture
def settings(tmp_path: Path, faq_dir: Path) -> Settings:
    return Settings(
        knowledge=faq_dir,
        db=str(tmp_path / "bot.db"),
        cache_dir=tmp_path / "cache",
        hours=ALWAYS_OPEN,
    )


@pytest.fixture
def bot(settings: Settings, hashing: Encoder) -> Iterator[AutoReply]:
    """A bot on the small FAQ with the HashingEncoder: fast, for wiring tests."""
    with AutoReply.from_settings(settings, encoder=hashing) as b:
        yield b


@pytest.fixture(scope="session")
def e5() -> Encoder:
    """The real bundled encoder, loaded once."""
    return get_encoder("e5")


@pytest.fixture(scope="session")
def demo_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("demo-cache")


@pytest.fixture
def demo_bot(tmp_path: Path, e5: Encoder, demo_cache: Path) -> Iterator[AutoReply]:
    """A bot on the bundled demo knowledge base with the real encoder (index cached per session)."""
    s = Settings(
        knowledge=bundled_knowledge_dir(),
        db=str(tmp_path / "demo.db"),
        cache_dir=demo_cache,
        hours=ALWAYS_OPEN,
    )
    with AutoReply.from_settings(s, encoder=e5) as b:
        yield b


def fixed_clock(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


# -- PostgreSQL: one throwaway cluster per session (tests/pg.py), a fresh database per test --
@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[object]:
    """A running PostgreSQL on 127.0.0.1 with a migrated template database; skipped (with
    the reason) where PostgreSQL is not installed."""
    import pg

    reason = pg.unavailable()
    if reason is not None:
        pytest.skip(reason)
    from autoreply.store.postgres import PostgresStore

    cluster = pg.Cluster()
    try:
        cluster.start()
        cluster.admin(f"CREATE DATABASE {pg.TEMPLATE}")
        PostgresStore(cluster.url(pg.TEMPLATE)).close()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: object) -> Iterator[str]:
    """The URL of a fresh, migrated, empty database, dropped after the test."""
    import pg

    assert isinstance(pg_cluster, pg.Cluster)
    name = pg_cluster.new_database()
    try:
        yield pg_cluster.url(name)
    finally:
        pg_cluster.drop_database(name)
