"""Load and validate FAQ files. Knows nothing about vectors.

load_knowledge(path) reads one FAQ file, or every FAQ file below a directory (.yaml/.yml, .json,
.jsonl, .csv, .xlsx), plus the phrase lists, calming lines and synonyms, into a KnowledgeBase.
Every problem in every file is collected and raised at once: one KnowledgeInvalid whose
FAQFormatErrors point at file:line and field. Two entries sharing a question are not a load
error; they are listed in KnowledgeBase.conflicts for `autoreply check` to report.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import tempfile
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from autoreply.errors import FAQFormatError, KnowledgeError, KnowledgeInvalid
from autoreply.models import FAQEntry
from autoreply.text import PhraseList, Synonyms, has_han, normalize, read_lines

FAQ_SUFFIXES = (".yaml", ".yml", ".json", ".jsonl", ".csv", ".xlsx")
FIELDS = ("id", "question", "variants", "answer", "category", "tags", "escalate", "enabled")
_TEXT = ("id", "question", "answer", "category")
_LISTS = ("variants", "tags")
_BOOLS = {"true": True, "yes": True, "1": True, "是": True}
_BOOLS |= {"false": False, "no": False, "0": False, "否": False}
_HINTS = {
    "id": "give every entry a unique id, e.g. id: reset-password",
    "question": "write the question as a customer would ask it",
    "answer": "fill it in or delete the entry",
    "category": "leave it out to use 'general'",
}
_CELL_SPLIT = re.compile(r"[|\r\n]+")
_CALMING_LINE = re.compile(r"([A-Za-z]{2,3}(?:[-_][A-Za-z0-9]+)?)\s*[:：]\s*(\S.*)")
_JSON_SPACE = " \t\r\n"


@dataclass(frozen=True)
class Conflict:
    """Two different entries share a question or variant (after normalize())."""

    text: str
    first: tuple[str, str]
    """(entry id, "file:line") of the entry that has the text first."""
    second: tuple[str, str]

    def render(self) -> str:
        return (
            f"{self.second[1]}: '{self.text}' of entry '{self.second[0]}' is also in entry "
            f"'{self.first[0]}' ({self.first[1]}): keep it in one entry"
        )


@dataclass(frozen=True)
class KnowledgeBase:
    """A loaded, valid knowledge base: FAQ entries plus phrase lists, calming lines, synonyms."""

    entries: tuple[FAQEntry, ...]
    synonyms: Synonyms = field(default_factory=Synonyms)
    phrases: dict[str, PhraseList] = field(default_factory=dict)
    """Phrase lists by file stem: "human", "complaint", "prohibited", ..."""
    calming: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Calming lines by language: {"zh": (...), "en": (...)}."""
    conflicts: tuple[Conflict, ...] = ()
    sources: tuple[str, ...] = ()
    """The FAQ files read, in load order."""
    _by_id: dict[str, FAQEntry] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {e.id: e for e in self.entries})

    @property
    def enabled(self) -> tuple[FAQEntry, ...]:
        return tuple(e for e in self.entries if e.enabled)

    def get(self, entry_id: str) -> FAQEntry:
        """The entry with this id; a KnowledgeError listing the known ids if there is none."""
        try:
            return self._by_id[entry_id]
        except KeyError:
            known = sorted(self._by_id)
            more = f" (+{len(known) - 10} more)" if len(known) > 10 else ""
            listed = ", ".join(known[:10]) or "none"
            raise KnowledgeError(f"unknown entry '{entry_id}'; known: {listed}{more}") from None

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self._by_id

    def __len__(self) -> int:
        return len(self.entries)

    @cached_property
    def fingerprint(self) -> str:
        """sha256 of the entries (in order) and synonyms: what an index was built from."""
        content = {
            "entries": [e.model_dump(mode="json") for e in self.entries],
            "synonyms": [list(group) for group in self.synonyms.groups],
        }
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def categories(self) -> dict[str, int]:
        """Category -> number of enabled entries, sorted by category."""
        return dict(sorted(Counter(e.category for e in self.enabled).items()))

    def language(self, entry: FAQEntry) -> str:
        """The language of the entry: "zh" if its question is Chinese, else "en"."""
        return "zh" if has_han(entry.question) else "en"


def bundled_knowledge_dir() -> Path:
    """The shipped knowledge/ dir: autoreply/_knowledge when installed, else the checkout's."""
    here = Path(__file__).parent
    candidates = (here / "_knowledge", here.parent / "knowledge")
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    looked = " and ".join(str(c) for c in candidates)
    raise KnowledgeError(
        f"the bundled knowledge is missing (looked in {looked}): reinstall autoreply"
    )


