"""PostgreSQL's own behaviour (the shared contract is TestPostgres in test_store.py): migrations
recorded, concurrency-safe and transactional; several stores on one database behave like
replicas (one claim winner, one copy of a channel message, one ticket per conversation);
errors name the database and say what to do."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import psycopg
import pytest
from test_store import Clock, say, ticket

from autoreply.errors import ConflictError, StoreError
from autoreply.models import Priority, Reason
from autoreply.store import open_store
from autoreply.store.core import Tx
from autoreply.store.postgres import PostgresDialect, PostgresStore
from autoreply.store.schema import MIGRATIONS, migrate

pytestmark = pytest.mark.postgres

T = TypeVar("T")


@pytest.fixture
def store(pg_url: str) -> Iterator[PostgresStore]:
    with PostgresStore(pg_url, now=Clock()) as s:
        yield s


@pytest.fixture
def replicas(pg_url: str) -> Iterator[list[PostgresStore]]:
    """Four stores on one database, each with its own pool: four replicas' worth."""
    stores = [PostgresStore(pg_url, max_size=4) for _ in range(4)]
    yield stores
    for s in stores:
        s.close()


def all_at_once(calls: list[Callable[[], T]]) -> list[T | BaseException]:
    """Run the calls in threads released together; results (or exceptions) in order."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], T]) -> T | BaseException:
        barrier.wait()
        try:
            return call()
        except BaseException as exc:  # returned, not lost in the thread
            return exc

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def sql(url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(query, params)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


def test_migrations_recorded_once_and_data_kept(store: PostgresStore, pg_url: str) -> None:
    """Every migration is recorded once with an aware time; reopening applies nothing."""
    say(store, "hello")
    store.close()
    with PostgresStore(pg_url) as reopened:
        assert [m.text for m in reopened.history("c1")] == ["hello"]
    rows = sql(pg_url, "SELECT name, applied_at FROM _migrations ORDER BY id")
    assert [name for name, _ in rows] == [name for name, _ in MIGRATIONS]
    assert all(at.tzinfo is not None for _, at in rows)
    with PostgresStore(pg_url) as again:
        assert migrate(again.db) == []


def test_concurrent_first_opens_migrate_once(pg_cluster: Any) -> None:
    """Six processes' worth of stores opening an empty database at once: each migration is
    applied exactly once (the advisory lock), and every store works."""
    name = "concurrent_migrate"
    pg_cluster.admin(f"CREATE DATABASE {name}")
    url = pg_cluster.url(name)
    try:
        opened = all_at_once([lambda: PostgresStore(url, min_size=1, max_size=1)] * 6)
        assert [type(s) for s in opened] == [PostgresStore] * 6
        for s in opened:
            assert isinstance(s, PostgresStore)
            s.ping()
            s.close()
        names = [r[0] for r in sql(url, "SELECT name FROM _migrations ORDER BY id")]
        assert names == [name for name, _ in MIGRATIONS]
    finally:
        pg_cluster.drop_database(name)


def test_failed_migration_rolls_back_and_later_ones_apply(pg_url: str) -> None:
    """A later migration is applied once and recorded; a failing one leaves no trace."""

    def m005_notes(tx: Tx) -> None:
        tx.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY)")

    def m006_broken(tx: Tx) -> None:
        tx.execute("CREATE TABLE broken (id INTEGER PRIMARY KEY)")
        raise RuntimeError("boom")

    extended = [*MIGRATIONS, ("m005_notes", m005_notes)]
    db = PostgresDialect(pg_url)
    try:
        assert migrate(db, migrations=extended) == ["m005_notes"]
        assert migrate(db, migrations=extended) == []
        with pytest.raises(RuntimeError, match="boom"):
            migrate(db, migrations=[*extended, ("m006_broken", m006_broken)])
    finally:
        db.close()
    tables = {r[0] for r in sql(pg_url, "SELECT tablename FROM pg_tables")}
    assert "notes" in tables and "broken" not in tables
    assert sql(pg_url, "SELECT count(*) FROM _migrations")[0][0] == len(extended)


def test_older_database_is_upgraded(pg_cluster: Any) -> None:
    """A database with only m001 gets the later tables on open, keeping its rows."""
    name = "upgrade_me"
    pg_cluster.admin(f"CREATE DATABASE {name}")
    url = pg_cluster.url(name)
    try:
        PostgresDialect(url, migrations=MIGRATIONS[:1]).close()
        sql(
            url,
            "INSERT INTO messages (conversation_id, user_id, channel, role, text, "
            "created_at) VALUES ('c1', 'u1', 'api', 'customer', 'hi', now())",
        )
        with PostgresStore(url) as store:
            assert [m.text for m in store.history("c1")] == ["hi"]
            assert store.list_agents() == [] and store.knowledge_version() == 0
    finally:
        pg_cluster.drop_database(name)


def test_newer_schema_is_refused(store: PostgresStore, pg_url: str) -> None:
    """A database with migrations this version does not know asks for an upgrade, naming the
    database but not its password."""
    store.close()
    sql(pg_url, "INSERT INTO _migrations (name, applied_at) VALUES ('m999_future', now())")
    secret = pg_url.replace("postgres@", "postgres:hunter2@")
    with pytest.raises(StoreError, match="newer autoreply.*upgrade autoreply") as info:
        PostgresStore(secret)
    assert "m999_future" in str(info.value) and "127.0.0.1" in str(info.value)
    assert "hunter2" not in str(info.value)


def test_unreachable_server_says_what_to_check(pg_cluster: Any) -> None:
    """No server on the port: StoreError naming host and port and what to check."""
    import pg

    url = f"postgresql://nobody:pw@127.0.0.1:{pg.free_port()}/nothing"
    with pytest.raises(StoreError, match="cannot connect to PostgreSQL.*server is running") as e:
        PostgresStore(url, timeout=2)
    assert "127.0.0.1" in str(e.value) and "pw@" not in str(e.value)
    missing = pg_cluster.url("no_such_database")
    with pytest.raises(StoreError, match="no_such_database"):
        PostgresStore(missing, timeout=2)


def test_closed_store_raises_store_error(store: PostgresStore) -> None:
    """Using a closed store is a StoreError naming the database; closing twice is fine."""
    store.close()
    store.close()
    with pytest.raises(StoreError, match="127.0.0.1.*closed"):
        store.history("c1")


def test_open_store_understands_postgres_urls(pg_url: str) -> None:
    """open_store() opens PostgresStore for postgresql:// and postgres:// URLs."""
    for url in (pg_url, pg_url.replace("postgresql://", "postgres://")):
        opened = open_store(url)
        try:
            assert isinstance(opened, PostgresStore)
            opened.ping()
        finally:
            opened.close()


