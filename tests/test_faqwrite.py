"""Writing a user's FAQ file changes only the entry written: byte for byte outside it on YAML
with comments, JSON, JSONL and CSV; cell values and styles of the other rows on XLSX. The
journal undoes a change to the exact bytes, and refuses when the file changed since."""

from __future__ import annotations

import zipfile
from pathlib import Path

import openpyxl
import pytest
from openpyxl.styles import Font, PatternFill

from autoreply.errors import ConflictError, KnowledgeError
from autoreply.faqchange import Draft, Journal, apply, check_draft
from autoreply.faqwrite import appended, replaced, write_atomic
from autoreply.knowledge import load_knowledge, parse_entries
from autoreply.models import FAQEntry

NEW = FAQEntry(
    id="rocket",
    question="When does the rocket launch?",
    variants=("rocket launch time",),
    answer="At 10:00.\nCheck the site for delays.",
)

YAML = """\
# Our FAQ. Kept by the support team: please keep it sorted.
# Questions as customers ask them.
entries:
  # --- shipping ---
  - id: shipping   # the most asked
    question: "Do you ship internationally?"
    variants:
      - international shipping
      - 'can you ship abroad'
    answer: |
      Yes, to over 40 countries.

      # this line is part of the answer
    category: orders/shipping

  # --- refunds ---
  - id: refund
    question: 怎么申请退款？
    answer: 在「我的订单」里点击「申请退款」即可。
    category: 支付/退款
# end of file
"""
JSON = """{
  "entries": [
    {
      "id": "shipping",
      "question": "Do you ship internationally?",
      "variants": ["international shipping"],
      "answer": "Yes, to over 40 countries."
    },
    {"id": "refund", "question": "怎么申请退款？", "answer": "在「我的订单」里申请。"}
  ]
}
"""
JSONL = (
    '{"id": "shipping", "question": "Do you ship internationally?", "answer": "Yes."}\n'
    "\n"
    '{"id": "refund", "answer": "在「我的订单」里申请。", "question": "怎么申请退款？"}\n'
)
CSV = (
    "id,question,variants,answer,category\r\n"
    'shipping,Do you ship internationally?,"international shipping | ship abroad",'
    '"Yes,\r\nto over 40 countries.",orders\r\n'
    "refund,怎么申请退款？,,在「我的订单」里申请。,支付/退款\r\n"
)


def other_lines(before: str, after: str, changed: tuple[str, ...]) -> None:
    """Every line of ``before`` that is not one of the ``changed`` is still there, in order."""
    kept = iter(after.splitlines())
    for line in before.splitlines():
        if line in changed:
            continue
        assert any(line == candidate for candidate in kept), f"lost: {line!r}"


@pytest.mark.parametrize(
    ("name", "text"), [("faq.yaml", YAML), ("faq.json", JSON), ("faq.jsonl", JSONL)]
)
def test_append_keeps_every_byte_before_the_new_entry(tmp_path: Path, name: str, text: str):
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    data = appended(path, NEW, note="accepted by ann from gap topic 7")
    path.write_bytes(data)
    entries = parse_entries(path)
    assert [e.id for e in entries] == ["shipping", "refund", "rocket"]
    assert entries[-1].model_dump() == NEW.model_dump()
    if name.endswith(".json"):  # the new entry goes inside the list, before its ']'
        head = text[: text.rindex("}", 0, text.rindex("]"))]
        assert data.decode().startswith(head + "},")
        assert data.decode().endswith("\n  ]\n}\n")
    else:
        assert data.startswith(text.encode("utf-8"))
    if name == "faq.yaml":
        assert "  # accepted by ann from gap topic 7\n  - id: rocket\n" in data.decode()


def test_csv_append_adds_one_row_with_the_file_s_line_ends(tmp_path: Path) -> None:
    path = tmp_path / "faq.csv"
    path.write_bytes(CSV.encode("utf-8"))
    entry = NEW.model_copy(update={"variants": ("launch time", "when is launch")})
    data = appended(path, entry)
    assert data.startswith(CSV.encode("utf-8"))
    added = data[len(CSV.encode("utf-8")) :].decode()
    assert added.endswith("\r\n") and "launch time | when is launch" in added
    path.write_bytes(data)
    assert parse_entries(path)[-1].variants == ("launch time", "when is launch")


