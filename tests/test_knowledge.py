"""Loading FAQ files: every format, real file:line errors, conflicts, fingerprint, writing."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import openpyxl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autoreply.errors import FAQFormatError, KnowledgeError, KnowledgeInvalid
from autoreply.knowledge import (
    Conflict,
    KnowledgeBase,
    bundled_knowledge_dir,
    load_faq,
    load_knowledge,
    parse_entries,
)
from autoreply.models import FAQEntry

ENTRIES = [
    FAQEntry(
        id="reset-password",
        question="怎么修改密码？",
        variants=("忘记密码了", "密码怎么改"),
        answer="在「我的」→「设置」里点「修改密码」。",
        category="account/password",
        tags=("password",),
    ),
    FAQEntry(
        id="shipping-time",
        question="How long does shipping take?",
        variants=("when will my order arrive",),
        answer="Orders ship within 2 business days.\nDelivery takes 3-5 days.",
        category="orders/shipping",
    ),
    FAQEntry(
        id="refund",
        question="I want a refund",
        answer="A person will help you with your refund.",
        category="billing/refunds",
        escalate=True,
    ),
]

YAML_TEXT = """\
# FAQ
entries:
  - id: reset-password
    question: 怎么修改密码？
    variants: [忘记密码了, 密码怎么改]
    answer: 在「我的」→「设置」里点「修改密码」。
    category: account/password
    tags: [password]
  - id: shipping-time
    question: How long does shipping take?
    variants:
      - when will my order arrive
    answer: |-
      Orders ship within 2 business days.
      Delivery takes 3-5 days.
    category: orders/shipping
  - id: refund
    question: I want a refund
    answer: A person will help you with your refund.
    category: billing/refunds
    escalate: yes
