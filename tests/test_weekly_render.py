"""Rendering the weekly report: redaction holds and customer text cannot inject markup in
Markdown, HTML and CSV; the HTML is self-contained; files and zips are written."""

from __future__ import annotations

import csv
import io
import re
import zipfile
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest

from autoreply.errors import ConfigError
from autoreply.gap_topics import update_topics
from autoreply.models import Priority, Reason
from autoreply.service import AutoReply
from autoreply.store import LearningSource, VariantStatus
from autoreply.store.sqlite import SQLiteStore
from autoreply.weekly_data import WeeklyReport, week_of, weekly_report
from autoreply.weekly_render import render, to_csv, to_html, to_markdown, write

PHONE, EMAIL = "13812345678", "li.wei@example.com"
NASTY = [
    f"<script>alert(1)</script> when does the rocket launch, call {PHONE}",
    f"rocket launch time today? mail {EMAIL}",
    '=HYPERLINK("http://evil.example/x") is the rocket launch delayed | *now*',
    "what time is the next rocket launch [click](http://evil.example)",
]


@pytest.fixture
def report(bot: AutoReply) -> WeeklyReport:
    """A week whose gaps were stored unredacted (as a careless store might hold them)."""
    for i, text in enumerate(NASTY):
        bot.store.add_gap(
            question=text,
            normalized=text,
            reason=Reason.LOW_CONFIDENCE,
            channel="web",
            conversation_id=f"c{i}",
            user_id=f"u{i}",
            category="<b>bold</b>",
        )
    ticket, _ = bot.store.open_ticket(
        conversation_id="c0",
        user_id="u0",
        channel="web",
        priority=Priority.NORMAL,
        reason=Reason.LOW_CONFIDENCE,
    )
    bot.store.agent_reply(ticket.id, agent="ann", text=f"<img src=x onerror=alert(1)> {EMAIL}")
    bot.store.resolve_ticket(ticket.id, agent="ann")
    for i, text in enumerate(NASTY[:2]):  # learned phrasings, stored unredacted too
        bot.store.add_evidence(
            entry_id="refund",
            text=text,
            normalized=text,
            source=LearningSource.PICKED,
            message_id=i,
        )
    update_topics(bot.store, bot.engine.index)
    return weekly_report(bot.store, week_of(datetime.now(UTC)), kb=bot.kb)


def test_phrasings_learned_and_waiting_are_reported(bot: AutoReply) -> None:
    """The report lists this week's learned phrasings, then those waiting, with evidence."""
    for i, text in enumerate(("money back please", "refund my order")):
        bot.store.add_evidence(
            entry_id="refund",
            text=text,
            normalized=text,
            source=LearningSource.AGENT_SCRIPT,
            message_id=i,
        )
    first = bot.store.learned_variants()[0]
    bot.store.set_variant_status([first.id], VariantStatus.ACCEPTED, by="ann")
    report = weekly_report(bot.store, week_of(datetime.now(UTC)), kb=bot.kb)
    assert [(p.text, p.status) for p in report.phrasings] == [
        (first.text, "accepted"),
        (next(v.text for v in bot.store.learned_variants() if v.id != first.id), "pending"),
    ]
    markdown = to_markdown(report)
    assert "## Phrasings learned / waiting" in markdown
    assert "| refund | money back please | learned | agent\\_script 1 |" in markdown
    assert "phrasings.csv" in to_csv(report)


def test_redaction_holds_in_every_format(report: WeeklyReport) -> None:
    assert report.topics and report.suggestions
    texts = [to_markdown(report), to_html(report), *to_csv(report).values()]
    for text in texts:
        assert PHONE not in text and EMAIL not in text
    assert "PHONE" in texts[0] and "EMAIL" in texts[0]


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, [name for name, _ in attrs]))


def test_html_escapes_customer_text_and_is_self_contained(report: WeeklyReport) -> None:
    """Only the report's own tags, no scripts, no event handlers, nothing fetched."""
    page = to_html(report)
    parser = _Tags()
    parser.feed(page)
    allowed = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "div", "b",
               "span", "table", "tr", "th", "td", "svg", "rect", "text", "polyline"}  # fmt: skip
    assert {tag for tag, _ in parser.tags} <= allowed
    attributes = {a for _, names in parser.tags for a in names}
    assert not {"src", "href"} & attributes and not any(a.startswith("on") for a in attributes)
    assert "&lt;script&gt;" in page and "&lt;b&gt;" in page
    assert page.count("<svg") >= 2 and page.startswith("<!doctype html>")