def test_yaml_edit_changes_only_the_changed_fields(tmp_path: Path) -> None:
    """Comments, quoting and blank lines everywhere, the entry's other fields included,
    stay as they were; only the lines of the changed field are new."""
    path = tmp_path / "faq.yaml"
    path.write_text(YAML, encoding="utf-8")
    old = parse_entries(path)[0]
    new = old.model_copy(update={"variants": (*old.variants, "ship to another country")})
    after = replaced(path, "shipping", new).decode("utf-8")
    changed = ("      - 'can you ship abroad'",)
    other_lines(YAML, after, changed)
    assert after.count("\n") == YAML.count("\n") + 1
    assert '    question: "Do you ship internationally?"' in after
    assert "  - id: shipping   # the most asked" in after
    path.write_text(after, encoding="utf-8")
    assert parse_entries(path)[0].variants[-1] == "ship to another country"
    # the second entry: the answer's one line swapped, the rest byte for byte
    refund = parse_entries(path)[1].model_copy(update={"answer": "新的说明。"})
    again = replaced(path, "refund", refund).decode("utf-8")
    assert again == after.replace("在「我的订单」里点击「申请退款」即可。", "新的说明。")


def test_json_and_jsonl_edit_change_only_that_entry(tmp_path: Path) -> None:
    for name, text in (("faq.json", JSON), ("faq.jsonl", JSONL)):
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        refund = parse_entries(path)[1].model_copy(update={"answer": "新的说明。"})
        after = replaced(path, "refund", refund).decode("utf-8")
        old_lines, new_lines = text.splitlines(), after.splitlines()
        assert len(old_lines) == len(new_lines)
        diff = [i for i, (a, b) in enumerate(zip(old_lines, new_lines, strict=True)) if a != b]
        assert len(diff) == 1 and "新的说明。" in new_lines[diff[0]]
        assert "category" not in new_lines[diff[0]]  # a default is not added to the file
        if name == "faq.jsonl":  # its own key order is kept
            assert new_lines[diff[0]].index('"answer"') < new_lines[diff[0]].index('"question"')


def test_csv_edit_replaces_only_that_row(tmp_path: Path) -> None:
    path = tmp_path / "faq.csv"
    path.write_bytes(CSV.encode("utf-8"))
    refund = parse_entries(path)[1].model_copy(update={"variants": ("如何退款",)})
    after = replaced(path, "refund", refund).decode("utf-8")
    assert after == CSV.replace("refund,怎么申请退款？,,", "refund,怎么申请退款？,如何退款,")
    with pytest.raises(KnowledgeError, match="no 'tags' column"):
        replaced(path, "refund", refund.model_copy(update={"tags": ("vip",)}))


def workbook(path: Path) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["id", "question", "variants", "answer"])
    sheet.append(["shipping", "Do you ship internationally?", "abroad\nworldwide", "Yes."])
    sheet.append(["refund", "怎么申请退款？", None, "在「我的订单」里申请。"])
    sheet.append(["cancel", "How do I cancel?", None, "Billing → Cancel."])
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    sheet["A2"].fill = PatternFill("solid", fgColor="FFFF00")
    sheet["D4"].font = Font(italic=True, color="FF0000")
    sheet.column_dimensions["B"].width = 42
    book.save(path)


def cells(path: Path) -> dict[tuple[int, int], tuple[object, str, str, bool, bool]]:
    sheet = openpyxl.load_workbook(path).active
    return {
        (c.row, c.column): (c.value, c.fill.fgColor.rgb, str(c.font.color), c.font.b, c.font.i)
        for row in sheet.iter_rows()
        for c in row
    }


def test_xlsx_edit_and_append_keep_other_rows_values_and_styles(tmp_path: Path) -> None:
    path = tmp_path / "faq.xlsx"
    workbook(path)
    before = cells(path)
    refund = parse_entries(path)[1].model_copy(update={"answer": "新的说明。"})
    path.write_bytes(replaced(path, "refund", refund))
    after = cells(path)
    assert {k: v for k, v in after.items() if k[0] != 3} == {
        k: v for k, v in before.items() if k[0] != 3
    }
    assert after[(3, 4)][0] == "新的说明。" and after[(3, 2)] == before[(3, 2)]
    assert openpyxl.load_workbook(path).active.column_dimensions["B"].width == 42
    path.write_bytes(appended(path, NEW.model_copy(update={"variants": ("a", "b")})))
    grown = cells(path)
    assert {k: v for k, v in grown.items() if k[0] <= 4} == after
    assert grown[(5, 1)][0] == "rocket" and grown[(5, 3)][0] == "a\nb"  # as the file does it
    assert parse_entries(path)[-1].variants == ("a", "b")


def test_xlsx_with_a_drawing_is_refused_not_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "faq.xlsx"
    workbook(path)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("xl/drawings/drawing1.xml", "<xdr:wsDr/>")
    with pytest.raises(KnowledgeError, match="drawings"):
        appended(path, NEW)


def test_a_layout_it_cannot_follow_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "faq.yaml"
    path.write_text("[{id: a, question: q, answer: x}]  # flow style\n", encoding="utf-8")
    with pytest.raises(KnowledgeError, match="edit it by hand"):
        appended(path, NEW)
    assert path.read_text(encoding="utf-8").endswith("# flow style\n")
    path.write_text("- id: a\n  question: [unclosed\n", encoding="utf-8")
    with pytest.raises(KnowledgeError, match="not valid YAML"):
        replaced(path, "a", NEW)


