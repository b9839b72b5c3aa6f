"""Render a WeeklyReport: Markdown for a wiki, one self-contained HTML file with inline SVG
charts (no JavaScript, nothing fetched), or CSV tables for spreadsheets (a folder or a zip).

Every text that came from a customer or an agent is redacted once more and escaped for its
format: HTML-escaped in HTML and Markdown (wikis render inline HTML), Markdown's link and
emphasis characters and table pipes escaped, CSV cells that a spreadsheet would run as a
formula (starting with = + - @) prefixed with a quote. A question can neither leak personal
data nor inject markup.
"""

from __future__ import annotations

import csv
import html
import io
import re
import zipfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Literal, NamedTuple

from autoreply.errors import ConfigError
from autoreply.redact import redact
from autoreply.weekly_data import CountNode, TicketGroup, TopicLine, WeeklyReport

Format = Literal["md", "html", "csv"]
FORMATS: tuple[str, ...] = ("md", "html", "csv")
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|#~])")
_COLOURS = {"answered": "#2e7d32", "clarified": "#f9a825", "escalated": "#c62828"}


def _text(value: object) -> str:
    return redact(" ".join(str(value).split()))


def _h(value: object) -> str:
    return html.escape(_text(value), quote=True)


def _md(value: object) -> str:
    return _MD_SPECIAL.sub(r"\\\1", html.escape(_text(value), quote=False))


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:g}"


def _category_lines(node: CountNode, depth: int = 0, prefix: str = "") -> Iterable[CategoryLine]:
    """The category tree as lines that add up: a leaf's count is in ``escalations``, a
    parent's in ``subtotal`` only (its escalations are its children's); a parent's own
    escalations, if any, are a child line named after it. The ``escalations`` column sums
    to the number of escalations."""
    for child in node.children:
        path = f"{prefix}/{child.name}" if prefix else child.name
        if not child.children:
            yield CategoryLine(depth, child.name, path, child.count, None)
            continue
        yield CategoryLine(depth, child.name, path, None, child.count)
        own = child.count - sum(c.count for c in child.children)
        if own > 0:
            yield CategoryLine(depth + 1, f"({child.name})", path, own, None)
        yield from _category_lines(child, depth + 1, path)


class CategoryLine(NamedTuple):
    depth: int
    name: str
    path: str
    escalations: int | None
    subtotal: int | None


def _category_rows(node: CountNode, *, paths: bool) -> list[list[str]]:
    rows = [
        [
            line.path if paths else "\u2003" * line.depth + line.name,
            "" if line.escalations is None else str(line.escalations),
            "" if line.subtotal is None else str(line.subtotal),
        ]
        for line in _category_lines(node)
    ]
    return [*rows, ["total", str(node.count), ""]] if rows else []


def _topic_cells(t: TopicLine) -> list[str]:
    previous = " ".join(str(n) for n in t.previous)
    channels = ", ".join(f"{c} {n}" for c, n in t.channels.items())
    flags = " ".join(f for f, on in (("rising", t.rising), ("mass", t.mass)) if on)
    kind = "new" if t.kind.value == "new" else f"near miss of {t.entry_id}"
    return [
        str(t.id),
        kind,
        f"{t.arrow} {t.trend}",
        t.representative,
        ", ".join(t.keywords),
        t.category or "",
        str(t.count),
        previous,
        f"{t.first_seen:%Y-%m-%d} to {t.last_seen:%Y-%m-%d}",
        " / ".join(t.examples),
        channels,
        flags,
    ]


_TOPIC_HEAD = [
    "id",
    "kind",
    "trend",
    "question",
    "keywords",
    "category",
    "this week",
    "previous weeks",
    "seen",
    "examples",
    "channels",
    "hot",
]
_TICKET_HEAD = ["group", "opened", "resolved", "median first reply (min)", "median resolve (min)"]


def _ticket_cells(g: TicketGroup) -> list[str]:
    return [
        g.name,
        str(g.opened),
        str(g.resolved),
        _num(g.first_reply_minutes),
        _num(g.resolve_minutes),
    ]