"""

HEADER = ["id", "question", "variants", "answer", "category", "tags", "escalate", "enabled"]


def _rows() -> list[list[object]]:
    return [
        [e.id, e.question, "|".join(e.variants), e.answer, e.category, "\n".join(e.tags)]
        + ["是" if e.escalate else "", "true" if e.enabled else "false"]
        for e in ENTRIES
    ]


def _dicts() -> list[dict[str, object]]:
    return [e.model_dump(mode="json") for e in ENTRIES]


def write_yaml(path: Path) -> None:
    path.write_text(YAML_TEXT, encoding="utf-8")


def write_json(path: Path) -> None:
    path.write_text(json.dumps(_dicts(), ensure_ascii=False, indent=2), encoding="utf-8")


def write_jsonl(path: Path) -> None:
    lines = [json.dumps(d, ensure_ascii=False) for d in _dicts()]
    path.write_text("\n".join(lines[:2]) + "\n\n" + lines[2] + "\n", encoding="utf-8")


def write_csv(path: Path) -> None:
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(HEADER)
        writer.writerows(_rows())


def write_xlsx(path: Path) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(HEADER)
    for row in _rows():
        sheet.append(row)
    book.save(path)


WRITERS = {
    "faq.yaml": write_yaml,
    "faq.YML": write_yaml,
    "faq.json": write_json,
    "faq.jsonl": write_jsonl,
    "faq.csv": write_csv,
    "faq.xlsx": write_xlsx,
}


def kb_dir(root: Path) -> Path:
    """A knowledge directory with its own (empty) phrases and synonyms, so that the bundled
    ones cannot affect the test."""
    (root / "phrases").mkdir(parents=True, exist_ok=True)
    (root / "synonyms.txt").write_text("", encoding="utf-8")
    return root


def bare(entries: tuple[FAQEntry, ...] | list[FAQEntry]) -> list[FAQEntry]:
    return [e.model_copy(update={"source": None}) for e in entries]


def problems_of(path: Path) -> list[FAQFormatError]:
    with pytest.raises(KnowledgeInvalid) as info:
        load_knowledge(path)
    return info.value.problems


def where(problems: list[FAQFormatError]) -> set[tuple[int | None, str | None]]:
    return {(p.line, p.field) for p in problems}


# --- formats ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_every_format_loads_the_same_entries(tmp_path: Path, name: str) -> None:
    """YAML, JSON, JSONL, CSV and XLSX files with the same content give equal entries."""
    WRITERS[name](tmp_path / name)
    kb = load_knowledge(tmp_path / name)
    assert bare(kb.entries) == ENTRIES
    assert kb.sources == (str(tmp_path / name),)
    assert all(e.source and e.source.startswith(f"{tmp_path / name}:") for e in kb.entries)


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_fingerprint_does_not_depend_on_the_format(tmp_path: Path, name: str) -> None:
    """The fingerprint covers the content, not the file it came from."""
    write_yaml(tmp_path / "a.yaml")
    WRITERS[name](tmp_path / name)
    assert load_knowledge(tmp_path / name).fingerprint == load_faq(tmp_path / "a.yaml").fingerprint


def test_entry_lines_are_real(tmp_path: Path) -> None:
    """FAQEntry.source is file:line of the entry in every format."""
    expected = {
        "faq.yaml": [3, 9, 17],
        "faq.json": [2, 17, 29],
        "faq.jsonl": [1, 2, 4],
        "faq.csv": [2, 3, 5],
        "faq.xlsx": [2, 3, 4],
    }
    for name, lines in expected.items():
        WRITERS[name](tmp_path / name)
        sources = [e.source for e in load_knowledge(tmp_path / name).entries]
        assert sources == [f"{tmp_path / name}:{n}" for n in lines], name


def test_yaml_top_level_list_and_json_entries_object(tmp_path: Path) -> None:
    """YAML may be a bare list; JSON may be an object with "entries"."""
    body = YAML_TEXT.split("entries:\n", 1)[1].replace("\n  ", "\n")[2:]
    (tmp_path / "a.yml").write_text(body, encoding="utf-8")
    (tmp_path / "b.json").write_text(
        json.dumps({"entries": _dicts()}, ensure_ascii=False, indent=1), encoding="utf-8"
    )
    assert bare(load_knowledge(tmp_path / "a.yml").entries) == ENTRIES
    kb = load_knowledge(tmp_path / "b.json")
    assert bare(kb.entries) == ENTRIES
    assert kb.entries[1].source == f"{tmp_path / 'b.json'}:18"


def test_shared_data_jsonl_loads_as_is(tmp_path: Path) -> None:
    """The shared data format {id, question, variants, answer, category} needs no changes."""
    rows = [
        {
            "id": "p1",
            "question": "how do i pay",
            "variants": ["payment"],
            "answer": "By card.",
            "category": "billing",
        },
        {"id": "p2", "question": "where is my order", "variants": [], "answer": "Tracking page."},
    ]
    path = tmp_path / "shared.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    kb = load_knowledge(path)
    assert [e.id for e in kb.entries] == ["p1", "p2"]
    assert kb.get("p2").category == "general"
    assert kb.get("p1").variants == ("payment",)


def test_directory_loads_every_faq_file_in_path_order(tmp_path: Path) -> None:
    """A directory loads FAQ files recursively, sorted, skipping hidden, phrases/ and non-FAQ."""
    root = kb_dir(tmp_path / "kb")
    (root / "sub").mkdir()
    (root / ".hidden").mkdir()
    (root / "b.jsonl").write_text(json.dumps(_dicts()[1]) + "\n", encoding="utf-8")
    (root / "sub" / "c.yaml").write_text(f"- {json.dumps(_dicts()[2])}\n", encoding="utf-8")
    (root / "a.json").write_text(json.dumps([_dicts()[0]]), encoding="utf-8")
    (root / ".draft.yaml").write_text("not: [valid", encoding="utf-8")
    (root / ".hidden" / "x.yaml").write_text("not: [valid", encoding="utf-8")
    (root / "phrases" / "odd.yaml").write_text("not: [valid", encoding="utf-8")
    (root / "README.md").write_text("# notes", encoding="utf-8")
    (root / "~$faq.xlsx").write_bytes(b"excel lock file")
    kb = load_knowledge(root)
    assert bare(kb.entries) == ENTRIES
    assert kb.sources == tuple(str(root / n) for n in ("a.json", "b.jsonl", "sub/c.yaml"))
    assert len(kb) == 3 and "refund" in kb and "nope" not in kb


def test_own_phrases_synonyms_and_calming_replace_the_bundled_ones(tmp_path: Path) -> None:
    root = kb_dir(tmp_path)
    write_yaml(root / "faq.yaml")
    (root / "synonyms.txt").write_text("退款 = 退钱\n", encoding="utf-8")
    (root / "phrases" / "human.txt").write_text("# comment\n转人工\nTalk to a HUMAN\n", "utf-8")
    (root / "phrases" / "calming.txt").write_text(
        "# calming\nzh: 非常抱歉给您带来不便。\n\nen: I'm sorry: let me help.\n", encoding="utf-8"
    )
    kb = load_knowledge(root)
    assert kb.synonyms.groups == (("退款", "退钱"),)
    assert set(kb.phrases) == {"human"}
    assert kb.phrases["human"].phrases == ("转人工", "talk to a human")
    assert kb.calming == {"zh": ("非常抱歉给您带来不便。",), "en": ("I'm sorry: let me help.",)}


def test_malformed_calming_line_says_where(tmp_path: Path) -> None:
    root = kb_dir(tmp_path)
    write_yaml(root / "faq.yaml")
    (root / "phrases" / "calming.txt").write_text("zh: 抱歉\njust text\n", encoding="utf-8")
    [problem] = problems_of(root)
    assert problem.location == f"{root / 'phrases' / 'calming.txt'}:2"


def test_single_file_uses_the_bundled_phrases(tmp_path: Path) -> None:
    write_yaml(tmp_path / "faq.yaml")
    bundled = bundled_knowledge_dir()
    kb = load_knowledge(tmp_path / "faq.yaml")
    expected = {p.stem for p in (bundled / "phrases").glob("*.txt")} - {"calming"}
    assert set(kb.phrases) == expected


def test_bundled_demo_loads_without_problems() -> None:
    """The demo FAQ shipped with autoreply loads cleanly and has no conflicts."""
    demo = bundled_knowledge_dir() / "demo"
    if not demo.is_dir():
        pytest.skip("knowledge/demo is not there yet")
    kb = load_knowledge(demo)
    assert len(kb.enabled) > 0
    assert [c.render() for c in kb.conflicts] == []
    assert {"human", "complaint"} <= set(kb.phrases)


# --- errors -----------------------------------------------------------------------------


def test_jsonl_reports_every_problem_with_line_and_field(tmp_path: Path) -> None:
    """One load reports all problems of a file, each at its own line and field."""
    lines = [
        '{"id": "ok", "question": "q", "answer": "a"}',
        '{"id": "no-answer", "question": "q2"}',
        "",
        '{"id": "broken", ',
        '{"id": "v", "question": "q3", "answer": "a", "variants": 5}',
        '{"id": "u", "question": "q4", "anwser": "a"}',
        '{"id": "e", "question": "  ", "answer": "a"}',
        '{"question": "q5", "answer": "a"}',
        '{"id": "l", "question": "q6", "answer": ["a", "b"]}',
        '["not", "an", "object"]',
        '{"id": "b", "question": "q7", "answer": "a", "escalate": "maybe"}',
    ]
    path = tmp_path / "faq.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    problems = problems_of(path)
    assert where(problems) == {
        (2, "answer"),
        (4, None),
        (5, "variants"),
        (6, "anwser"),
        (6, "answer"),
        (7, "question"),
        (8, "id"),
        (9, "answer"),
        (10, None),
        (11, "escalate"),
    }
    by = {(p.line, p.field): p.render() for p in problems}
    assert (
        by[(2, "answer")] == f"{path}:2: field 'answer' is missing: fill it in or delete the entry"
    )
    assert "known fields: id, question, variants, answer" in by[(6, "anwser")]
    assert "must be a list of text, not a number (5)" in by[(5, "variants")]
    assert "must be text, not a list" in by[(9, "answer")]
    assert "is empty" in by[(7, "question")]
    assert "is not valid JSON" in by[(4, None)]


def test_yaml_problems_point_at_the_field_key(tmp_path: Path) -> None:
    path = tmp_path / "faq.yaml"
    path.write_text(
        "- id: a\n"  # 1
        "  question: q\n"  # 2
        "  answer:\n"  # 3  empty
        "- id: b\n"  # 4
        "  question: q2\n"  # 5
        "  answer:\n"  # 6
        "    - not\n"  # 7
        "    - text\n"  # 8
        "  colour: red\n"  # 9
        "- just a string\n",  # 10
        encoding="utf-8",
    )
    problems = problems_of(path)
    assert where(problems) == {(3, "answer"), (6, "answer"), (9, "colour"), (10, None)}
    assert any("is empty" in p.problem for p in problems if p.line == 3)


@pytest.mark.parametrize(
    ("text", "line"),
    [("- id: a\n  question: [unclosed\n  answer: x\n", 3), ("- id: a\n\tquestion: q\n", 2)],
)
def test_yaml_syntax_error_has_a_line(tmp_path: Path, text: str, line: int) -> None:
    path = tmp_path / "faq.yaml"
    path.write_text(text, encoding="utf-8")
    [problem] = problems_of(path)
    assert problem.line == line and "is not valid YAML" in problem.problem


def test_yaml_bad_top_level(tmp_path: Path) -> None:
    path = tmp_path / "faq.yaml"
    path.write_text("id: a\nquestion: q\nanswer: x\n", encoding="utf-8")
    [problem] = problems_of(path)
    assert "must be a list of entries, not a mapping" in problem.render()
    path.write_text("version: 2\nentries:\n  - {id: a, question: q, answer: x}\n", "utf-8")
    [problem] = problems_of(path)
    assert (problem.line, problem.field) == (1, "version")


def test_json_problems_at_entry_line_and_syntax_line(tmp_path: Path) -> None:
    path = tmp_path / "faq.json"
    path.write_text(
        '{"note": "x", "entries": [\n'
        '  {"id": "a", "question": "q", "answer": "a"},\n'
        '  {"id": "b",\n'
        '   "question": 3,\n'
        '   "answer": ""}\n'
        "]}\n",
        encoding="utf-8",
    )
    assert where(problems_of(path)) == {(1, "note"), (3, "question"), (3, "answer")}
    path.write_text('[\n  {"id": "a",\n   "question": "q" "answer": "x"}\n]', encoding="utf-8")
    [problem] = problems_of(path)
    assert problem.line == 3 and "is not valid JSON" in problem.problem


def test_csv_problems_use_the_starting_line_of_each_row(tmp_path: Path) -> None:
    """A quoted cell can span lines; the row's line is where it starts (header = line 1)."""
    path = tmp_path / "faq.csv"
    path.write_text(
        "id,question,answer,escalate,colour\n"  # 1
        'a,q,"two\nlines",no,\n'  # 2-3
        "b,q2,,maybe,\n"  # 4
        ",q3,x,,\n"  # 5
        "c,q4,x,1,,extra\n",  # 6
        encoding="utf-8",
    )
    assert where(problems_of(path)) == {
        (1, "colour"),
        (4, "answer"),
        (4, "escalate"),
        (5, "id"),
        (6, None),
    }


