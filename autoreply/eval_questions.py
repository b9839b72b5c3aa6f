"""Labelled question files for the evaluation: JSONL or CSV in, LabelledQuestion out, every
problem a QuestionFormatError that names file:line and says what to write instead. Knows
nothing about ranking or measuring (that is autoreply.evaluation)."""

from __future__ import annotations

import csv
import difflib
import io
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from autoreply.errors import QuestionFormatError
from autoreply.knowledge import KnowledgeBase


class LabelledQuestion(BaseModel):
    """One labelled question: what a customer asked and which entry should answer it."""

    model_config = ConfigDict(frozen=True)

    question: str = Field(min_length=1)
    expected_id: str | None = None
    """The entry that answers it; None: out of scope, it should not be answered."""
    acceptable_ids: tuple[str, ...] = ()
    """Other entries that also count as correct."""
    category: str | None = None
    gap_topic: str | None = None
    """For a question nobody can answer yet: the topic a new FAQ entry would cover."""
    line: int | None = Field(default=None, exclude=True)
    """Where it was read from, for error messages."""

    @property
    def in_scope(self) -> bool:
        return self.expected_id is not None

    @property
    def correct_ids(self) -> frozenset[str]:
        if self.expected_id is None:
            return frozenset()
        return frozenset((self.expected_id, *self.acceptable_ids))


def load_questions(path: str | Path, *, kb: KnowledgeBase | None = None) -> list[LabelledQuestion]:
    """Read labelled questions from JSONL or CSV; a QuestionFormatError names file:line.

    Fields: ``question``, ``expected_id`` (null or empty: out of scope), optional
    ``acceptable_ids`` (a list; in CSV separated by ``|``), ``category``, ``gap_topic``. Other
    fields are ignored. With ``kb``, every id must exist in it.
    """
    path = Path(path)
    if path.suffix.lower() not in (".jsonl", ".csv"):
        raise QuestionFormatError(path, line=None, problem="is not a .jsonl or .csv file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise QuestionFormatError(
            path, line=None, problem="is not UTF-8: save it as UTF-8"
        ) from None
    except OSError as exc:
        problem = f"cannot be read ({exc.strerror or exc})"
        raise QuestionFormatError(path, line=None, problem=problem) from None
    rows = _jsonl_rows(path, text) if path.suffix.lower() == ".jsonl" else _csv_rows(path, text)
    questions = [_parse_question(path, line, data) for line, data in rows]
    if not questions:
        raise QuestionFormatError(path, line=None, problem="has no questions")
    if kb is not None:
        check_ids(questions, kb, source=path)
    return questions


def check_ids(
    questions: Sequence[LabelledQuestion], kb: KnowledgeBase, *, source: str | Path
) -> None:
    """QuestionFormatError at the first question naming an entry the knowledge base lacks."""
    known = sorted(e.id for e in kb.entries)
    for q in questions:
        for entry_id in sorted(q.correct_ids):
            if entry_id not in kb:
                near = difflib.get_close_matches(entry_id, known, n=5) or known[:5]
                more = f" (+{len(known) - len(near)} more)" if len(known) > len(near) else ""
                field = "expected_id" if entry_id == q.expected_id else "acceptable_ids"
                problem = (
                    f"{field} '{entry_id}' is not in the knowledge base; "
                    f"known: {', '.join(near)}{more}"
                )
                raise QuestionFormatError(source, line=q.line, problem=problem)


def _jsonl_rows(path: Path, text: str) -> Iterator[tuple[int, object]]:
    for no, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            msg = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            problem = f'is not valid JSON ({msg}): write {{"question": ..., "expected_id": ...}}'
            raise QuestionFormatError(path, line=no, problem=problem) from None
        yield no, data


def _csv_rows(path: Path, text: str) -> Iterator[tuple[int, object]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    start = 1  # a quoted cell may span lines: a row's number is the line it starts on
    try:
        for row in reader:
            line, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in row):
                continue
            if header is None:
                header = [cell.strip().lower() for cell in row]
                continue
            data: dict[str, object] = {}
            for name, cell in zip(header, row, strict=False):
                if name == "acceptable_ids":
                    data[name] = [part for part in cell.split("|") if part.strip()]
                elif name:
                    data[name] = cell
            yield line, data
    except csv.Error as exc:
        raise QuestionFormatError(path, line=start, problem=f"is not valid CSV ({exc})") from None


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return f"a number ({value})"
    return "a list" if isinstance(value, list) else "a mapping"


def _parse_question(path: Path, line: int, data: object) -> LabelledQuestion:
    def bad(problem: str) -> QuestionFormatError:
        return QuestionFormatError(path, line=line, problem=problem)

    if not isinstance(data, dict):
        kind = _kind(data) if not isinstance(data, str) else "text"
        raise bad(f"a question must be an object with question and expected_id, not {kind}")
    fields: dict[str, Any] = {"line": line}
    for name in ("question", "expected_id", "category", "gap_topic"):
        value = data.get(name)
        if value is not None and not isinstance(value, str):
            hint = ": put it in quotes" if isinstance(value, int | float) else ""
            raise bad(f"field '{name}' must be text, not {_kind(value)}{hint}")
        fields[name] = value.strip() if value and value.strip() else None
    if "question" not in data:
        raise bad("field 'question' is missing: write the customer's question")
    if fields["question"] is None:
        raise bad("field 'question' is empty: write the customer's question or delete the line")
    if "expected_id" not in data:
        raise bad("field 'expected_id' is missing: give the answering entry's id, or null")
    ids = data.get("acceptable_ids") or []
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise bad("field 'acceptable_ids' must be a list of entry ids, e.g. [\"refund-how\"]")
    fields["acceptable_ids"] = tuple(i.strip() for i in ids if i.strip())
    if fields["acceptable_ids"] and fields["expected_id"] is None:
        raise bad("field 'acceptable_ids' is set but expected_id is empty: set expected_id too")
    return LabelledQuestion(**fields)
