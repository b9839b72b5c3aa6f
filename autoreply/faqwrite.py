"""Change one entry of a user's FAQ file without touching anything else in it.

A person's knowledge file is their source of truth: its comments, key order, quoting and
layout are theirs. So a file is never re-serialised. ``appended(path, entry)`` gives the
file's new bytes with one entry added at its end; ``replaced(path, entry_id, entry)`` the
bytes with exactly that entry's lines (YAML, JSON, JSONL) or row (CSV, XLSX) swapped. Both
check their own work before anyone writes it: the result is parsed again, and every other
entry must read exactly as before and the changed one as asked; otherwise the change is
refused with a KnowledgeError that says to edit the file by hand. ``write_atomic`` puts the
bytes in place (readers see the old file or the new one, never half).

An XLSX workbook is the one exception to byte-for-byte: it is a zip that openpyxl writes
anew, keeping cell values and styles but not drawings, charts, pivot tables or macros, so a
workbook that has any of those is refused.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import tempfile
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from autoreply.errors import KnowledgeError
from autoreply.faqfiles import FIELDS, LIST_FIELDS, json_item_spans, read_text
from autoreply.knowledge import parse_planned
from autoreply.models import FAQEntry

EDITABLE = (".yaml", ".yml", ".json", ".jsonl", ".csv", ".xlsx")
_DEFAULTS: dict[str, Any] = {"variants": [], "tags": [], "escalate": False, "enabled": True}
_OPTIONAL = {**_DEFAULTS, "category": "general"}
"""Fields a file may leave out, with the value they then have."""
_XLSX_LOST = ("xl/drawings/", "xl/charts/", "xl/media/", "xl/pivot", "xl/vbaProject", "xl/slicer")
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def row_of(entry: FAQEntry, *, had: list[str] | None = None) -> dict[str, Any]:
    """The fields a person would write for ``entry``: defaults and the source left out. With
    ``had`` (the keys an existing entry is written with, in order) those keys come first, in
    that order, and a field left at its default stays out unless it was there."""
    row = entry.model_dump(mode="json", exclude={"source"})
    keep = set(had or ())
    row = {
        k: v
        for k, v in row.items()
        if k in keep or k not in _OPTIONAL or v != _OPTIONAL[k] or (k == "category" and not had)
    }
    if had:
        row = {k: row[k] for k in sorted(row, key=lambda k: had.index(k) if k in had else 99)}
    return row


def appended(path: Path, entry: FAQEntry, *, note: str = "") -> bytes:
    """The bytes of ``path`` with ``entry`` added at the end (``note``: a comment line above
    it, where the format has comments). A missing file is started as YAML/JSON/JSONL."""
    path = Path(path)
    suffix = _suffix(path)
    before = path.read_bytes() if path.exists() else b""
    if suffix == ".xlsx":
        if not before:
            raise KnowledgeError(f"{path}: does not exist; accept into a .yaml file instead")
        data = _xlsx_change(path, None, entry)
    else:
        text = read_text(path) if before else ""
        bom = "\ufeff" if before.startswith(b"\xef\xbb\xbf") else ""
        add = {
            ".yaml": _yaml_append,
            ".yml": _yaml_append,
            ".json": _json_append,
            ".jsonl": _jsonl_append,
            ".csv": _csv_append,
        }[suffix]
        data = (bom + add(path, text, entry, note)).encode("utf-8")
    _verify(path, before, data, None, entry)
    return data


def replaced(path: Path, entry_id: str, entry: FAQEntry) -> bytes:
    """The bytes of ``path`` with the entry ``entry_id`` swapped for ``entry`` (same place)."""
    path = Path(path)
    suffix = _suffix(path)
    before = path.read_bytes()
    if suffix == ".xlsx":
        data = _xlsx_change(path, entry_id, entry)
    else:
        text = read_text(path)
        bom = "\ufeff" if before.startswith(b"\xef\xbb\xbf") else ""
        swap = {
            ".yaml": _yaml_replace,
            ".yml": _yaml_replace,
            ".json": _json_replace,
            ".jsonl": _jsonl_replace,
            ".csv": _csv_replace,
        }[suffix]
        data = (bom + swap(path, text, entry_id, entry)).encode("utf-8")
    _verify(path, before, data, entry_id, entry)
    return data


def write_atomic(path: Path, data: bytes | None) -> None:
    """Put ``data`` at ``path`` in one step (None: delete the file); the mode is kept."""
    path = Path(path)
    if data is None:
        path.unlink(missing_ok=True)
        return
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    # Hidden temp name: a knowledge load running meanwhile skips it.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in EDITABLE:
        raise KnowledgeError(
            f"{path}: cannot write FAQ entries into a '{suffix}' file; use one of "
            f"{', '.join(EDITABLE)}"
        )
    return suffix


def _refuse(path: Path, why: str) -> KnowledgeError:
    return KnowledgeError(
        f"{path}: {why}, so it cannot be changed in place without rewriting it; edit it by "
        "hand, or accept into a file of its own (e.g. accepted.yaml)"
    )


def _verify(path: Path, before: bytes, after: bytes, entry_id: str | None, entry: FAQEntry) -> None:
    """The planned bytes must read as the old entries with exactly this one change."""

    def plain(entries: list[FAQEntry]) -> list[dict[str, Any]]:
        return [e.model_dump(exclude={"source"}) for e in entries]

    old = plain(parse_planned(path, before)[0]) if before else []
    new, problems = parse_planned(path, after)
    if problems:
        raise KnowledgeError(f"the changed entry would not be valid: {problems[0]}")
    want = [entry.model_dump(exclude={"source"})]
    if entry_id is None:
        expected = [*old, *want]
    else:
        at = [i for i, e in enumerate(old) if e["id"] == entry_id]
        expected = old[: at[0]] + want + old[at[0] + 1 :] if at else []
    if plain(new) != expected:
        raise _refuse(path, "its layout is not one this writer can follow safely")


# -- YAML --------------------------------------------------------------------------------------


def _yaml_sequence(path: Path, text: str) -> yaml.SequenceNode | None:
    """The block sequence of entries (top level or under 'entries'); None for an empty file."""
    try:
        root = yaml.compose(text, Loader=_Loader) if text.strip() else None
    except yaml.YAMLError:
        raise _refuse(path, "it is not valid YAML (see 'autoreply check')") from None
    if root is None:
        return None
    if isinstance(root, yaml.MappingNode):
        found = [v for k, v in root.value if getattr(k, "value", None) == "entries"]
        if len(root.value) != 1 or not found:
            raise _refuse(path, "its top level is not a list of entries or one 'entries' key")
        root = found[0]
    if not isinstance(root, yaml.SequenceNode) or root.flow_style:
        raise _refuse(path, "its entries are not a block list ('- id: ...' one under another)")
    return root


def _line_start(text: str, i: int) -> int:
    return text.rfind("\n", 0, i) + 1


def _line_end(text: str, i: int) -> int:
    """Just past the end of the line holding character ``i`` (its newline included)."""
    end = text.find("\n", i)
    return len(text) if end < 0 else end + 1


def _last_content(node: yaml.Node) -> int:
    """The offset of the last character of the node's own text (comments after it excluded)."""
    if isinstance(node, yaml.ScalarNode) or getattr(node, "flow_style", False):
        return max(node.start_mark.index, node.end_mark.index - 1)
    children = [c for item in node.value for c in (item if isinstance(item, tuple) else (item,))]
    return max((_last_content(c) for c in children), default=node.start_mark.index)