def test_xlsx_problems_use_spreadsheet_rows(tmp_path: Path) -> None:
    path = tmp_path / "faq.xlsx"
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["ID", "Question", "Answer", "Variants", "Enabled"])
    sheet.append(["a", "q", "x", "v1|v2", False])
    sheet.append([])  # row 3 is empty
    sheet.append([42, "q2", None, None, None])
    sheet.append(["c", "q3", "x", None, 7])
    book.save(path)
    assert where(problems_of(path)) == {(4, "answer"), (5, "enabled")}
    sheet.delete_rows(4, 2)
    book.save(path)
    [entry] = load_knowledge(path).entries
    assert (entry.variants, entry.enabled, entry.source) == (("v1", "v2"), False, f"{path}:2")


def test_damaged_xlsx_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "faq.xlsx"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    [problem] = problems_of(path)
    assert "cannot be read as an Excel workbook" in problem.render()


def test_duplicate_ids_name_both_places(tmp_path: Path) -> None:
    root = kb_dir(tmp_path)
    (root / "a.jsonl").write_text('{"id": "x", "question": "q1", "answer": "a"}\n', "utf-8")
    (root / "b.yaml").write_text(
        "- {id: y, question: q2, answer: a}\n- {id: x, question: q3, answer: b}\n", "utf-8"
    )
    [problem] = problems_of(root)
    assert problem.render() == (
        f"{root / 'b.yaml'}:2: field 'id' 'x' is also the id of the entry at "
        f"{root / 'a.jsonl'}:1: ids must be unique: rename one of them"
    )