def tables(report: WeeklyReport) -> dict[str, tuple[list[str], list[list[str]]]]:
    """Every table of the report as (header, rows) of plain (unescaped) text."""
    v = report.volumes
    return {
        "volumes": (
            ["questions", "answered", "clarified", "escalated", "forwarded", "deflection rate"],
            [
                [
                    str(v.questions),
                    str(v.answered),
                    str(v.clarified),
                    str(v.escalated),
                    str(v.forwarded),
                    _pct(v.deflection_rate),
                ]
            ],
        ),
        "escalations_by_reason": (
            ["reason", "count"],
            [[c.name, str(c.count)] for c in report.escalations_by_reason.children],
        ),
        "escalations_by_category": (
            ["category", "escalations", "subtotal"],
            _category_rows(report.escalations_by_category, paths=True),
        ),
        "tags": (["tag", "tickets"], [[tag, str(n)] for tag, n in report.tags.items()]),
        "satisfaction": (
            ["by", "group", "ratings", "average (1-5)"],
            [[g.by, g.name, str(g.ratings), f"{g.average:.2f}"] for g in report.satisfaction],
        ),
        "topics": (_TOPIC_HEAD, [_topic_cells(t) for t in report.topics]),
        "hot": (
            ["topic", "question", "rule", "detail"],
            [[str(h.topic_id), h.representative, h.rule, h.detail] for h in report.hot],
        ),
        "tickets": (
            ["by", *_TICKET_HEAD],
            [["total", *_ticket_cells(report.tickets)]]
            + [["category", *_ticket_cells(g)] for g in report.tickets_by_category]
            + [["agent", *_ticket_cells(g)] for g in report.tickets_by_agent],
        ),
        "feedback": (
            ["entry", "question", "category", "not helpful", "helpful"],
            [
                [f.entry_id, f.question, f.category, str(f.not_helpful), str(f.helpful)]
                for f in report.feedback
            ],
        ),
        "interceptions": (
            ["phrase", "count"],
            [[p, str(n)] for p, n in report.interceptions.items()],
        ),
        "suggestions": (
            ["topic", "kind", "entry", "question", "variants", "answer", "category", "gaps"],
            [
                [
                    str(s.topic_id),
                    s.kind.value,
                    s.entry_id,
                    s.question,
                    " | ".join(s.variants),
                    s.answer or "NEEDS AN ANSWER",
                    s.category,
                    str(s.gaps),
                ]
                for s in report.suggestions
            ],
        ),
        "phrasings": (
            ["entry", "phrasing", "status", "evidence", "flag"],
            [
                [
                    p.entry_id,
                    p.text,
                    "learned" if p.status == "accepted" else "waiting",
                    ", ".join(f"{k} {n}" for k, n in sorted(p.evidence.items())),
                    p.flag or "",
                ]
                for p in report.phrasings
            ],
        ),
    }


# -- Markdown -------------------------------------------------------------------------------


def to_markdown(report: WeeklyReport) -> str:
    """The report as GitHub-flavoured Markdown."""
    w = report.week
    out = [
        f"# Weekly report {w.label}",
        "",
        f"{w.start:%Y-%m-%d} to {w.end:%Y-%m-%d} ({w.start.tzname()}); "
        f"{report.gaps} FAQ gaps logged.",
        "",
    ]
    titles = {
        "volumes": "Volumes",
        "escalations_by_reason": "Escalations by reason",
        "escalations_by_category": "Escalations by business category",
        "topics": "Top gap topics",
        "hot": "Hot issues",
        "tickets": "Tickets",
        "feedback": "Answers marked not helpful (entries to rewrite)",
        "interceptions": "Agent replies intercepted, by phrase",
        "suggestions": "Suggested FAQ entries",
        "tags": "Tickets by tag",
        "satisfaction": "Customer satisfaction (CSAT)",
        "phrasings": "Phrasings learned / waiting",
    }
    data = tables(report)
    for key, title in titles.items():
        head, rows = data[key]
        out += [f"## {title}", ""]
        if key == "escalations_by_category":
            out += _md_tree(report.escalations_by_category)
        elif not rows:
            out += ["_none_", ""]
        else:
            out.append("| " + " | ".join(head) + " |")
            out.append("|" + "---|" * len(head))
            out += ["| " + " | ".join(_md(c) for c in row) + " |" for row in rows]
            out.append("")
    return "\n".join(out)


