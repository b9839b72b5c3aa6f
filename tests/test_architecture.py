"""Data flows one way: knowledge → encoder → index → engine → store; the service on top of
them; the front doors (CLI, API, console) on top of the library. This walks the imports of
every module and checks the table below, which docs/architecture.md draws."""

from __future__ import annotations

import ast
from pathlib import Path

import autoreply

PACKAGE = Path(autoreply.__file__).parent

FRONT_DOORS = {"cli", "api", "console"}
"""The ways in: none imports another. ``app`` puts the API and the console on one app."""

# module or package → the autoreply modules it may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    # -- foundations: no I/O, no knowledge of anything above ---------------------------------
    "errors": set(),
    "models": {"errors"},
    "settings": {"errors", "models", "channels"},
    "text": {"errors", "models"},
    "redact": set(),
    "hours": {"errors", "settings"},
    # -- the knowledge base, vectors and the engine (pure: no store) -------------------------
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
    # tuning the e5 encoder on the knowledge base (torch only inside, lazily); ``cache`` picks
    # the tuned model for the service
    "tuning": {"encoder", "errors", "knowledge", "text"},
    # -- storage and chat channels -----------------------------------------------------------
    "store": {"models", "errors"},
    "channels": {"errors", "models"},
    # -- evaluation: the engine on labelled questions, never the store or the service --------
    "ranking_metrics": set(),
    "eval_report": {"errors", "ranking_metrics"},
    "evaluation": {
        "encoder",
        "engine",
        "errors",
        "eval_report",
        "gaps",
        "index",
        "knowledge",
        "models",
        "ranking_metrics",
        "retriever",
        "scoring",
        "settings",
        "text",
    },
    # -- gap analytics read the store and the knowledge index, never the service -------------
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
    # -- writing users' FAQ files: one entry's lines at a time, checked, journalled; shared
    #    by the CLI, the admin API and the console (no front door imports another) -----------
    "faqwrite": {"errors", "faqfiles", "knowledge", "models"},
    # bulk actions on tickets, shared by the agent API and the console
    "desk": {"errors", "models", "service", "store"},
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
    # -- the library's entry point: engine + store -------------------------------------------
    # satisfaction through the conversation and the handoff payload: pieces of the service
    "csat": {"models", "store", "text"},
    "handoff": {"models"},
    "service": {
        "csat",
        "encoder",
        "engine",
        "errors",
        "gaps",
        "handoff",
        "hours",
        "index",
        "knowledge",
        "learning",
        "models",
        "redact",
        "retriever",
        "settings",
        "store",
        "text",
        "tuning",
    },
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
        "gaps",
        "knowledge",
        "learning",
        "models",
        "retriever",
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
        "gaps",
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
        "gaps",
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
        "from autoreply import gaps, __version__\nfrom fastapi import FastAPI\n",
        encoding="utf-8",
    )
    assert _imports(source) == {"engine", "store", "gaps"}


def test_engine_never_touches_the_store() -> None:
    assert "store" not in _imports(PACKAGE / "engine.py")


def test_no_module_is_over_600_lines() -> None:
    """One concept per module: a module past 600 lines holds more than one."""
    waiting = {"evaluation.py"}  # being split on another branch (issue 18)
    long = {
        str(path.relative_to(PACKAGE)): n
        for path in PACKAGE.rglob("*.py")
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > 600
    }
    assert set(long) <= waiting, long


def test_public_api_is_sorted_and_importable() -> None:
    assert autoreply.__all__ == sorted(autoreply.__all__)
    assert set(autoreply.__all__) == set(autoreply._EXPORTS)
    for name in autoreply.__all__:
        assert getattr(autoreply, name) is not None