def test_problems_from_several_files_are_reported_together(tmp_path: Path) -> None:
    root = kb_dir(tmp_path)
    (root / "a.jsonl").write_text('{"id": "x", "question": "q1"}\n', encoding="utf-8")
    (root / "b.yaml").write_text("- id: y\n  answer: a\n", encoding="utf-8")
    problems = problems_of(root)
    assert [(Path(p.path).name, p.line, p.field) for p in problems] == [
        ("a.jsonl", 1, "answer"),
        ("b.yaml", 1, "question"),
    ]


def test_utf8_bom_is_fine(tmp_path: Path) -> None:
    write_csv(tmp_path / "faq.csv")
    write_jsonl(tmp_path / "faq.jsonl")
    for name in ("faq.csv", "faq.jsonl"):
        path = tmp_path / name
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
        assert bare(load_knowledge(path).entries) == ENTRIES


def test_latin1_file_is_an_encoding_error(tmp_path: Path) -> None:
    path = tmp_path / "faq.yaml"
    path.write_bytes("- id: a\n  question: café?\n  answer: oui\n".encode("latin-1"))
    [problem] = problems_of(path)
    assert problem.line == 2
    assert "is not valid UTF-8" in problem.problem and problem.hint == "save the file as UTF-8"


def test_empty_jsonl_file_is_fine_but_an_empty_knowledge_base_is_not(tmp_path: Path) -> None:
    root = kb_dir(tmp_path)
    write_jsonl(root / "a.jsonl")
    (root / "b.jsonl").write_text("", encoding="utf-8")
    assert len(load_knowledge(root)) == 3
    (root / "a.jsonl").unlink()
    [problem] = problems_of(root)
    assert "has no FAQ entries" in problem.problem and "b.jsonl" in problem.render()


