"""Read FAQ files of every format into raw records with real line numbers.

One reader per format (.yaml/.yml, .json, .jsonl, .csv, .xlsx); each yields ``Record``s
(the raw mapping, its line, and the line of each key where the format knows it) or
FAQFormatErrors. Turning records into validated FAQEntry objects is knowledge.py's job.
"""

from __future__ import annotations

import csv
import io
import json
import re
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeGuard

import yaml

from autoreply.errors import FAQFormatError

FAQ_SUFFIXES = (".yaml", ".yml", ".json", ".jsonl", ".csv", ".xlsx")
FIELDS = ("id", "question", "variants", "answer", "category", "tags", "escalate", "enabled")
TEXT_FIELDS = ("id", "question", "answer", "category")
LIST_FIELDS = ("variants", "tags")
_CELL_SPLIT = re.compile(r"[|\r\n]+")
_JSON_SPACE = " \t\r\n"


def read_text(path: Path) -> str:
    # Not text.read_lines(): str.splitlines() also splits at U+2028 & co., which JSON allows.
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        problem = f"is not valid UTF-8 (byte {exc.start})"
        raise FAQFormatError(
            path, line=line, problem=problem, hint="save the file as UTF-8"
        ) from exc


# --- readers: each yields raw records (or problems) with real line numbers --------------


@dataclass
class Record:
    line: int
    data: object
    keys: dict[str, int] = field(default_factory=dict)
    """Field name -> line of its key, where the format knows it (YAML)."""


Items = Iterator[Record | FAQFormatError]
_TOP_HINT = "the top level is a list of entries or a mapping with 'entries'"


def _unwrap(path: Path, data: object, line: int) -> tuple[list[object], list[str]]:
    """The entry list of a document and any top-level keys besides 'entries'."""
    extra: list[str] = []
    if isinstance(data, dict) and "entries" in data:
        extra = [str(k) for k in data if k != "entries"]
        data = data["entries"]
    if not isinstance(data, list):
        problem = f"must be a list of entries, not {kind_of(data)}"
        raise FAQFormatError(path, line=line, problem=problem, hint=_TOP_HINT)
    return data, extra


# libyaml's loader is ~10x faster (it keeps node marks, so line numbers still work).
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _yaml_records(path: Path) -> Items:
    text = read_text(path)
    root: yaml.Node | None = None
    try:
        loader = _Loader(text)
        try:
            root = loader.get_single_node()
            data = None if root is None else loader.construct_document(root)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = f"is not valid YAML: {exc.problem or exc.context}"
        hint = "check the indentation; quote text that contains ': ' or starts with a symbol"
        line = mark.line + 1 if mark else None
        raise FAQFormatError(path, line=line, problem=problem, hint=hint) from exc
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        problem = f"contains a character YAML does not allow (#x{exc.character:04x})"
        raise FAQFormatError(path, line=line, problem=problem, hint="delete it") from exc
    except (yaml.YAMLError, ValueError, RecursionError) as exc:  # e.g. the date 2024-13-45
        line = _unbuildable(root)
        raise FAQFormatError(path, line=line, problem=f"is not valid YAML: {exc}") from exc
    if root is None:
        return
    keys = _key_lines(root)
    items, extra = _unwrap(path, data, root.start_mark.line + 1)
    for key in extra:
        yield FAQFormatError(
            path, line=keys.get(key), field=key, problem="is unknown", hint=_TOP_HINT
        )
    if isinstance(root, yaml.MappingNode):
        pairs = reversed(root.value)
        root = next((v for k, v in pairs if getattr(k, "value", None) == "entries"), root)
    nodes = root.value if isinstance(root, yaml.SequenceNode) else []
    for i, item in enumerate(items):
        node = nodes[i] if i < len(nodes) else root
        yield Record(node.start_mark.line + 1, item, _key_lines(node))


def _unbuildable(root: yaml.Node | None) -> int | None:
    """The line of the first scalar PyYAML cannot turn into a value (a bad date, ...)."""
    builder, todo, seen, lines = yaml.SafeLoader(""), [root] if root else [], set(), []
    while todo:
        if id(node := todo.pop()) in seen:
            continue
        seen.add(id(node))
        if not isinstance(node, yaml.ScalarNode):
            todo += [n for v in node.value for n in (v if isinstance(v, tuple) else (v,))]
            continue
        try:
            builder.construct_object(node)
        except (yaml.YAMLError, ValueError):
            lines.append(node.start_mark.line + 1)
    return min(lines, default=None)


def _key_lines(node: yaml.Node) -> dict[str, int]:
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {
        str(k.value): k.start_mark.line + 1 for k, _ in node.value if isinstance(k, yaml.ScalarNode)
    }


def _json_records(path: Path) -> Items:
    text = read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        problem = f"is not valid JSON: {exc.msg} (column {exc.colno})"
        raise FAQFormatError(path, line=exc.lineno, problem=problem) from exc
    except (ValueError, RecursionError) as exc:
        raise FAQFormatError(path, problem=f"is not valid JSON: {exc}") from exc
    items, extra = _unwrap(path, data, 1)
    for key in extra:
        yield FAQFormatError(path, line=1, field=key, problem="is unknown", hint=_TOP_HINT)
    lines = _json_item_lines(text)
    for i, item in enumerate(items):
        yield Record(lines[i] if i < len(lines) else 1, item)