def _yaml_span(text: str, node: yaml.Node) -> tuple[int, int, int]:
    """(start, end, column of the '-') of one list item's lines."""
    dash = text.rfind("-", 0, node.start_mark.index)
    start = _line_start(text, dash)
    return start, _line_end(text, _last_content(node)), dash - start


class _Dumper(yaml.SafeDumper):
    """Multi-line text as a literal block, as a person would write it."""


_Dumper.add_representer(
    str,
    lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s, style="|" if "\n" in s else None),
)


def _yaml_dump(data: object, column: int, *, nested: bool) -> str:
    """YAML text for ``data``, every line but the first indented to ``column``; lists inside
    mappings indented (``nested``) or not, as the file does it."""
    dumper = _NestedDumper if nested else _Dumper
    text = yaml.dump(data, Dumper=dumper, allow_unicode=True, sort_keys=False, width=10**6)
    pad = " " * column
    lines = text.splitlines(True)
    return lines[0] + "".join(pad + line if line.strip() else line for line in lines[1:])


class _NestedDumper(_Dumper):
    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _nested(text: str) -> bool:
    """Does the file indent a list under its key (``variants:`` then ``  - a``)?"""
    found = re.search(r"^([ \t]*)[\w-]+:[ \t]*\n(?:[ \t]*#.*\n|[ \t]*\n)*([ \t]*)- ", text, re.M)
    return bool(found and len(found.group(2)) > len(found.group(1)))