def test_journal_undo_gives_back_the_exact_bytes(tmp_path: Path, faq_dir: Path) -> None:
    path = faq_dir / "faq.yaml"
    path.write_text(YAML, encoding="utf-8")
    kb = load_knowledge(faq_dir)
    journal = Journal(faq_dir)
    old = kb.get("refund")
    edit = Draft(old.model_copy(update={"answer": "改了。"}), path, "refund")
    change = apply(kb, edit, journal=journal, action="edit", by="ann")
    assert "改了。" in path.read_text(encoding="utf-8") and change.by == "ann"
    added = Draft(NEW, faq_dir / "accepted.yaml", None, None, "accepted by ann")
    apply(load_knowledge(faq_dir), added, journal=journal, action="accept", by="ann")
    assert [c.action for c in journal.changes()] == ["accept", "edit"]
    journal.undo(by="bob")
    assert not (faq_dir / "accepted.yaml").exists()
    journal.undo(by="bob")
    assert path.read_text(encoding="utf-8") == YAML
    assert all(c.undone_by == "bob" for c in journal.changes())
    with pytest.raises(ConflictError, match="nothing to undo"):
        journal.undo()
    load_knowledge(faq_dir)  # the journal folder is hidden: never read as knowledge


def test_undo_refuses_when_the_file_changed_since(faq_dir: Path) -> None:
    path = faq_dir / "faq.yaml"
    kb = load_knowledge(faq_dir)
    journal = Journal(faq_dir)
    old = kb.get("refund")
    apply(
        kb,
        Draft(old.model_copy(update={"answer": "改了。"}), path, "refund"),
        journal=journal,
        action="edit",
    )
    write_atomic(path, path.read_bytes() + b"# a person's later edit\n")
    with pytest.raises(ConflictError, match="changed after change 1"):
        journal.undo()
    assert path.read_bytes().endswith(b"# a person's later edit\n")


def test_verdict_refuses_errors_and_warns_on_conflicts(faq_dir: Path) -> None:
    kb = load_knowledge(faq_dir)
    target = faq_dir / "accepted.yaml"
    clash = NEW.model_copy(update={"variants": ("international shipping",)})
    _, verdict = check_draft(kb, Draft(clash, target))
    assert not verdict.errors and "international shipping" in verdict.warnings[0]
    with pytest.raises(KnowledgeError, match="save anyway"):
        apply(kb, Draft(clash, target), journal=Journal(faq_dir), action="accept")
    assert not target.exists()
    apply(kb, Draft(clash, target), journal=Journal(faq_dir), action="accept", force=True)
    assert target.exists()
    taken = NEW.model_copy(update={"id": "refund"})
    _, verdict = check_draft(kb, Draft(taken, faq_dir / "more.yaml"))
    assert "'refund' is also the id" in verdict.errors[0]


def test_windows_line_ends_stay_windows_line_ends(tmp_path: Path) -> None:
    for name, text in (("faq.yaml", YAML), ("faq.json", JSON)):
        path = tmp_path / name
        crlf = text.replace("\n", "\r\n").encode("utf-8")
        path.write_bytes(crlf)
        grown = appended(path, NEW)
        cut = crlf.rindex(b"}", 0, crlf.rindex(b"]")) + 1 if name == "faq.json" else None
        assert grown.startswith(crlf[:cut])
        assert b"\n" not in grown.replace(b"\r\n", b"")
        refund = parse_entries(path)[1].model_copy(update={"variants": ("如何退款",)})
        edited = replaced(path, "refund", refund)
        assert b"\n" not in edited.replace(b"\r\n", b"")
        path.write_bytes(edited)
        assert parse_entries(path)[1].variants == ("如何退款",)


def test_undo_of_an_added_candidate_makes_it_pending_again(bot) -> None:
    from autoreply.faqchange import add_draft
    from autoreply.models import CandidateStatus, Message

    folder = Path(bot.settings.knowledge)
    bot.handle(Message(text="I want to take legal action", user_id="u", channel="web"))
    (ticket,) = bot.store.list_tickets()
    bot.store.agent_reply(ticket.id, agent="ann", text="Yes.")
    bot.store.resolve_ticket(ticket.id, agent="ann")
    candidate = bot.store.promote(ticket.id, agent="ann", question="Gift cards?")
    bot.store.set_candidate_status(candidate.id, CandidateStatus.ACCEPTED)
    data = {"id": "gift", "question": "Gift cards?", "answer": "Yes."}
    draft = add_draft(bot.kb, data, into=folder / "accepted.yaml", candidate_id=candidate.id)
    apply(bot.kb, draft, journal=Journal(folder), action="add", by="ann", store=bot.store)
    Journal(folder).undo(store=bot.store)
    (pending,) = bot.store.list_candidates(status=CandidateStatus.PENDING)
    assert pending.id == candidate.id
