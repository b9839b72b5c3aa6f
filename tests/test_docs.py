"""The README stays true: every setting is documented, the settings table is current."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from autoreply import cli
from autoreply.settings import settings_rows

README = Path(__file__).resolve().parent.parent / "README.md"


def test_every_setting_appears_in_the_readme() -> None:
    text = README.read_text(encoding="utf-8")
    missing = [env for env, _, _ in settings_rows() if f"`{env}`" not in text]
    assert not missing, f"add to README (autoreply config --markdown): {missing}"


def test_readme_settings_table_is_current() -> None:
    text = README.read_text(encoding="utf-8")
    block = re.search(r"<!-- settings:start -->\n(.*?)\n<!-- settings:end -->", text, re.S)
    assert block is not None
    result = CliRunner().invoke(cli.app, ["config", "--markdown"], env={"COLUMNS": "400"})
    assert result.exit_code == 0
    assert block.group(1).strip() == result.output.strip(), (
        "regenerate the README settings table with: autoreply config --markdown"
    )


def test_readme_names_the_two_commands() -> None:
    text = README.read_text(encoding="utf-8")
    assert "pip install . && autoreply demo" in text
    assert "pip install '.[test]' && pytest" in text