def test_markdown_escapes_markup(report: WeeklyReport) -> None:
    text = to_markdown(report)
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert not re.search(r"(?<!\\)\]\(", text) and r"\[click\]" in text
    assert r"\*now\*" in text and r"\|" in text
    for line in text.splitlines():
        if line.startswith("| ") and "rocket" in line:
            assert line.count(" | ") == line.replace(r"\|", "").count(" | ")


def test_csv_defuses_formulas(report: WeeklyReport) -> None:
    files = to_csv(report)
    assert set(files) >= {"volumes.csv", "topics.csv", "suggestions.csv", "tickets.csv"}
    cells = [
        cell
        for text in files.values()
        for row in csv.reader(io.StringIO(text.lstrip("\ufeff")))
        for cell in row
    ]
    assert not any(c.startswith(("=", "+", "@")) for c in cells)
    assert any(c.startswith("'=HYPERLINK") for c in cells)


def test_empty_week_renders(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "e.db") as store:
        empty = weekly_report(store, week_of(datetime(2026, 11, 18, tzinfo=UTC)))
    assert "_none_" in to_markdown(empty)
    assert "no questions this week" in to_html(empty)
    assert to_csv(empty)["topics.csv"].count("\r\n") == 1


def test_write_files_and_zip(report: WeeklyReport, tmp_path: Path) -> None:
    (md,) = write(report, "md", tmp_path / "out")
    assert md.name == f"weekly-{report.week.label}.md" and md.read_text().startswith("# Weekly")
    (page,) = write(report, "html", tmp_path / "out")
    assert page.suffix == ".html"
    tables = write(report, "csv", tmp_path / "csv")
    assert len(tables) == len(to_csv(report)) and all(p.suffix == ".csv" for p in tables)
    (archive,) = write(report, "csv", tmp_path / "r.zip")
    with zipfile.ZipFile(archive) as z:
        assert f"weekly-{report.week.label}/topics.csv" in z.namelist()
    with pytest.raises(ConfigError, match="known"):
        write(report, "pdf", tmp_path)
    with pytest.raises(ConfigError, match="csv"):
        render(report, "csv")


def test_category_table_adds_up_to_the_escalations(report: WeeklyReport) -> None:
    """Parents show a subtotal only; the escalations column (leaves, and a parent's own
    escalations as a line of their own) sums to the escalations, in every format."""
    from collections import Counter

    from autoreply.weekly_data import category_tree

    tree = category_tree(Counter({"支付/退款": 5, "支付/发票": 2, "支付": 1, "account": 6}))
    week = report.model_copy(update={"escalations_by_category": tree})
    text = to_csv(week)["escalations_by_category.csv"].lstrip("\ufeff")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["category", "escalations", "subtotal"]
    assert ["支付", "", "8"] in rows and ["支付", "1", ""] in rows  # subtotal; its own
    assert ["支付/退款", "5", ""] in rows and rows[-1] == ["total", "14", ""]
    assert sum(int(r[1]) for r in rows[1:-1] if r[1]) == 14
    html_text = to_html(week)
    assert "(支付)" in html_text and "<td>14</td>" in html_text
    md = to_markdown(week)
    assert "- 支付: subtotal 8" in md and "  - 退款: 5" in md and "total: 14" in md


def test_tags_and_satisfaction_are_in_the_report(bot: AutoReply) -> None:
    """Tags of the week's tickets are counted; CSAT averages per agent and per category;
    both appear in every format."""
    store = bot.store
    ids = []
    for i, (agent, category, rating) in enumerate(
        [("ann", "billing", 5), ("ann", "billing", 3), ("bob", "shipping", 2)]
    ):
        t, _ = store.open_ticket(
            conversation_id=f"w{i}",
            user_id=f"u{i}",
            channel="web",
            priority=Priority.NORMAL,
            reason=Reason.LOW_CONFIDENCE,
            category=category,
        )
        store.claim_ticket(t.id, agent)
        store.resolve_ticket(t.id, agent=agent)
        store.add_rating(t.id, rating=rating)
        ids.append(t.id)
    store.tag_ticket(ids[0], ["refund", "vip-call"], agent="ann")
    store.tag_ticket(ids[2], ["refund"], agent="bob")
    report = weekly_report(store, week_of(datetime.now(UTC)), kb=bot.kb)
    assert report.tags == {"refund": 2, "vip-call": 1}
    groups = {(g.by, g.name): (g.ratings, g.average) for g in report.satisfaction}
    assert groups[("agent", "ann")] == (2, 4.0) and groups[("agent", "bob")] == (1, 2.0)
    assert groups[("category", "billing")] == (2, 4.0)
    assert "Customer satisfaction" in to_html(report) and "| refund | 2 |" in to_markdown(report)
    assert "satisfaction.csv" in to_csv(report)