def test_missing_path_and_empty_directory_say_what_was_expected(tmp_path: Path) -> None:
    with pytest.raises(KnowledgeError, match="no such file or directory; expected an FAQ file"):
        load_knowledge(tmp_path / "nope")
    (tmp_path / "notes.md").write_text("x", encoding="utf-8")
    with pytest.raises(KnowledgeError, match=r"no FAQ files found; expected .*\.yaml"):
        load_knowledge(tmp_path)
    with pytest.raises(KnowledgeError, match="not an FAQ file"):
        load_knowledge(tmp_path / "notes.md")


def test_parse_entries_raises_every_problem_of_one_file(tmp_path: Path) -> None:
    path = tmp_path / "faq.jsonl"
    path.write_text('{"id": "a"}\n{"id": "a", "question": "q", "answer": "x"}\n', "utf-8")
    with pytest.raises(KnowledgeInvalid) as info:
        parse_entries(path)
    assert where(info.value.problems) == {(1, "question"), (1, "answer")}


# --- the knowledge base -----------------------------------------------------------------


def test_repeated_variants_inside_an_entry_are_dropped(tmp_path: Path) -> None:
    path = tmp_path / "faq.yaml"
    path.write_text(
        "- id: a\n  question: How do I pay?\n"
        "  variants: ['how do i pay', 'Payment options', 'PAYMENT OPTIONS!',\n"
        "             '付款方式', '付款方式？']\n"
        "  answer: By card.\n",
        encoding="utf-8",
    )
    assert load_knowledge(path).get("a").variants == ("Payment options", "付款方式")


def test_conflicts_across_entries_and_files(tmp_path: Path) -> None:
    """Two entries sharing a normalized text are reported, not rejected."""
    root = kb_dir(tmp_path)
    (root / "a.yaml").write_text(
        "- id: billing\n  question: How do I pay?\n  answer: a\n"
        "- id: old\n  question: how do i pay\n  answer: b\n  enabled: false\n",
        encoding="utf-8",
    )
    (root / "b.yaml").write_text(
        "- id: card\n  question: Card payments\n  answer: c\n"
        "- id: pay\n  question: Paying\n  variants: ['HOW DO I PAY??', 怎麼付款]\n  answer: d\n"
        "- id: zh\n  question: 怎么付款\n  answer: e\n",
        encoding="utf-8",
    )
    kb = load_knowledge(root)
    a, b = root / "a.yaml", root / "b.yaml"
    assert kb.conflicts == (
        Conflict("how do i pay", ("billing", f"{a}:1"), ("pay", f"{b}:4")),
        Conflict("怎么付款", ("pay", f"{b}:4"), ("zh", f"{b}:8")),
    )
    assert kb.conflicts[0].render() == (
        f"{b}:4: 'how do i pay' of entry 'pay' is also in entry 'billing' ({a}:1): "
        "keep it in one entry"
    )
    assert [e.id for e in kb.enabled] == ["billing", "card", "pay", "zh"]


