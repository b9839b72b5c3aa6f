"""Data flows one way: knowledge → encoder → vector index → knowledge index (with scoring) →
engine, pure; the store beside them; evaluation on the engine, the library (gap topics, the
weekly report, FAQ changes) and the service over engine and store; the front doors (CLI, API,
console) on top. This walks the imports of every module and checks the table below, which
docs/architecture.md draws."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import autoreply

PACKAGE = Path(autoreply.__file__).parent

FRONT_DOORS = {"cli", "api", "console"}
"""The ways in: none imports another. ``app`` puts the API and the console on one app."""

# module or package → the autoreply modules it may import (besides itself). Rows are in layer
# order, bottom layer first: a row names only rows above it, so imports cannot go in a circle.
ALLOWED: dict[str, set[str]] = {
    # -- foundations: no I/O, no knowledge of anything above ---------------------------------
    "errors": set(),
    "models": {"errors"},
    "channels": {"errors", "models"},  # chat platforms; settings holds their configuration
    "settings": {"channels", "errors", "models"},
    "text": {"errors", "models"},
    "redact": set(),
    "hours": {"errors", "settings"},
    # -- deciding a message, pure (no store): knowledge → encoder → vector index → knowledge
    #    index (ranking, with scoring's maths and its cache on disk) → engine ----------------
    "faqfiles": {"errors"},
    "knowledge": {"errors", "faqfiles", "models", "text"},
    "encoder": {"errors"},
    "vector_index": {"encoder", "errors"},
    "linear": set(),
    "lexical": {"linear"},
    "scoring": {"lexical", "linear"},
    "index_cache": {"encoder", "errors", "knowledge", "scoring", "vector_index"},
    "knowledge_index": {
        "encoder",
        "errors",
        "faqfiles",
        "index_cache",
        "knowledge",
        "models",
        "scoring",
        "text",
        "vector_index",
    },
    "engine": {
        "encoder",
        "errors",
        "knowledge",
        "knowledge_index",
        "models",
        "scoring",
        "settings",
        "text",
        "vector_index",
    },
    # tuning the e5 encoder on the knowledge base (torch only inside, lazily); ``cache`` picks
    # the tuned model for the service
    "tuning": {"encoder", "errors", "knowledge", "knowledge_index"},
    # -- storage: the records and their SQL; nothing of the engine ---------------------------
    "store": {"errors", "models"},
    # -- evaluation: the engine on labelled questions, never the store or the service; gap
    #    clustering is pure maths over vectors, so the evaluation scores it without a database
    "ranking_metrics": set(),
    "eval_report": {"errors", "ranking_metrics"},
    "gap_clustering": {"errors", "knowledge_index", "models", "ranking_metrics", "text"},
    # gap_clustering.discover() in a process of its own (python -m autoreply.gap_worker)
    "gap_worker": {"gap_clustering"},
    "eval_questions": {"errors", "knowledge", "models"},
    "evaluation": {
        "encoder",
        "engine",
        "errors",
        "eval_questions",
        "eval_report",
        "gap_clustering",
        "knowledge",
        "knowledge_index",
        "models",
        "ranking_metrics",
        "scoring",
        "settings",
        "text",
        "vector_index",
    },
    # -- library over the store: gap topics and their suggestions, the weekly report ----------
    "gap_topics": {
        "errors",
        "gap_clustering",
        "gap_worker",
        "knowledge_index",
        "models",
        "redact",
        "store",
    },
    "gap_suggestions": {"errors", "knowledge", "models", "redact", "store", "text"},
    "weekly_data": {
        "errors",
        "gap_clustering",
        "gap_suggestions",
        "knowledge",
        "models",
        "redact",
        "store",
    },
    "weekly_render": {"errors", "redact", "weekly_data"},
    # -- writing users' FAQ files: one entry's lines at a time, checked, journalled; shared
    #    by the CLI, the admin API and the console (no front door imports another) -----------
    "faqwrite": {"errors", "faqfiles", "knowledge", "models"},
    "faqjournal": {"errors", "faqwrite", "models", "store"},
    "faqchange": {
        "errors",
        "faqjournal",
        "faqwrite",
        "gap_clustering",
        "gap_suggestions",
        "knowledge",
        "knowledge_index",
        "models",
        "store",
    },
    # learning from answered conversations: evidence in the store, accepted variants written
    # through faqchange; shared by the service and every front door
    "learning": {
        "errors",
        "faqchange",
        "faqjournal",
        "knowledge",
        "knowledge_index",
        "models",
        "redact",
        "store",
        "text",
    },
    # -- the library's entry point: engine + store -------------------------------------------
    # satisfaction through the conversation and the handoff payload: pieces of the service
    "csat": {"models", "store", "text"},
    "handoff": {"models"},
    "gap_log": {"knowledge", "models", "redact", "store", "text"},
    "service": {
        "csat",
        "encoder",
        "engine",
        "errors",
        "gap_log",
        "gap_topics",
        "handoff",
        "hours",
        "knowledge",
        "knowledge_index",
        "learning",
        "models",
        "settings",
        "store",
        "tuning",
        "vector_index",
    },
    # bulk actions on tickets, shared by the agent API and the console
    "desk": {"errors", "models", "service", "store"},
    "__init__": {"encoder", "engine", "errors", "knowledge", "models", "service", "settings"},
    # -- the running service: shared state first, then the two HTTP front doors --------------
    "web": {"channels", "csat", "encoder", "errors", "models", "service", "settings", "store"},
    "api": {
        "channels",
        "desk",
        "errors",
        "faqchange",
        "faqfiles",
        "faqjournal",
        "faqwrite",
        "gap_suggestions",
        "knowledge",
        "knowledge_index",
        "learning",
        "models",
        "service",
        "store",
        "web",
        "weekly_data",
        "weekly_render",
    },
    "console": {
        "desk",
        "errors",
        "faqchange",
        "faqjournal",
        "faqwrite",
        "gap_suggestions",
        "knowledge",
        "learning",
        "models",
        "service",
        "store",
        "text",
        "web",
        "weekly_data",
        "weekly_render",
    },
    "app": {"api", "console", "encoder", "errors", "models", "service", "settings", "web"},
    # -- the command line: the library, and the app for `autoreply serve` --------------------
    "cli": {
        "app",
        "errors",
        "eval_report",
        "evaluation",
        "faqchange",
        "faqjournal",
        "gap_suggestions",
        "knowledge",
        "learning",
        "models",
        "ranking_metrics",
        "service",
        "settings",
        "store",
        "tuning",
        "weekly_data",
        "weekly_render",
    },
    "__main__": {"cli"},
}


def _components() -> set[str]:
    """Every top-level module and package of autoreply (data-only folders excluded)."""
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    return modules | packages


def _paths(name: str) -> list[Path]:
    if (PACKAGE / f"{name}.py").exists():
        return [PACKAGE / f"{name}.py"]
    return sorted((PACKAGE / name).rglob("*.py"))


def _imports(path: Path) -> set[str]:
    """The autoreply components ``path`` imports, in any of the three spellings
    (``import autoreply.x``, ``from autoreply.x import y``, ``from autoreply import x``)."""
    components = _components()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "autoreply":
            found |= {alias.name for alias in node.names} & components
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("autoreply."):
            found.add((node.module or "").split(".")[1])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("autoreply."):
                    found.add(alias.name.split(".")[1])
    return found


def test_every_module_and_package_has_a_row() -> None:
    """A new module says where it belongs before it can import anything."""
    assert _components() - set(ALLOWED) == set(), "add a row to ALLOWED (and the doc)"
    assert set(ALLOWED) - _components() == set(), "remove the rows of modules that are gone"


def test_lower_layers_do_not_import_upper_layers() -> None:
    for name, allowed in ALLOWED.items():
        paths = _paths(name)
        assert paths, name
        for path in paths:
            extra = _imports(path) - allowed - {name}
            assert not extra, f"{path.relative_to(PACKAGE)} imports {sorted(extra)}"


def test_front_doors_do_not_import_each_other() -> None:
    """The CLI, the API and the console share library modules, never each other's."""
    for door in FRONT_DOORS:
        for path in _paths(door):
            assert not _imports(path) & (FRONT_DOORS - {door}), path
    for path in _paths("web"):
        assert not _imports(path) & (FRONT_DOORS | {"app"}), path