def _yaml_append(path: Path, text: str, entry: FAQEntry, note: str) -> str:
    seq = _yaml_sequence(path, text)
    column = 0
    if seq is not None and seq.value:
        column = _yaml_span(text, seq.value[0])[2]
    elif seq is not None:
        raise _refuse(path, "its list of entries is empty")
    if text and not text.endswith("\n"):
        text += _newline(text)
    comment = f"{' ' * column}# {note}\n" if note else ""
    item = _yaml_dump([row_of(entry)], column, nested=_nested(text))
    return text + _like(text, comment + " " * column + item)


def _like(text: str, added: str) -> str:
    """``added`` with the line ends ``text`` uses."""
    return added.replace("\n", "\r\n") if _newline(text) == "\r\n" else added


def _yaml_replace(path: Path, text: str, entry_id: str, entry: FAQEntry) -> str:
    seq = _yaml_sequence(path, text)
    for node in seq.value if seq else []:
        if isinstance(node, yaml.MappingNode) and any(
            getattr(k, "value", None) == "id" and getattr(v, "value", None) == entry_id
            for k, v in node.value
        ):
            return _yaml_fields(path, text, node, entry_id, entry)
    raise KnowledgeError(f"entry '{entry_id}' is not in {path}; reload the knowledge base")


def _yaml_fields(
    path: Path, text: str, node: yaml.MappingNode, entry_id: str, entry: FAQEntry
) -> str:
    """Swap only the fields that changed: each one's lines, from its key to its value's last
    line; comments and blank lines between fields, and unchanged fields, stay as they are."""
    old = {e.id: e for e in parse_planned(path, text.encode("utf-8"))[0]}.get(entry_id)
    if old is None:
        raise KnowledgeError(f"entry '{entry_id}' is not valid in {path}; fix it by hand")
    had = [str(k.value) for k, _ in node.value]
    row = row_of(entry, had=had)
    nested = _nested(text)
    if node.flow_style:
        start, end, column = _yaml_span(text, node)
        item = _yaml_dump([row], column, nested=nested)
        return text[:start] + _like(text, " " * column + item) + text[end:]
    column = node.value[0][0].start_mark.column
    out, pos, last = [], node.value[0][0].start_mark.index, 0
    for i, (key, value) in enumerate(node.value):
        name = str(key.value)
        start = key.start_mark.index if i == 0 else _line_start(text, key.start_mark.index)
        end = _line_end(text, _last_content(value))
        out.append(text[pos:start])
        if (
            name in row
            and row[name] == getattr(old, name)
            or (
                name in row
                and isinstance(row[name], list)
                and tuple(row[name]) == getattr(old, name)
            )
        ):
            out.append(text[start:end])
        elif name in row:
            lead = "" if i == 0 else " " * column
            out.append(_like(text, lead + _yaml_dump({name: row[name]}, column, nested=nested)))
        pos = last = end
    added = {k: v for k, v in row.items() if k not in had}
    if added:
        more = " " * column + _yaml_dump(added, column, nested=nested)
        out.append(text[pos:last] + _like(text, more))
    head = node.value[0][0].start_mark.index
    return text[:head] + "".join(out) + text[last:]


# -- JSON and JSONL ----------------------------------------------------------------------------


def _json_item(entry: FAQEntry, sample: str, column: int, order: list[str] | None = None) -> str:
    """The entry as JSON laid out like ``sample`` (an entry of the same file, or '')."""
    row = row_of(entry, had=order)
    ascii_only = "\\u" in sample and sample.isascii()
    if sample and "\n" not in sample:
        return json.dumps(row, ensure_ascii=ascii_only)
    inner = re.search(r"\n([ \t]+)\S", sample)
    unit = len(inner.group(1)) - column if inner and len(inner.group(1)) > column else 2
    text = json.dumps(row, ensure_ascii=ascii_only, indent=unit)
    return text.replace("\n", "\n" + " " * column)