def test_get_unknown_entry_lists_known_ids() -> None:
    entries = tuple(FAQEntry(id=f"e{i:02}", question=f"q{i}", answer="a") for i in range(12))
    kb = KnowledgeBase(entries)
    assert kb.get("e03").question == "q3"
    with pytest.raises(
        KnowledgeError, match=r"unknown entry 'x'; known: e00, e01, .*e09 \(\+2 more\)"
    ):
        kb.get("x")


def test_categories_count_enabled_entries() -> None:
    kb = KnowledgeBase(
        (
            FAQEntry(id="a", question="q", answer="a", category="billing/refunds"),
            FAQEntry(id="b", question="q", answer="a", category="billing/refunds"),
            FAQEntry(id="c", question="q", answer="a", category="billing/refunds", enabled=False),
            FAQEntry(id="d", question="q", answer="a"),
        )
    )
    assert kb.categories() == {"billing/refunds": 2, "general": 1}
    assert kb.language(kb.get("a")) == "en"


def test_fingerprint_is_stable_and_follows_content(tmp_path: Path) -> None:
    write_yaml(tmp_path / "faq.yaml")
    first = load_knowledge(tmp_path / "faq.yaml").fingerprint
    assert load_knowledge(tmp_path / "faq.yaml").fingerprint == first
    assert len(first) == 64
    text = YAML_TEXT.replace("Delivery takes 3-5 days.", "Delivery takes 3-6 days.")
    (tmp_path / "faq.yaml").write_text(text, encoding="utf-8")
    assert load_knowledge(tmp_path / "faq.yaml").fingerprint != first


# --- never another exception ------------------------------------------------------------


def _loads_or_says_where(root: Path, name: str, data: bytes) -> None:
    (root / name).write_bytes(data)
    try:
        load_knowledge(root)
    except KnowledgeError as exc:
        assert isinstance(exc, FAQFormatError | KnowledgeInvalid)
        assert name in str(exc)


FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(line=st.text())
def test_any_jsonl_line_loads_or_says_where(
    tmp_path_factory: pytest.TempPathFactory, line: str
) -> None:
    root = kb_dir(tmp_path_factory.mktemp("jsonl"))
    _loads_or_says_where(root, "faq.jsonl", line.encode("utf-8", "surrogatepass"))


@FUZZ
@given(
    line=st.fixed_dictionaries(
        {"id": st.text(), "question": st.text(), "answer": st.text()},
        optional={k: st.from_type(object) | st.lists(st.text()) for k in ("variants", "escalate")},
    ).map(lambda d: json.dumps(d, default=repr))
)
def test_any_jsonl_object_loads_or_says_where(
    tmp_path_factory: pytest.TempPathFactory, line: str
) -> None:
    root = kb_dir(tmp_path_factory.mktemp("jsonl"))
    _loads_or_says_where(root, "faq.jsonl", line.encode("utf-8"))


@FUZZ
@given(text=st.text() | st.text(alphabet="-:[]{}#&*!|>'\"%@` \n\tabc?,0123é中"))
def test_any_yaml_text_loads_or_says_where(
    tmp_path_factory: pytest.TempPathFactory, text: str
) -> None:
    root = kb_dir(tmp_path_factory.mktemp("yaml"))
    _loads_or_says_where(root, "faq.yaml", text.encode("utf-8", "surrogatepass"))


@FUZZ
@given(text=st.text(alphabet='[]{},:" \n\t0123abc\\eE.-truefalsn'))
def test_any_json_text_loads_or_says_where(
    tmp_path_factory: pytest.TempPathFactory, text: str
) -> None:
    root = kb_dir(tmp_path_factory.mktemp("json"))
    _loads_or_says_where(root, "faq.json", text.encode("utf-8"))


KEYS = st.sampled_from(["id", "question", "answer", "variants", "escalate", "entries", "x"])
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=12,
)


@FUZZ
@given(value=JSON_VALUES, indent=st.none() | st.integers(0, 2))
def test_any_json_document_loads_or_says_where(
    tmp_path_factory: pytest.TempPathFactory, value: object, indent: int | None
) -> None:
    """Any JSON document loads (each entry at a line that opens an object) or says where."""
    root = kb_dir(tmp_path_factory.mktemp("json"))
    text = json.dumps(value, indent=indent)
    _loads_or_says_where(root, "faq.json", text.encode("utf-8"))
    try:
        kb = load_knowledge(root)
    except KnowledgeError:
        return
    lines = text.split("\n")
    for entry in kb.entries:
        assert "{" in lines[int(str(entry.source).rsplit(":", 1)[1]) - 1]
