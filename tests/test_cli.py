"""The command line, run through typer's runner; errors are one line, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from autoreply import cli

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path, faq_dir: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("AUTOREPLY_ENCODER", "hashing")
    monkeypatch.setenv("AUTOREPLY_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("AUTOREPLY_HOURS__WEEKLY", "{}")
    return {"knowledge": str(faq_dir), "db": str(tmp_path / "cli.db")}


def run(*args: str) -> object:
    return runner.invoke(cli.app, list(args), catch_exceptions=False)


def _command_paths() -> list[list[str]]:
    """Every leaf command of the app, walked from typer's command tree so none is missed."""
    paths: list[list[str]] = []

    def walk(command: Any, path: list[str]) -> None:
        if getattr(command, "commands", None):
            for name, sub in command.commands.items():
                walk(sub, [*path, name])
        else:
            paths.append(path)

    walk(typer.main.get_command(cli.app), [])
    return paths


def test_every_command_has_help_with_an_example() -> None:
    paths = _command_paths()
    for expected in (["ask"], ["serve"], ["report"], ["gaps", "topics"], ["agents", "add"]):
        assert expected in paths
    for path in paths:
        result = runner.invoke(cli.app, [*path, "--help"])
        assert result.exit_code == 0, path
        assert "Example:" in result.output, path


def test_every_command_is_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    for path in _command_paths():
        assert f"autoreply {path[0]}" in readme, path


def test_ask_prints_decision_and_top_candidates(env: dict[str, str]) -> None:
    result = run(
        "ask", "How do I cancel my subscription?", "-k", env["knowledge"], "--db", env["db"]
    )
    assert result.exit_code == 0
    assert "answer" in result.output and "cancel" in result.output


def test_ask_json_then_queue_and_gaps(env: dict[str, str]) -> None:
    result = run("ask", "zxqv wpfk", "-k", env["knowledge"], "--db", env["db"], "--json")
    data = json.loads(result.output)
    assert data["decision"] == "escalate" and data["ticket_id"] and data["gap_id"]
    tid = str(data["ticket_id"])
    queue = json.loads(run("queue", "list", "--db", env["db"], "--json").output)
    assert [t["id"] for t in queue] == [data["ticket_id"]]
    gaps = json.loads(run("gaps", "list", "--db", env["db"], "--json").output)
    assert gaps[0]["question"] == "zxqv wpfk"
    assert run("queue", "claim", tid, "--agent", "alice", "--db", env["db"]).exit_code == 0
    assert (
        run("queue", "reply", tid, "Fixed.", "--agent", "alice", "--db", env["db"]).exit_code == 0
    )
    assert run("queue", "resolve", tid, "--agent", "alice", "--db", env["db"]).exit_code == 0
    promoted = run("queue", "promote", tid, "--agent", "alice", "--db", env["db"])
    assert "candidate #1" in promoted.output
    mine = json.loads(run("queue", "list", "--db", env["db"], "--mine", "alice", "--json").output)
    assert mine[0]["status"] == "resolved"


def test_ownership_error_is_one_line_exit_1(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    data = json.loads(
        run("ask", "转人工", "-k", env["knowledge"], "--db", env["db"], "--json").output
    )
    tid = str(data["ticket_id"])
    run("queue", "claim", tid, "--agent", "alice", "--db", env["db"])
    with pytest.raises(SystemExit) as exc:
        _main(["queue", "resolve", tid, "--agent", "bob", "--db", env["db"]])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert "alice" in err and "Traceback" not in err


def _main(args: list[str]) -> None:
    import sys

    old = sys.argv
    sys.argv = ["autoreply", *args]
    try:
        cli.main()
    finally:
        sys.argv = old


def test_check_reports_every_problem_with_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"id": "a", "question": "q1", "answer": "x"}\n'
        '{"id": "a", "question": "q2", "answer": "y"}\n'
        '{"id": "c", "question": "", "answer": "z"}\n',
        encoding="utf-8",
    )
    result = runner.invoke(cli.app, ["check", str(bad)])
    assert result.exit_code == 1
    assert "bad.jsonl:2" in result.output and "bad.jsonl:3" in result.output


def test_check_json_on_a_good_knowledge_base(faq_dir: Path) -> None:
    result = run("check", str(faq_dir), "--json")
    data = json.loads(result.output)
    assert data["ok"] and data["entries"] == 6