def _json_item_lines(text: str) -> list[int]:
    """The line where each entry of a valid JSON document starts (the list or 'entries')."""
    spans, _ = json_item_spans(text)
    return [text.count("\n", 0, start) + 1 for start, _ in spans]


def json_item_spans(text: str) -> tuple[list[tuple[int, int]], int]:
    """Where each entry of a valid JSON document is ([start, end) character offsets) and where
    its list's closing ``]`` is (-1 if the entries are not a list)."""
    decode = json.JSONDecoder().raw_decode

    def skip(i: int) -> int:
        while i < len(text) and text[i] in _JSON_SPACE:
            i += 1
        return i

    i = skip(0)
    if text[i] == "{":
        start, i = -1, skip(i + 1)
        while text[i] != "}":
            key, i = decode(text, i)
            i = skip(skip(i) + 1)  # past ':'
            if key == "entries":
                start = i  # the last one wins, as in json.loads
            i = skip(decode(text, i)[1])
            i = skip(i + 1) if text[i] == "," else i
        i = start
    spans: list[tuple[int, int]] = []
    if i < 0 or text[i] != "[":
        return spans, -1
    i = skip(i + 1)
    while text[i] != "]":
        end = decode(text, i)[1]
        spans.append((i, end))
        i = skip(end)
        i = skip(i + 1) if text[i] == "," else i
    return spans, i


def _jsonl_records(path: Path) -> Items:
    for no, raw in enumerate(read_text(path).split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            msg = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            hint = 'write one JSON object per line: {"id": ..., "question": ..., "answer": ...}'
            yield FAQFormatError(path, line=no, problem=f"is not valid JSON: {msg}", hint=hint)
        else:
            yield Record(no, data)


def _csv_records(path: Path) -> Items:
    reader = csv.reader(io.StringIO(read_text(path), newline=""))

    def rows() -> Iterator[tuple[int, Sequence[object]]]:
        start = 1  # a quoted cell may span lines: a row's number is the line it starts on
        try:
            for row in reader:
                yield start, row
                start = reader.line_num + 1
        except csv.Error as exc:
            problem = f"is not valid CSV: {exc}"
            raise FAQFormatError(
                path, line=start, problem=problem, hint="check the quotes"
            ) from exc

    return _table_records(path, rows())


def _xlsx_records(path: Path) -> Items:
    import openpyxl  # only spreadsheets need it

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # style warnings say nothing about the FAQ
            book = openpyxl.load_workbook(path, read_only=True, data_only=True)
            try:
                sheet = book.worksheets[0]
                rows = list(enumerate(sheet.iter_rows(min_row=1, values_only=True), start=1))
            finally:
                book.close()
    except Exception as exc:  # openpyxl and zipfile raise many types for a damaged file
        problem = f"cannot be read as an Excel workbook ({type(exc).__name__}: {exc})"
        hint = "open it in Excel and save it again as .xlsx"
        raise FAQFormatError(path, problem=problem, hint=hint) from exc
    return _table_records(path, rows)


def _table_records(path: Path, rows: Iterable[tuple[int, Sequence[object]]]) -> Items:
    """CSV/XLSX rows: a header row of field names, then one entry per non-empty row."""
    columns: list[str] | None = None
    for line, cells in rows:
        values = [c.strip() if isinstance(c, str) else c for c in cells]
        if all(v is None or v == "" for v in values):
            continue
        if columns is None:
            columns = ["" if v is None else str(v).lower() for v in values]
            for name in columns:
                if name and name not in FIELDS:
                    hint = f"known columns: {', '.join(FIELDS)}"
                    yield FAQFormatError(
                        path, line=line, field=name, problem="is unknown", hint=hint
                    )
            continue
        data: dict[str, object] = {}
        for i, value in enumerate(values):
            name = columns[i] if i < len(columns) else ""
            if value is None or value == "" or name in data:
                continue
            if not name:
                problem = f"has a value in column {i + 1}, which has no header"
                yield FAQFormatError(path, line=line, problem=problem, hint="add a header")
            elif name in LIST_FIELDS and isinstance(value, str):
                data[name] = [p.strip() for p in _CELL_SPLIT.split(value) if p.strip()]
            elif name in TEXT_FIELDS and _is_number(value):
                whole = isinstance(value, int) or value.is_integer()
                data[name] = str(int(value) if whole else value)
            elif name in FIELDS:
                data[name] = value
        yield Record(line, data)


READERS: dict[str, Callable[[Path], Items]] = {
    ".yaml": _yaml_records,
    ".yml": _yaml_records,
    ".json": _json_records,
    ".jsonl": _jsonl_records,
    ".csv": _csv_records,
    ".xlsx": _xlsx_records,
}


def kind_of(value: object) -> str:
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"text ({value[:30]!r})"
    if isinstance(value, list | tuple):
        return "a list"
    return "a mapping" if isinstance(value, dict) else f"a {type(value).__name__}"


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)