def load_knowledge(path: str | Path) -> KnowledgeBase:
    """Load an FAQ file or a directory of them; KnowledgeInvalid lists every problem found.

    phrases/ and synonyms.txt directly in the directory replace the bundled ones.
    """
    path = Path(path)
    files = _faq_files(path)
    entries: list[FAQEntry] = []
    problems: list[FAQFormatError] = []
    for file in files:
        found, bad = _parse_file(file)
        entries += found
        problems += bad
    problems += _duplicate_ids(entries)
    synonyms, phrases, calming = _extras(path, problems)
    if not entries and not problems:
        names = ", ".join(str(f) for f in files)
        problems.append(
            FAQFormatError(
                path,
                problem=f"has no FAQ entries (read {names})",
                hint="add at least one entry with id, question and answer",
            )
        )
    if problems:
        raise KnowledgeInvalid(problems)
    sources = tuple(str(f) for f in files)
    conflicts = _find_conflicts(entries)
    return KnowledgeBase(tuple(entries), synonyms, phrases, calming, conflicts, sources)


load_faq = load_knowledge


def parse_entries(path: Path) -> list[FAQEntry]:
    """The entries of one FAQ file; KnowledgeInvalid with every problem in the file."""
    entries, problems = _parse_file(Path(path))
    problems += _duplicate_ids(entries)
    if problems:
        raise KnowledgeInvalid(problems)
    return entries


def write_entries(path: Path, entries: Sequence[FAQEntry]) -> None:
    """Write entries as YAML, JSON or JSONL (by suffix), atomically: readers see old or new."""
    path = Path(path)
    rows = [_plain(e) for e in entries]
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        text = yaml.dump(rows, Dumper=_Dumper, allow_unicode=True, sort_keys=False, width=10**6)
    elif suffix == ".json":
        text = json.dumps(rows, ensure_ascii=False, indent=2) + "\n"
    elif suffix == ".jsonl":
        text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    else:
        raise KnowledgeError(f"{path}: cannot write FAQ entries as '{suffix}'; use .yaml or .jsonl")
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    # Hidden temp name: a directory load running meanwhile skips it.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- files ------------------------------------------------------------------------------


def _faq_files(path: Path) -> list[Path]:
    expected = f"expected an FAQ file ({', '.join(FAQ_SUFFIXES)}) or a directory of them"
    if path.is_file():
        if path.suffix.lower() not in FAQ_SUFFIXES:
            raise KnowledgeError(f"{path}: not an FAQ file; {expected}")
        return [path]
    if not path.is_dir():
        raise KnowledgeError(f"{path}: no such file or directory; {expected}")
    files: list[Path] = []
    for root, dirs, names in os.walk(path):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d != "phrases"]
        files += [
            Path(root, n)
            for n in names
            if not n.startswith((".", "~$")) and Path(n).suffix.lower() in FAQ_SUFFIXES
        ]
    if not files:
        raise KnowledgeError(
            f"{path}: no FAQ files found; {expected} (hidden files and phrases/ are skipped)"
        )
    return sorted(files, key=lambda f: f.relative_to(path).as_posix())


def _extras(
    path: Path, problems: list[FAQFormatError]
) -> tuple[Synonyms, dict[str, PhraseList], dict[str, tuple[str, ...]]]:
    """Synonyms, phrase lists and calming lines: the directory's own, else the bundled ones."""

    def where(name: str) -> Path:
        own = path / name
        return own if path.is_dir() and own.exists() else bundled_knowledge_dir() / name

    synonyms = Synonyms()
    phrases: dict[str, PhraseList] = {}
    calming: dict[str, tuple[str, ...]] = {}
    try:
        if (file := where("synonyms.txt")).is_file():
            synonyms = Synonyms.load(file)
    except FAQFormatError as exc:
        problems.append(exc)
    folder = where("phrases")
    for file in sorted(folder.glob("*.txt")) if folder.is_dir() else []:
        try:
            if file.name.startswith("."):
                continue
            if file.stem == "calming":
                calming = _load_calming(file, problems)
            else:
                phrases[file.stem] = PhraseList.load(file)
        except FAQFormatError as exc:
            problems.append(exc)
    return synonyms, phrases, calming