def _json_parts(path: Path, text: str) -> tuple[list[tuple[int, int]], int]:
    try:
        json.loads(text)
        spans, close = json_item_spans(text)
    except (ValueError, IndexError):
        raise _refuse(path, "it is not valid JSON") from None
    if close < 0:
        raise _refuse(path, "its entries are not a JSON list")
    return spans, close


def _json_append(path: Path, text: str, entry: FAQEntry, note: str) -> str:
    if not text.strip():
        return "[\n" + "  " + _json_item(entry, "{\n  }", 2) + "\n]\n"
    spans, close = _json_parts(path, text)
    if not spans:
        column = close - _line_start(text, close) + 2
        new = "\n" + " " * column + _json_item(entry, "", column)
        return text[:close] + _like(text, new) + text[close:]
    start, end = spans[-1]
    column = start - _line_start(text, start)
    sep = ",\n" + " " * column if "\n" in text[spans[0][0] : close] else ", "
    return text[:end] + _like(text, sep + _json_item(entry, text[start:end], column)) + text[end:]


def _json_replace(path: Path, text: str, entry_id: str, entry: FAQEntry) -> str:
    spans, _ = _json_parts(path, text)
    for start, end in spans:
        old = json.loads(text[start:end])
        if isinstance(old, dict) and old.get("id") == entry_id:
            column = start - _line_start(text, start)
            new = _json_item(entry, text[start:end], column, list(old))
            return text[:start] + _like(text, new) + text[end:]
    raise KnowledgeError(f"entry '{entry_id}' is not in {path}; reload the knowledge base")


def _newline(text: str) -> str:
    return "\r\n" if "\r\n" in text else "\n"


def _jsonl_append(path: Path, text: str, entry: FAQEntry, note: str) -> str:
    nl = _newline(text)
    if text and not text.endswith("\n"):
        text += nl
    return text + json.dumps(row_of(entry), ensure_ascii=False) + nl


def _jsonl_replace(path: Path, text: str, entry_id: str, entry: FAQEntry) -> str:
    lines = text.split("\n")
    for i, raw in enumerate(lines):
        try:
            old = json.loads(raw) if raw.strip() else None
        except ValueError:
            continue
        if isinstance(old, dict) and old.get("id") == entry_id:
            row = row_of(entry, had=list(old))
            end = "\r" if raw.endswith("\r") else ""
            lines[i] = json.dumps(row, ensure_ascii="\\u" in raw and raw.isascii()) + end
            return "\n".join(lines)
    raise KnowledgeError(f"entry '{entry_id}' is not in {path}; reload the knowledge base")


# -- CSV and XLSX ------------------------------------------------------------------------------


def _joiner(samples: list[str]) -> str:
    """How a list is written in one cell, as the file already does it (default ' | ')."""
    for sep in ("\n", " | ", "|"):
        if any(sep in s for s in samples):
            return sep
    return " | "


