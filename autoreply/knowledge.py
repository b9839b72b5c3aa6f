"""Load and validate FAQ files. Knows nothing about vectors.

load_knowledge(path) reads one FAQ file, or every FAQ file below a directory (.yaml/.yml, .json,
.jsonl, .csv, .xlsx), plus the phrase lists, calming lines and synonyms, into a KnowledgeBase.
Every problem in every file is collected and raised at once: one KnowledgeInvalid whose
FAQFormatErrors point at file:line and field. Two entries sharing a question are not a load
error; they are listed in KnowledgeBase.conflicts for `autoreply check` to report.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from autoreply.errors import FAQFormatError, KnowledgeError, KnowledgeInvalid
from autoreply.faqfiles import (
    FAQ_SUFFIXES,
    FIELDS,
    LIST_FIELDS,
    READERS,
    TEXT_FIELDS,
    Record,
    kind_of,
)
from autoreply.models import FAQEntry
from autoreply.text import PhraseList, Synonyms, has_han, normalize, read_lines

_BOOLS = {"true": True, "yes": True, "1": True, "是": True}
_BOOLS |= {"false": False, "no": False, "0": False, "否": False}
_HINTS = {
    "id": "give every entry a unique id, e.g. id: reset-password",
    "question": "write the question as a customer would ask it",
    "answer": "fill it in or delete the entry",
    "category": "leave it out to use 'general'",
}
_CALMING_LINE = re.compile(r"([A-Za-z]{2,3}(?:[-_][A-Za-z0-9]+)?)\s*[:：]\s*(\S.*)")


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


def parse_planned(path: Path, data: bytes) -> tuple[list[FAQEntry], list[FAQFormatError]]:
    """The entries and problems of ``data`` read as if it were the file ``path`` (a change not
    written yet): sources and problems name ``path``, not the scratch copy."""
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="autoreply-plan-") as tmp:
        scratch = Path(tmp) / path.name
        scratch.write_bytes(data)
        entries, problems = _parse_file(scratch)
    prefix = f"{scratch}:"
    entries = [
        e.model_copy(update={"source": f"{path}:{(e.source or '').removeprefix(prefix)}"})
        for e in entries
    ]
    problems = [
        FAQFormatError(path, line=p.line, field=p.field, problem=p.problem, hint=p.hint)
        for p in problems
    ]
    return entries, problems


def cross_check(entries: Sequence[FAQEntry]) -> tuple[list[FAQFormatError], tuple[Conflict, ...]]:
    """What load_knowledge() checks across files: ids used twice (problems) and texts claimed
    by two enabled entries (conflicts, which ``autoreply check`` reports)."""
    return _duplicate_ids(entries), _find_conflicts(entries)


# --- files ------------------------------------------------------------------------------


def check_replacement(
    folder: Path, name: str, data: bytes
) -> tuple[list[FAQEntry], list[Conflict]]:
    """What ``autoreply check`` would say of ``folder`` with its file ``name`` replaced by
    (or added as) ``data``, without touching the folder.

    Raises KnowledgeInvalid with every problem (the new file's format, an id it shares
    with another file, problems elsewhere that would stop the reload), located in
    ``folder/name``; returns the new file's entries and the conflicts that involve them
    (a question or variant that another entry also has)."""
    target = folder / name
    fresh, problems = parse_planned(target, data)
    others: list[FAQEntry] = []
    for file in _faq_files(folder):
        if file != target:
            found, bad = _parse_file(file)
            others += found
            problems += bad
    duplicates, conflicts = cross_check(others + fresh)
    if problems or duplicates:
        raise KnowledgeInvalid(problems + duplicates)
    new_ids = {e.id for e in fresh}
    return fresh, [c for c in conflicts if c.first[0] in new_ids or c.second[0] in new_ids]


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


# --- records -> entries -----------------------------------------------------------------


def _parse_file(path: Path) -> tuple[list[FAQEntry], list[FAQFormatError]]:
    entries: list[FAQEntry] = []
    problems: list[FAQFormatError] = []
    reader = READERS.get(path.suffix.lower())
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


def _build(path: Path, rec: Record) -> tuple[FAQEntry | None, list[FAQFormatError]]:
    """Validate one raw record into an FAQEntry, or say everything wrong with it."""

    def problem(name: str | None, text: str, hint: str | None = None) -> FAQFormatError:
        line = rec.keys.get(name, rec.line) if name else rec.line
        return FAQFormatError(path, line=line, field=name, problem=text, hint=hint)

    if not isinstance(rec.data, dict):
        text = f"an entry must be a mapping of fields, not {kind_of(rec.data)}"
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
            where = str(err["loc"][0]) if err["loc"] else None
            if where not in reported:
                problems.append(problem(where, _pydantic_problem(err), _HINTS.get(where or "")))
        return None, problems
    return (None, problems) if problems else (_drop_repeats(entry), [])


def _check(name: str, value: object) -> object:
    """The value as FAQEntry wants it; ValueError(problem, hint) saying what was expected."""
    if name in TEXT_FIELDS:
        if not isinstance(value, str):
            hint = "put it in quotes" if isinstance(value, int | float) else None
            raise ValueError(f"must be text, not {kind_of(value)}", hint)
        return _sound(value)
    if name in LIST_FIELDS:
        if not isinstance(value, list | tuple):
            raise ValueError(f"must be a list of text, not {kind_of(value)}", 'e.g. ["a", "b"]')
        for i, item in enumerate(value, start=1):
            if not isinstance(item, str):
                raise ValueError(
                    f"must be a list of text; item {i} is {kind_of(item)}", "put it in quotes"
                )
        return tuple(_sound(item) for item in value)
    if isinstance(value, str) and value.strip().lower() in _BOOLS:
        return _BOOLS[value.strip().lower()]
    if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
        return bool(value)
    raise ValueError(f"must be true or false, not {kind_of(value)}")


def _sound(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            "contains a broken character (a lone surrogate)", "retype the text"
        ) from None
    return text


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
