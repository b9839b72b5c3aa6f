"""``autoreply serve`` and ``autoreply agents ...`` (autoreply.cli.server), on their own typer
app so they are tested whether or not autoreply.cli has registered them yet."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from autoreply.cli.server import register
from autoreply.store.sqlite import SQLiteStore

runner = CliRunner()


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer(pretty_exceptions_enable=False)
    register(app)
    return app


def test_agents_add_prints_the_token_once_and_stores_its_hash(
    cli: typer.Typer, tmp_path: Path
) -> None:
    """The token is on stdout alone; the store finds the agent by it but does not hold it."""
    db = str(tmp_path / "cli.db")
    result = runner.invoke(cli, ["agents", "add", "alice", "--role", "admin", "--db", db])
    assert result.exit_code == 0, result.output
    token = result.stdout.strip().splitlines()[-1]
    assert token.startswith("ar_")
    with SQLiteStore(db) as store:
        found = store.agent_for_token(token)
        assert found is not None and found.name == "alice" and found.role.value == "admin"
    assert token.encode() not in Path(db).read_bytes()


def test_agents_list_disable_and_renew(cli: typer.Typer, tmp_path: Path) -> None:
    """list shows state (never tokens); disable stops a token; token issues a new one."""
    db = str(tmp_path / "cli.db")
    first = runner.invoke(cli, ["agents", "add", "bob", "--role", "agent", "--db", db])
    old = first.stdout.strip().splitlines()[-1]
    runner.invoke(
        cli, ["agents", "add", "eve", "--role", "agent", "--expires-days", "1", "--db", db]
    )
    listed = runner.invoke(cli, ["agents", "list", "--json", "--db", db])
    rows: list[dict[str, Any]] = json.loads(listed.stdout)
    assert [r["name"] for r in rows] == ["bob", "eve"]
    assert rows[0]["expires_at"] is None and rows[1]["expires_at"] is not None
    assert old not in listed.stdout and "token" not in listed.stdout
    assert runner.invoke(cli, ["agents", "disable", "bob", "--db", db]).exit_code == 0
    table = runner.invoke(cli, ["agents", "list", "--db", db]).stdout
    assert "disabled" in table and "active" in table
    renewed = runner.invoke(cli, ["agents", "token", "bob", "--db", db])
    new = renewed.stdout.strip().splitlines()[-1]
    with SQLiteStore(db) as store:
        assert store.agent_for_token(old) is None
        agent = store.agent_for_token(new)
        assert agent is not None and not agent.disabled


def test_agents_errors_are_one_line(cli: typer.Typer, tmp_path: Path) -> None:
    """A bad role is a usage error listing the roles; a taken name or unknown agent fails."""
    db = str(tmp_path / "cli.db")
    bad = runner.invoke(cli, ["agents", "add", "x", "--role", "boss", "--db", db])
    assert bad.exit_code == 2 and "agent, admin" in bad.output
    runner.invoke(cli, ["agents", "add", "x", "--role", "agent", "--db", db])
    again = runner.invoke(cli, ["agents", "add", "x", "--role", "agent", "--db", db])
    assert again.exit_code != 0 and "already exists" in str(again.exception)
    missing = runner.invoke(cli, ["agents", "disable", "nobody", "--db", db])
    assert missing.exit_code != 0 and "no agent 'nobody'" in str(missing.exception)


def test_serve_runs_uvicorn_on_the_app(
    cli: typer.Typer, tmp_path: Path, faq_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """serve builds the app from the options and hands it to uvicorn with host and port."""
    import uvicorn

    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(app=app, **kw))
    db = str(tmp_path / "s.db")
    args = ["serve", "--port", "8123", "--knowledge", str(faq_dir), "--db", db]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert seen["host"] == "127.0.0.1" and seen["port"] == 8123
    assert seen["app"].title == "autoreply"
    help_text = runner.invoke(cli, ["serve", "--help"]).stdout
    assert "Example:" in help_text