def test_index_build_then_reuse(env: dict[str, str]) -> None:
    first = json.loads(run("index", "build", "-k", env["knowledge"], "--json").output)
    second = json.loads(run("index", "build", "-k", env["knowledge"], "--json").output)
    assert first["status"] == "built" and second["status"] == "loaded"


def test_bad_status_filter_lists_the_valid_ones(env: dict[str, str]) -> None:
    result = runner.invoke(cli.app, ["queue", "list", "--db", env["db"], "--status", "done"])
    assert result.exit_code == 2
    assert "open, claimed, resolved" in result.output


def test_demo_runs_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`autoreply demo` on the bundled knowledge base with the real encoder."""
    monkeypatch.setenv("AUTOREPLY_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("AUTOREPLY_ENCODER", raising=False)
    result = runner.invoke(cli.app, ["demo"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = result.output
    for expected in (
        "answer (confident)",
        "clarify (ambiguous)",
        "asked_for_human",
        "complaint",
        "low_confidence",
        "FAQ gaps",
    ):
        assert expected in out, expected
    assert "gaps logged: 2" in out and "3 open" in out  # the clarification and the rocket


def test_learn_list_accept_dismiss_and_undo(env: dict[str, str], faq_dir: Path) -> None:
    """Learned phrasings are listed with their evidence, accepted into their entry (undo
    takes it back and makes them pending again) or dismissed; a bad id is one line, exit 1."""
    from autoreply.store import LearningSource, open_store

    store = open_store(env["db"])
    for n, text in enumerate(("stop my monthly payments", "my cat ate my card")):
        store.add_evidence(
            entry_id="cancel",
            text=text,
            normalized=text,
            source=LearningSource.PICKED,
            message_id=n,
        )
    store.close()
    listed = json.loads(run("learn", "list", "--db", env["db"], "--json").output)
    assert [(v["entry_id"], v["counts"]) for v in listed] == [("cancel", {"picked": 1})] * 2
    keep, drop = sorted(listed, key=lambda v: v["id"])
    before = (faq_dir / "faq.yaml").read_bytes()
    done = run("learn", "accept", str(keep["id"]), "-k", env["knowledge"], "--db", env["db"])
    assert done.exit_code == 0 and "added 1 variant(s) to cancel" in done.output
    assert "stop my monthly payments" in (faq_dir / "faq.yaml").read_text("utf-8")
    gone = run("learn", "dismiss", str(drop["id"]), "--db", env["db"])
    assert "dismissed 1" in gone.output
    assert json.loads(run("learn", "list", "--db", env["db"], "--json").output) == []
    assert run("undo", "-k", env["knowledge"], "--db", env["db"]).exit_code == 0
    assert (faq_dir / "faq.yaml").read_bytes() == before
    waiting = json.loads(run("learn", "list", "--db", env["db"], "--json").output)
    assert [v["id"] for v in waiting] == [keep["id"]]
    bad = runner.invoke(cli.app, ["learn", "dismiss", "999", "--db", env["db"]])
    assert bad.exit_code == 1 and "no candidate variant 999" in bad.output


def _words(text: str) -> set[str]:
    """Whitespace-separated words, with the table's borders taken out."""
    for border in "│┃║|":
        text = text.replace(border, " ")
    return set(text.split())


@pytest.mark.parametrize("terminal", [True, False])
@pytest.mark.parametrize("width", [60, 80, 120, 200, 300])
def test_config_keeps_every_word_at_any_width(terminal: bool, width: int) -> None:
    """Square brackets are text, not rich markup, and no word is cut to fit the width."""
    import io

    from rich.console import Console

    from autoreply.cli.config import print_settings
    from autoreply.settings import settings_rows

    rows = settings_rows()
    shown = io.StringIO()
    print_settings(
        rows, Console(file=shown, width=width, force_terminal=terminal, color_system=None)
    )
    missing = {word for row in rows for word in " ".join(row).split()} - _words(shown.getvalue())
    assert not missing, f"width {width}, terminal {terminal}: lost {sorted(missing)[:5]}"
    assert "…" not in shown.getvalue()


def test_config_piped_keeps_markup_lookalikes_and_long_names() -> None:
    """The words issue 21 lost: '[default: every core]', 'autoreply[use]' and the longest
    variable names, in plain piped output."""
    from autoreply.settings import settings_rows

    result = runner.invoke(cli.app, ["config"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "[default: every core]" in result.stdout
    assert "pip install 'autoreply[use]'" in " ".join(result.stdout.split())
    longest = max((row[0] for row in settings_rows()), key=len)
    assert f"\n{longest} = " in result.stdout