def _load_calming(path: Path, problems: list[FAQFormatError]) -> dict[str, tuple[str, ...]]:
    lines: dict[str, list[str]] = {}
    for no, raw in enumerate(read_lines(path), start=1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        if match := _CALMING_LINE.fullmatch(text):
            lines.setdefault(match.group(1).lower(), []).append(match.group(2))
        else:
            hint = "write it as 'zh: 非常抱歉…' or 'en: I'm sorry…'"
            problem = f"is not '<language>: <text>' ({text[:40]!r})"
            problems.append(FAQFormatError(path, line=no, problem=problem, hint=hint))
    return {lang: tuple(texts) for lang, texts in lines.items()}


def _read_text(path: Path) -> str:
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
class _Record:
    line: int
    data: object
    keys: dict[str, int] = field(default_factory=dict)
    """Field name -> line of its key, where the format knows it (YAML)."""


_Items = Iterator[_Record | FAQFormatError]
_TOP_HINT = "the top level is a list of entries or a mapping with 'entries'"


def _unwrap(path: Path, data: object, line: int) -> tuple[list[object], list[str]]:
    """The entry list of a document and any top-level keys besides 'entries'."""
    extra: list[str] = []
    if isinstance(data, dict) and "entries" in data:
        extra = [str(k) for k in data if k != "entries"]
        data = data["entries"]
    if not isinstance(data, list):
        problem = f"must be a list of entries, not {_kind(data)}"
        raise FAQFormatError(path, line=line, problem=problem, hint=_TOP_HINT)
    return data, extra


def _yaml_records(path: Path) -> _Items:
    text = _read_text(path)
    root: yaml.Node | None = None
    try:
        loader = yaml.SafeLoader(text)
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
        yield _Record(node.start_mark.line + 1, item, _key_lines(node))


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


def _json_records(path: Path) -> _Items:
    text = _read_text(path)
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
        yield _Record(lines[i] if i < len(lines) else 1, item)


def _json_item_lines(text: str) -> list[int]:
    """The line where each entry of a valid JSON document starts (the list or 'entries')."""
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
    lines: list[int] = []
    if i < 0 or text[i] != "[":
        return lines
    line, seen, i = 1, 0, skip(i + 1)
    while text[i] != "]":
        line, seen = line + text.count("\n", seen, i), i
        lines.append(line)
        i = skip(decode(text, i)[1])
        i = skip(i + 1) if text[i] == "," else i
    return lines


def _jsonl_records(path: Path) -> _Items:
    for no, raw in enumerate(_read_text(path).split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            msg = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            hint = 'write one JSON object per line: {"id": ..., "question": ..., "answer": ...}'
            yield FAQFormatError(path, line=no, problem=f"is not valid JSON: {msg}", hint=hint)
        else:
            yield _Record(no, data)


def _csv_records(path: Path) -> _Items:
    reader = csv.reader(io.StringIO(_read_text(path), newline=""))

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


def _xlsx_records(path: Path) -> _Items:
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


def _table_records(path: Path, rows: Iterable[tuple[int, Sequence[object]]]) -> _Items:
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
            elif name in _LISTS and isinstance(value, str):
                data[name] = [p.strip() for p in _CELL_SPLIT.split(value) if p.strip()]
            elif name in _TEXT and isinstance(value, int | float) and not isinstance(value, bool):
                whole = isinstance(value, int) or value.is_integer()
                data[name] = str(int(value) if whole else value)
            elif name in FIELDS:
                data[name] = value
        yield _Record(line, data)


_READERS: dict[str, Callable[[Path], _Items]] = {
    ".yaml": _yaml_records,
    ".yml": _yaml_records,
    ".json": _json_records,
    ".jsonl": _jsonl_records,
    ".csv": _csv_records,
    ".xlsx": _xlsx_records,
}


# --- records -> entries -----------------------------------------------------------------


def _parse_file(path: Path) -> tuple[list[FAQEntry], list[FAQFormatError]]:
    entries: list[FAQEntry] = []
    problems: list[FAQFormatError] = []
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        hint = f"use one of {', '.join(FAQ_SUFFIXES)}"
        return [], [FAQFormatError(path, problem="is not an FAQ file", hint=hint)]
    try:
        for item in reader(path):
            if isinstance(item, FAQFormatError):
                problems.append(item)
                continue
            entry, bad = _build(path, item)
            problems += bad
            if entry is not None:
                entries.append(entry)
    except FAQFormatError as exc:
        problems.append(exc)
    except OSError as exc:
        problems.append(FAQFormatError(path, problem=f"cannot be read ({exc.strerror or exc})"))
    return entries, problems


def _build(path: Path, rec: _Record) -> tuple[FAQEntry | None, list[FAQFormatError]]:
    """Validate one raw record into an FAQEntry, or say everything wrong with it."""

    def problem(name: str | None, text: str, hint: str | None = None) -> FAQFormatError:
        line = rec.keys.get(name, rec.line) if name else rec.line
        return FAQFormatError(path, line=line, field=name, problem=text, hint=hint)

    if not isinstance(rec.data, dict):
        text = f"an entry must be a mapping of fields, not {_kind(rec.data)}"
        return None, [problem(None, text, "give each entry id, question and answer fields")]
    problems: list[FAQFormatError] = []
    data: dict[str, Any] = {}
    for key, value in rec.data.items():
        name = str(key)
        if name not in FIELDS:
            problems.append(problem(name, "is unknown", f"known fields: {', '.join(FIELDS)}"))
        elif value is None:
            if name in ("id", "question", "answer"):
                data[name] = ""
        else:
            try:
                data[name] = _check(name, value)
            except ValueError as bad:  # args: (problem, hint)
                problems.append(problem(name, *bad.args))
    reported = {p.field for p in problems}
    try:
        entry = FAQEntry.model_validate({**data, "source": f"{path}:{rec.line}"})
    except ValidationError as exc:
        for err in exc.errors():
            name = str(err["loc"][0]) if err["loc"] else None
            if name not in reported:
                problems.append(problem(name, _pydantic_problem(err), _HINTS.get(name or "")))
        return None, problems
    return (None, problems) if problems else (_drop_repeats(entry), [])


def _check(name: str, value: object) -> object:
    """The value as FAQEntry wants it; ValueError(problem, hint) saying what was expected."""
    if name in _TEXT:
        if not isinstance(value, str):
            hint = "put it in quotes" if isinstance(value, int | float) else None
            raise ValueError(f"must be text, not {_kind(value)}", hint)
        return _sound(value)
    if name in _LISTS:
        if not isinstance(value, list | tuple):
            raise ValueError(f"must be a list of text, not {_kind(value)}", 'e.g. ["a", "b"]')
        for i, item in enumerate(value, start=1):
            if not isinstance(item, str):
                raise ValueError(
                    f"must be a list of text; item {i} is {_kind(item)}", "put it in quotes"
                )
        return tuple(_sound(item) for item in value)
    if isinstance(value, str) and value.strip().lower() in _BOOLS:
        return _BOOLS[value.strip().lower()]
    if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
        return bool(value)
    raise ValueError(f"must be true or false, not {_kind(value)}")


def _sound(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            "contains a broken character (a lone surrogate)", "retype the text"
        ) from None
    return text


def _kind(value: object) -> str:
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


def _pydantic_problem(err: ErrorDetails) -> str:
    if err["type"] == "missing":
        return "is missing"
    if err["type"] == "string_too_short" or "must not be empty" in err["msg"]:
        return "is empty"
    return f"is invalid: {err['msg']}"


def _drop_repeats(entry: FAQEntry) -> FAQEntry:
    """Drop variants that normalize to the question or to an earlier variant."""
    seen = {normalize(entry.question)}
    variants = []
    for variant in entry.variants:
        if (key := normalize(variant)) not in seen:
            seen.add(key)
            variants.append(variant)
    if len(variants) == len(entry.variants):
        return entry
    return entry.model_copy(update={"variants": tuple(variants)})


def _duplicate_ids(entries: Sequence[FAQEntry]) -> list[FAQFormatError]:
    first: dict[str, FAQEntry] = {}
    problems = []
    for entry in entries:
        if (earlier := first.setdefault(entry.id, entry)) is not entry:
            file, _, line = (entry.source or "").rpartition(":")
            problems.append(
                FAQFormatError(
                    file,
                    line=int(line),
                    field="id",
                    problem=f"'{entry.id}' is also the id of the entry at {earlier.source}",
                    hint="ids must be unique: rename one of them",
                )
            )
    return problems


def _find_conflicts(entries: Sequence[FAQEntry]) -> tuple[Conflict, ...]:
    """Normalized texts claimed by two enabled entries (disabled ones match nothing)."""
    owner: dict[str, FAQEntry] = {}
    conflicts = []
    for entry in entries:
        if not entry.enabled:
            continue
        for text in entry.texts:
            key = normalize(text)
            first = owner.setdefault(key, entry)
            if key and first is not entry:
                a, b = (first.id, first.source or ""), (entry.id, entry.source or "")
                conflicts.append(Conflict(key, a, b))
    return tuple(conflicts)


# --- writing ----------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """Writes multi-line text as a literal block, as a person would."""


def _represent_str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _represent_str)


def _plain(entry: FAQEntry) -> dict[str, Any]:
    row = entry.model_dump(mode="json")
    for name, default in (("variants", []), ("tags", []), ("escalate", False), ("enabled", True)):
        if row[name] == default:
            del row[name]
    return row
