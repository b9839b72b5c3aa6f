"""Data flows one way: knowledge → encoder → index → engine → store; service, CLI and server on
top. This walks the imports of every module and checks the table in ../shared/STYLE.md."""

from __future__ import annotations

import ast
from pathlib import Path

import autoreply

PACKAGE = Path(autoreply.__file__).parent

# module → the autoreply modules it may import (besides itself and its own subpackage)
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "models": {"errors"},
    "settings": {"errors", "models", "channels"},
    "text": {"errors", "models"},
    "redact": set(),
    "hours": {"errors", "settings"},
    "faqfiles": {"errors"},
    "knowledge": {"text", "models", "errors", "faqfiles"},
    "encoder": {"errors"},
    "index": {"encoder", "errors"},
    "scoring": set(),
    "retriever": {
        "knowledge",
        "encoder",
        "index",
        "scoring",
        "text",
        "models",
        "errors",
        "faqfiles",
    },
    "engine": {
        "knowledge",
        "encoder",
        "index",
        "retriever",
        "text",
        "models",
        "errors",
        "settings",
    },
    "store": {"models", "errors", "store"},
    "channels": {"errors", "models", "channels"},
    "ranking_metrics": set(),
    "eval_report": {"errors", "ranking_metrics"},
    # gap analytics read the store and the knowledge index, never the service
    "gaps": {
        "errors",
        "knowledge",
        "ranking_metrics",
        "models",
        "redact",
        "retriever",
        "store",
        "text",
    },
    "weekly_data": {"errors", "gaps", "knowledge", "models", "redact", "store"},
    "weekly_render": {"errors", "weekly_data", "redact"},
    # writing users' FAQ files: one entry's lines at a time, checked, journalled; shared by
    # the CLI, the admin API and the console (no front door imports another)
    "faqwrite": {"errors", "faqfiles", "knowledge", "models"},
    "faqjournal": {"errors", "faqwrite", "models", "store"},
    "faqchange": {
        "errors",
        "faqjournal",
        "faqwrite",
        "gaps",
        "knowledge",
        "models",
        "retriever",
        "store",
    },
    # learning from answered conversations: evidence in the store, accepted variants written
    # through faqchange; shared by the service and every front door
    "learning": {
        "errors",
        "faqchange",
        "faqjournal",
        "knowledge",
        "models",
        "redact",
        "retriever",
        "store",
        "text",
    },
}


def test_front_doors_do_not_import_each_other() -> None:
    """The console and the API share library modules, never the CLI's."""
    for folder in ("console", "api"):
        for path in sorted((PACKAGE / folder).glob("*.py")):
            assert not _imports(path) & {"cli"}, path


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.startswith("autoreply.")
        ):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("autoreply."):
                    found.add(alias.name.split(".")[1])
    return found


def test_lower_layers_do_not_import_upper_layers() -> None:
    for name, allowed in ALLOWED.items():
        paths = [PACKAGE / f"{name}.py"] if (PACKAGE / f"{name}.py").exists() else []
        paths += sorted((PACKAGE / name).glob("*.py")) if (PACKAGE / name).is_dir() else []
        assert paths, name
        for path in paths:
            extra = _imports(path) - allowed - {name}
            assert not extra, f"{path.relative_to(PACKAGE)} imports {sorted(extra)}"


def test_engine_never_touches_the_store() -> None:
    assert "store" not in _imports(PACKAGE / "engine.py")


def test_public_api_is_sorted_and_importable() -> None:
    assert autoreply.__all__ == sorted(autoreply.__all__)
    assert set(autoreply.__all__) == set(autoreply._EXPORTS)
    for name in autoreply.__all__:
        assert getattr(autoreply, name) is not None