def _md_tree(node: CountNode) -> list[str]:
    lines = [
        f"{'  ' * line.depth}- {_md(line.name)}: "
        + (f"{line.escalations}" if line.subtotal is None else f"subtotal {line.subtotal}")
        for line in _category_lines(node)
    ]
    if not lines:
        return ["_none_", ""]
    return [*lines, f"- **total: {node.count}**", ""]


# -- HTML -----------------------------------------------------------------------------------

_CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.6em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;width:100%;margin:.5em 0}td,th{border:1px solid #ddd;
padding:4px 6px;text-align:left;vertical-align:top}th{background:#f5f5f5}
.kpi{display:inline-block;margin:0 1.5em 1em 0}.kpi b{display:block;font-size:1.6em}
.none{color:#888;font-style:italic}.needs{color:#c62828;font-weight:bold}"""


def _svg_bars(
    items: Sequence[tuple[str, int]], *, width: int = 520, colour: str = "#1565c0"
) -> str:
    if not items:
        return '<p class="none">none</p>'
    top = max(n for _, n in items) or 1
    rows = []
    for i, (label, n) in enumerate(items):
        y, bar = i * 22, int((width - 230) * n / top)
        rows.append(
            f'<text x="0" y="{y + 15}" font-size="12">{_h(label[:34])}</text>'
            f'<rect x="220" y="{y + 4}" width="{bar}" height="14" fill="{colour}"/>'
            f'<text x="{224 + bar}" y="{y + 15}" font-size="12">{n}</text>'
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{len(items) * 22}"'
        f' role="img">{"".join(rows)}</svg>'
    )


def _svg_mix(report: WeeklyReport, width: int = 520) -> str:
    v = report.volumes
    parts = [("answered", v.answered), ("clarified", v.clarified), ("escalated", v.escalated)]
    total = sum(n for _, n in parts)
    if not total:
        return '<p class="none">no questions this week</p>'
    x, shapes = 0.0, []
    for name, n in parts:
        w = width * n / total
        shapes.append(
            f'<rect x="{x:.1f}" y="0" width="{w:.1f}" height="24" fill="{_COLOURS[name]}">'
            f"<title>{name}: {n}</title></rect>"
        )
        x += w
    legend = " · ".join(f'<span style="color:{_COLOURS[k]}">■</span> {k} {n}' for k, n in parts)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="24" role="img">'
        f"{''.join(shapes)}</svg><p>{legend}</p>"
    )


def _spark(values: Sequence[int]) -> str:
    top = max(values) or 1
    step = 60 / max(len(values) - 1, 1)
    points = " ".join(f"{i * step:.0f},{18 - 16 * n / top:.1f}" for i, n in enumerate(values))
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="62" height="20"><polyline '
        f'points="{points}" fill="none" stroke="#1565c0" stroke-width="2"/></svg>'
    )


def _html_table(
    head: Sequence[str],
    rows: Sequence[Sequence[str]],
    raw: Callable[[int, int], str | None] | None = None,
) -> str:
    if not rows:
        return '<p class="none">none</p>'
    out = ["<table><tr>" + "".join(f"<th>{_h(h)}</th>" for h in head) + "</tr>"]
    for r, row in enumerate(rows):
        cells = [(raw(r, c) if raw else None) or _h(v) for c, v in enumerate(row)]
        out.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return "".join(out) + "</table>"