def test_missing_psycopg_says_how_to_install(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without psycopg, opening a PostgreSQL URL explains the extra to install."""
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(StoreError, match=r"pip install 'autoreply\[postgres\]'"):
        open_store(pg_url)


def test_nul_characters_are_stored_as_replacement(store: PostgresStore) -> None:
    """PostgreSQL text cannot hold U+0000: it comes back as U+FFFD instead of failing."""
    msg = say(store, "a\x00b")
    assert store.get_message(msg.id).text == "a\ufffdb"
    assert msg.text == "a\ufffdb"


def test_replicas_claiming_one_ticket_have_one_winner(replicas: list[PostgresStore]) -> None:
    """Four stores (each its own pool) claim each of ten tickets at once: one winner each, the
    others ConflictError, and the owner is the winner."""
    tickets = [ticket(replicas[0], conv=f"c{i}") for i in range(10)]
    for t in tickets:
        outcomes = all_at_once(
            [
                lambda s=s, i=i, t=t: s.claim_ticket(t.id, f"agent{i}")
                for i, s in enumerate(replicas)
            ]
        )
        won = [o for o in outcomes if not isinstance(o, BaseException)]
        lost = [o for o in outcomes if isinstance(o, BaseException)]
        assert len(won) == 1 and all(isinstance(o, ConflictError) for o in lost), outcomes
        assert len(lost) == 3
        assert replicas[1].get_ticket(t.id).owner == won[0].owner


def test_replicas_store_a_channel_message_once(replicas: list[PostgresStore]) -> None:
    """The same channel message arriving at four replicas at once is stored once; the others
    get ConflictError pointing at find_message."""
    for n in range(5):
        outcomes = all_at_once(
            [lambda s=s, n=n: say(s, "hi", external_id=f"wx-{n}") for s in replicas]
        )
        stored = [o for o in outcomes if not isinstance(o, BaseException)]
        assert len(stored) == 1, outcomes
        assert all(
            isinstance(o, ConflictError) and "find_message" in str(o)
            for o in outcomes
            if isinstance(o, BaseException)
        )
    assert replicas[0].counts()["messages"] == 5


def test_replicas_escalating_one_conversation_open_one_ticket(
    replicas: list[PostgresStore],
) -> None:
    """Four escalations of one conversation at once: one ticket created, three joined, every
    context kept, the highest priority wins."""
    priorities = [Priority.LOW, Priority.NORMAL, Priority.URGENT, Priority.HIGH]
    outcomes = all_at_once(
        [
            lambda s=s, p=p, i=i: s.open_ticket(
                conversation_id="c1",
                user_id="u1",
                channel="web",
                priority=p,
                reason=Reason.LOW_CONFIDENCE,
                context={"n": i},
            )  # fmt: skip
            for i, (s, p) in enumerate(zip(replicas, priorities, strict=True))
        ]
    )
    assert not [o for o in outcomes if isinstance(o, BaseException)], outcomes
    created = [o for o in outcomes if isinstance(o, tuple) and o[1]]
    assert len(created) == 1
    (only,) = replicas[0].list_tickets()
    assert only.priority is Priority.URGENT
    seen = [only.context.get("n"), *(u["n"] for u in only.context.get("updates", []))]
    assert sorted(seen) == [0, 1, 2, 3]