def _cell(name: str, value: Any, sep: str) -> str:
    if name in LIST_FIELDS:
        if any("|" in v or "\n" in v for v in value):
            raise KnowledgeError(
                f"a {name[:-1]} contains '|' or a line break, which separate {name} in a "
                "spreadsheet cell; write it without, or keep this entry in a .yaml file"
            )
        return sep.join(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _cells(
    path: Path,
    columns: list[str],
    entry: FAQEntry,
    old: FAQEntry | None,
    samples: Callable[[str], list[str]],
) -> dict[int, str]:
    """Column index -> new cell text, for the fields that differ from ``old``."""
    row = entry.model_dump(exclude={"source"})
    before = old.model_dump(exclude={"source"}) if old else {}
    cells: dict[int, str] = {}
    for name in FIELDS:
        value = list(row[name]) if name in LIST_FIELDS else row[name]
        previous = list(before[name]) if old and name in LIST_FIELDS else before.get(name)
        if old is not None and value == previous:
            continue
        if name not in columns:
            if name in _OPTIONAL and value == _OPTIONAL[name]:
                continue
            raise KnowledgeError(
                f"{path} has no '{name}' column; add the column, or keep this entry in a .yaml file"
            )
        cells[columns.index(name)] = _cell(name, value, _joiner(samples(name)))
    return cells


def _csv_table(text: str) -> tuple[list[str], list[tuple[int, int, list[str]]]]:
    """The file's lines and its rows as (first line, end line, cells)."""
    lines = io.StringIO(text, newline="").readlines()
    reader = csv.reader(io.StringIO(text, newline=""))
    rows, start = [], 0
    for cells in reader:
        rows.append((start, reader.line_num, cells))
        start = reader.line_num
    return lines, rows


def _csv_change(path: Path, text: str, entry_id: str | None, entry: FAQEntry) -> str:
    try:
        lines, rows = _csv_table(text)
    except csv.Error:
        raise _refuse(path, "it is not valid CSV") from None
    filled = [r for r in rows if any(c.strip() for c in r[2])]
    if not filled:
        raise _refuse(path, "it has no header row")
    columns = [c.strip().lower() for c in filled[0][2]]
    if "id" not in columns:
        raise _refuse(path, "it has no 'id' column")
    at = columns.index("id")

    def samples(name: str) -> list[str]:
        i = columns.index(name)
        return [r[2][i] for r in filled[1:] if i < len(r[2])]

    nl = _newline(text)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=nl)
    if entry_id is None:
        cells = _cells(path, columns, entry, None, samples)
        writer.writerow([cells.get(i, "") for i in range(len(columns))])
        body = text if not text or text.endswith(("\n", "\r")) else text + nl
        return body + out.getvalue()
    old = {e.id: e for e in parse_planned(path, text.encode("utf-8"))[0]}.get(entry_id)
    for first, end, raw in filled[1:]:
        if at < len(raw) and raw[at].strip() == entry_id and old is not None:
            cells = _cells(path, columns, entry, old, samples)
            new = raw + [""] * (len(columns) - len(raw))
            for i, value in cells.items():
                new[i] = value
            writer.writerow(new)
            ending = lines[end - 1][len(lines[end - 1].rstrip("\r\n")) :]
            row = out.getvalue().removesuffix(nl) + ending
            return "".join(lines[:first]) + row + "".join(lines[end:])
    raise KnowledgeError(f"entry '{entry_id}' is not in {path}; reload the knowledge base")


def _csv_append(path: Path, text: str, entry: FAQEntry, note: str) -> str:
    if not text.strip():
        raise _refuse(path, "it has no header row")
    return _csv_change(path, text, None, entry)


def _csv_replace(path: Path, text: str, entry_id: str, entry: FAQEntry) -> str:
    return _csv_change(path, text, entry_id, entry)


def _xlsx_change(path: Path, entry_id: str | None, entry: FAQEntry) -> bytes:
    from copy import copy

    import openpyxl  # only spreadsheets need it

    try:
        with zipfile.ZipFile(path) as archive:
            lost = sorted({p for n in archive.namelist() for p in _XLSX_LOST if n.startswith(p)})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            book = openpyxl.load_workbook(path)
    except Exception as exc:  # openpyxl and zipfile raise many types for a damaged file
        raise _refuse(path, f"it cannot be read as a workbook ({exc})") from None
    if lost:
        parts = ", ".join(p.split("/")[1] for p in lost)
        raise _refuse(path, f"it has parts a rewrite would drop ({parts})")
    sheet = book.worksheets[0]
    rows = [
        (cells[0].row, cells)
        for cells in sheet.iter_rows()
        if any(c.value not in (None, "") for c in cells)
    ]
    if not rows:
        raise _refuse(path, "it has no header row")
    columns = [str(c.value or "").strip().lower() for c in rows[0][1]]
    if "id" not in columns:
        raise _refuse(path, "it has no 'id' column")
    at = columns.index("id")

    def samples(name: str) -> list[str]:
        i = columns.index(name)
        return [str(c[i].value) for _, c in rows[1:] if i < len(c) and c[i].value]

    if entry_id is None:
        number = rows[-1][0] + 1
        for i, value in _cells(path, columns, entry, None, samples).items():
            cell = sheet.cell(row=number, column=i + 1, value=value)
            if len(rows) > 1 and i < len(rows[-1][1]):
                cell._style = copy(rows[-1][1][i]._style)
    else:
        old = {e.id: e for e in parse_planned(path, path.read_bytes())[0]}.get(entry_id)
        found = [n for n, c in rows[1:] if str(c[at].value or "").strip() == entry_id]
        if not found or old is None:
            raise KnowledgeError(f"entry '{entry_id}' is not in {path}; reload the knowledge base")
        for i, value in _cells(path, columns, entry, old, samples).items():
            sheet.cell(row=found[0], column=i + 1, value=value)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()