def test_the_import_walk_sees_every_spelling(tmp_path: Path) -> None:
    """The checker itself: all three import forms are found, other packages are not."""
    source = tmp_path / "m.py"
    source.write_text(
        "import autoreply.engine\nfrom autoreply.store import Store\n"
        "from autoreply import gap_topics, __version__\nfrom fastapi import FastAPI\n",
        encoding="utf-8",
    )
    assert _imports(source) == {"engine", "store", "gap_topics"}


def test_engine_never_touches_the_store() -> None:
    assert "store" not in _imports(PACKAGE / "engine.py")


def _reachable(name: str) -> set[str]:
    """Every component ``name`` imports, directly or through the components it imports."""
    found: set[str] = set()
    todo = [name]
    while todo:
        for path in _paths(todo.pop()):
            new = _imports(path) - found - {name}
            found |= new
            todo.extend(new)
    return found


@pytest.mark.parametrize("name", ["engine", "gap_clustering", "evaluation"])
def test_pure_layers_never_reach_the_store(name: str) -> None:
    """The engine, the clustering maths and the evaluation run without a database: not even
    through another module do they import the store or the service."""
    assert not _reachable(name) & {"store", "service"}


def test_rows_are_in_layer_order() -> None:
    """Each row may import only rows above it: the table is the layering, with no cycle."""
    above: set[str] = set()
    for name, allowed in ALLOWED.items():
        assert allowed <= above, f"{name} may import {sorted(allowed - above)}, listed below it"
        above.add(name)


def test_no_module_is_over_600_lines() -> None:
    """One concept per module: a module past 600 lines holds more than one."""
    long = {
        str(path.relative_to(PACKAGE)): n
        for path in PACKAGE.rglob("*.py")
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > 600
    }
    assert not long, long


def test_public_api_is_sorted_and_importable() -> None:
    assert autoreply.__all__ == sorted(autoreply.__all__)
    assert set(autoreply.__all__) == set(autoreply._EXPORTS)
    for name in autoreply.__all__:
        assert getattr(autoreply, name) is not None
