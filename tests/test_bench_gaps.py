"""bench/gaps.py on any set folder: a set without out-of-scope questions (``--oos 0``) and an
entry held out by the bench (``--holdout``), on a tiny set written here, hashing encoder."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest


def load_bench() -> ModuleType:
    path = Path(__file__).resolve().parent.parent / "bench" / "gaps.py"
    spec = importlib.util.spec_from_file_location("bench_gaps", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_set(folder: Path) -> Path:
    """A tiny set in the shared format, no out-of-scope questions: three intents, one of
    which the bench holds out."""
    folder.mkdir()
    intents = {
        "rocket": ["when does the rocket launch", "rocket launch time", "next rocket launch"],
        "weather": ["weather tomorrow", "tomorrow's weather forecast", "will it rain tomorrow"],
        "refund": ["how do i get a refund", "refund my order", "i want my money back"],
    }
    faq = [
        {"id": k, "question": qs[0], "variants": qs[1:], "answer": f"[{k}]", "category": "x"}
        for k, qs in intents.items()
    ]
    tests = [
        {"question": f"{q} please", "expected_id": k, "intent": k}
        for k, qs in intents.items()
        for q in qs
    ]
    lines = {"faq.jsonl": faq, "test.jsonl": tests}
    for name, rows in lines.items():
        text = "".join(json.dumps(r) + "\n" for r in rows)
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def test_bench_replays_a_set_without_out_of_scope_questions(tmp_path: Path) -> None:
    """--oos 0 (and a set with none) reports no out-of-scope share instead of dividing by
    zero; --holdout relabels the left-out entry's questions as its gap topic and leaves the
    set's files as they were."""
    bench = load_bench()
    folder = write_set(tmp_path / "tiny")
    before = (folder / "faq.jsonl").read_text(encoding="utf-8")
    faq, questions = bench.load_set(folder, holdout=1, seed=3, tmp=tmp_path)
    gap = {q.gap_topic for q in questions if q.gap_topic}
    assert len(gap) == 1 and faq != folder / "faq.jsonl"
    assert all(json.loads(line)["id"] not in gap for line in faq.read_text().splitlines())
    result = bench.replay_set(folder, holdout=1, seed=3, oos=0, runs=2, encoder="hashing")
    assert result["replayed"].get("out_of_scope", 0) == 0
    assert result["out_of_scope_logged"] is None
    assert result["incremental"]["held_out"] == 1
    assert (folder / "faq.jsonl").read_text(encoding="utf-8") == before
    with pytest.raises(SystemExit, match="leaves no entry"):
        bench.load_set(folder, holdout=3, seed=3, tmp=tmp_path)