def to_html(report: WeeklyReport) -> str:
    """One self-contained HTML page: inline CSS and SVG, no scripts, no external resources."""
    w, v, data = report.week, report.volumes, tables(report)
    kpis = [
        ("questions", v.questions),
        ("answered", v.answered),
        ("clarified", v.clarified),
        ("escalated", v.escalated),
        ("deflection rate", _pct(v.deflection_rate)),
        ("FAQ gaps", report.gaps),
    ]
    body = [
        f"<h1>Weekly report {_h(w.label)}</h1>",
        f"<p>{w.start:%Y-%m-%d} to {w.end:%Y-%m-%d} ({_h(w.start.tzname())})</p>",
        "".join(f'<div class="kpi"><b>{_h(n)}</b>{_h(k)}</div>' for k, n in kpis),
        "<h2>Decisions</h2>",
        _svg_mix(report),
        "<h2>Escalations by reason</h2>",
        _svg_bars(
            [(c.name, c.count) for c in report.escalations_by_reason.children], colour="#c62828"
        ),
        "<h2>Escalations by business category</h2>",
        _html_table(
            ["category", "escalations", "subtotal"],
            _category_rows(report.escalations_by_category, paths=False),
        ),
        "<h2>Top gap topics</h2>",
        _svg_bars([(f"{t.arrow} {t.representative}", t.count) for t in report.topics]),
        _html_table(
            ["weeks", *data["topics"][0]],
            [["", *r] for r in data["topics"][1]],
            raw=lambda r, c: (
                _spark([*report.topics[r].previous, report.topics[r].count]) if c == 0 else None
            ),
        ),
    ]
    sections = {
        "hot": "Hot issues",
        "tickets": "Tickets",
        "feedback": "Answers marked not helpful (entries to rewrite)",
        "interceptions": "Agent replies intercepted, by phrase",
        "suggestions": "Suggested FAQ entries",
        "tags": "Tickets by tag",
        "satisfaction": "Customer satisfaction (CSAT)",
        "phrasings": "Phrasings learned / waiting",
    }
    needs = {i for i, s in enumerate(report.suggestions) if s.needs_answer}
    for key, title in sections.items():
        head, rows = data[key]
        raw = None
        if key == "suggestions":

            def raw(r: int, c: int) -> str | None:
                return (
                    '<span class="needs">needs an answer</span>' if c == 5 and r in needs else None
                )

        body += [f"<h2>{_h(title)}</h2>", _html_table(head, rows, raw)]
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Weekly report {_h(w.label)}</title><style>{_CSS}</style></head><body>"
        + "\n".join(body)
        + "</body></html>\n"
    )


# -- CSV and writing ------------------------------------------------------------------------


def _cell(value: str) -> str:
    text = _text(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def to_csv(report: WeeklyReport) -> dict[str, str]:
    """File name → CSV text, one file per table (UTF-8 with BOM, so Excel reads Chinese)."""
    files = {}
    for name, (head, rows) in tables(report).items():
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(head)
        writer.writerows([_cell(c) for c in row] for row in rows)
        files[f"{name}.csv"] = "\ufeff" + buffer.getvalue()
    return files


def render(report: WeeklyReport, fmt: str) -> str:
    """Markdown or HTML text (CSV is several files: use write())."""
    if fmt == "md":
        return to_markdown(report)
    if fmt == "html":
        return to_html(report)
    raise ConfigError(f"cannot render '{fmt}' as one text; known: md, html (csv needs --out)")


def write(report: WeeklyReport, fmt: str, out: Path) -> list[Path]:
    """Write the report into folder ``out`` (created), or for CSV into ``out`` if it ends in
    .zip. Returns the files written."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown report format '{fmt}'; known: {', '.join(FORMATS)}")
    stem = f"weekly-{report.week.label}"
    if fmt == "csv" and out.suffix.lower() == ".zip":
        out.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, text in to_csv(report).items():
                archive.writestr(f"{stem}/{name}", text.encode("utf-8"))
        return [out]
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        paths = []
        for name, text in to_csv(report).items():
            path = out / f"{stem}-{name}"
            path.write_text(text, encoding="utf-8", newline="")
            paths.append(path)
        return paths
    path = out / f"{stem}.{fmt}"
    path.write_text(render(report, fmt), encoding="utf-8")
    return [path]
