"""The evaluation report: its versioned schema, the regression gate and its three renderings.

EvalReport is what ``run_eval`` returns and what ``report.json`` holds (``schema_version`` goes
up when a field changes meaning). ``compare`` is the regression gate: it reads only the flat
``summary`` of a baseline, so a baseline written by an older version still works.
``write_report`` writes report.json and a self-contained report.html (inline SVG charts, no
scripts); the terminal summary is ``autoreply.cli.eval.print_summary``.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, computed_field

from autoreply import __version__
from autoreply.errors import ConfigError
from autoreply.ranking_metrics import CalibrationBin, CategoryScore, CurvePoint

SCHEMA_VERSION = 1

GATED: dict[str, bool] = {
    "top1": True,
    "mrr": True,
    "recall@3": True,
    "auroc": True,
    "coverage_at_95": True,
    "precision_at_80": True,
    "false_answer_rate": False,
    "ece": False,
}
"""Metrics the gate checks: True when higher is better, False when lower is better."""


class Counts(BaseModel):
    questions: int
    in_scope: int
    out_of_scope: int
    entries: int
    """Enabled FAQ entries in the knowledge base."""


class Thresholds(BaseModel):
    """Recommended confidence thresholds for the target precision (None: unreachable)."""

    target_precision: float
    answer: float | None
    clarify: float | None
    answer_coverage: float
    """Share of questions with top-1 confidence at or above the answer threshold."""
    answer_precision: float | None


class DecisionMix(BaseModel):
    """The engine's decisions at the recommended thresholds, as shares of all questions."""

    answer: float
    clarify: float
    escalate: float
    answered_correct: float
    answered_wrong: float
    clarify_hit: float | None
    """Share of clarifications that offered a correct entry."""
    reasons: dict[str, int]
    config: dict[str, Any]
    """The EngineConfig the decisions were made with."""


class ConfusedPair(BaseModel):
    """In-scope questions for ``expected_id`` whose top-1 entry was ``predicted_id``."""

    expected_id: str
    expected_question: str
    predicted_id: str
    predicted_question: str
    count: int
    examples: list[str]


class Latency(BaseModel):
    samples: int
    p50_ms: float
    p95_ms: float
    batch_qps: float | None = None
    """Questions per second when ranked in batches."""


class GapClustering(BaseModel):
    """Clustering the questions that have a ``gap_topic``, scored against those topics."""

    questions: int
    topics: int
    clusters: int
    ari: float
    nmi: float
    distance_threshold: float
    sweep: list[dict[str, float | int]] = Field(default_factory=list)
    """The same at other distance thresholds: threshold, clusters, ari, nmi."""


class FoldResult(BaseModel):
    fold: int
    questions: int
    top1: float
    mrr: float


class EvalReport(BaseModel):
    """The result of one evaluation run. ``summary`` holds the headline metrics the gate reads."""

    schema_version: int = SCHEMA_VERSION
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    autoreply_version: str = __version__
    method: str = "engine"
    knowledge: str
    questions: str
    """The question file, or how the questions were made (``split:K``)."""
    encoder: str | None = None
    k: int
    split: int | None = None
    counts: Counts
    top1: float | None
    recall: dict[str, float]
    """Recall@k by k ("1", "3", "5", "10") on in-scope questions."""
    mrr: float | None
    """MRR@10 on in-scope questions."""
    auroc: float | None
    """In-scope vs out-of-scope, scored by top-1 confidence; None without both kinds."""
    precision_at_80: float | None
    coverage_at_95: float
    ece: float | None
    """Expected calibration error, 10 bins: top-1 confidence vs top-1 correct, all questions."""
    false_answer_rate: float
    """Wrong answers (wrong entry, or any answer to an out-of-scope question) / questions."""
    oos_answered_rate: float | None
    thresholds: Thresholds
    decisions: DecisionMix | None = None
    categories: list[CategoryScore]
    confusions: list[ConfusedPair]
    curve: list[CurvePoint]
    histograms: dict[str, list[int]]
    """Top-1 confidence counts in 20 bins over 0..1: in_scope_correct, in_scope_wrong,
    out_of_scope."""
    calibration: list[CalibrationBin]
    latency: Latency | None = None
    index_build_seconds: float | None = None
    gap_clustering: GapClustering | None = None
    folds: list[FoldResult] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def summary(self) -> dict[str, float | None]:
        """Flat headline metrics, the names the gate and the bench table use."""
        data: dict[str, float | None] = {"top1": self.top1, "mrr": self.mrr}
        data |= {f"recall@{n}": value for n, value in self.recall.items()}
        data |= {
            "auroc": self.auroc,
            "precision_at_80": self.precision_at_80,
            "coverage_at_95": self.coverage_at_95,
            "false_answer_rate": self.false_answer_rate,
            "ece": self.ece,
        }
        return {name: None if v is None else round(v, 6) for name, v in data.items()}


# -- regression gate ---------------------------------------------------------------------


def load_report(path: str | Path) -> dict[str, Any]:
    """A report.json as a dict (enough for ``compare``); ConfigError if it is not one."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"baseline {path}: cannot be read ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise ConfigError(f"baseline {path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("summary"), dict):
        raise ConfigError(f"baseline {path}: not an eval report (no 'summary'); run autoreply eval")
    return data


def compare(
    report: EvalReport, baseline: EvalReport | Mapping[str, Any], max_drop: float = 0.01
) -> list[str]:
    """One message per gated metric that got worse than the baseline by more than max_drop."""
    old = baseline.summary if isinstance(baseline, EvalReport) else baseline["summary"]
    new = report.summary
    failures = []
    for name, higher_is_better in GATED.items():
        before, after = old.get(name), new.get(name)
        if before is None:
            continue
        if after is None:
            failures.append(f"{name} is missing from this run (baseline {before:.3f})")
            continue
        change = after - before
        worse = -change if higher_is_better else change
        if worse > max_drop + 1e-9:
            verb = "fell" if change < 0 else "rose"
            allowed = _signed(-max_drop if higher_is_better else max_drop)
            failures.append(
                f"{name} {verb} from {before:.3f} to {after:.3f} "
                f"({_signed(change)}, allowed {allowed})"
            )
    return failures


def _signed(value: float) -> str:
    return f"−{abs(value):.3f}" if value < 0 else f"+{value:.3f}"


# -- outputs -----------------------------------------------------------------------------


def write_report(report: EvalReport, out_dir: str | Path) -> tuple[Path, Path]:
    """Write report.json and report.html into out_dir (created if needed); return both paths."""
    folder = Path(out_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        json_path, html_path = folder / "report.json", folder / "report.html"
        json_path.write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
        html_path.write_text(render_html(report), encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write the report to {folder}: {exc.strerror or exc}") from None
    return json_path, html_path


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def headline(report: EvalReport) -> list[tuple[str, str]]:
    """(label, value) rows of the headline metrics: the HTML and the terminal show the same."""
    t = report.thresholds
    rows = [
        ("questions", f"{report.counts.questions} ({report.counts.out_of_scope} out of scope)"),
        ("top-1 accuracy", _fmt(report.top1)),
        *((f"recall@{n}", _fmt(v)) for n, v in report.recall.items()),
        ("MRR@10", _fmt(report.mrr)),
        ("OOS AUROC", _fmt(report.auroc)),
        ("precision at 80% coverage", _fmt(report.precision_at_80)),
        ("coverage at 95% precision", _fmt(report.coverage_at_95)),
        ("ECE", _fmt(report.ece)),
        ("false-answer rate", _pct(report.false_answer_rate)),
        (f"answer threshold (precision ≥ {t.target_precision:g})", _fmt(t.answer)),
        ("clarify threshold", _fmt(t.clarify)),
    ]
    if t.answer is None:
        rows.append(("note", "the target precision is not reachable: do not auto-answer"))
    return rows


# -- HTML --------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1000px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}td,th{padding:3px 10px;border-bottom:1px solid #eee;
text-align:left;vertical-align:top}td.n,th.n{text-align:right}.muted{color:#777}
svg{display:block;margin:.5em 0;max-width:100%}svg text{font:11px system-ui,sans-serif;fill:#333}
"""
_COLOURS = {"in_scope_correct": "#2b8a3e", "in_scope_wrong": "#e67700", "out_of_scope": "#c92a2a"}
_SERIES = {
    "in_scope_correct": "in scope, top-1 right",
    "in_scope_wrong": "in scope, top-1 wrong",
    "out_of_scope": "out of scope",
}


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _table(head: list[str], rows: list[list[object]], numeric: set[int] | None = None) -> str:
    num = numeric or set()
    cls = [' class="n"' if i in num else "" for i in range(len(head))]
    out = ["<table><tr>", *(f"<th{cls[i]}>{_e(h)}</th>" for i, h in enumerate(head)), "</tr>"]
    for row in rows:
        out.append("<tr>" + "".join(f"<td{cls[i]}>{_e(v)}</td>" for i, v in enumerate(row)))
    return "".join(out) + "</table>"


def _svg_open(name: str, title: str, width: int, height: int) -> str:
    return (
        f'<svg id="{name}" xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}"><title>{_e(title)}</title>'
    )


def _axes(x0: int, y0: int, w: int, h: int, lo: float, labels: tuple[str, str]) -> list[str]:
    """Frame, grid and tick labels: x from 0 to 1, y from ``lo`` to 1."""
    parts = []
    for i in range(6):
        f = i / 5
        x, y = x0 + f * w, y0 + h - f * h
        parts.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x0 + w}" y2="{y:.1f}" stroke="#eee"/>')
        tick = lo + f * (1 - lo)
        parts.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end">{tick:.2f}</text>')
        parts.append(f'<text x="{x:.1f}" y="{y0 + h + 15}" text-anchor="middle">{f:.1f}</text>')
    parts.append(
        f'<rect x="{x0}" y="{y0}" width="{w}" height="{h}" fill="none" stroke="#999"/>'
        f'<text x="{x0 + w / 2}" y="{y0 + h + 32}" text-anchor="middle">{_e(labels[0])}</text>'
        f'<text transform="translate(12 {y0 + h / 2}) rotate(-90)" text-anchor="middle">'
        f"{_e(labels[1])}</text>"
    )
    return parts


def svg_curve(report: EvalReport) -> str:
    """The precision–coverage curve, the target precision and the recommended point."""
    x0, y0, w, h = 55, 15, 440, 260
    t = report.thresholds
    lowest = min([p.precision for p in report.curve] + [t.target_precision - 0.1])
    lo = max(0.0, int(lowest * 10) / 10)  # zoom in on the part of the range that is used

    def y(precision: float) -> float:
        return y0 + h - (precision - lo) / (1 - lo) * h

    parts = [_svg_open("chart-precision-coverage", "precision–coverage curve", 520, 320)]
    parts += _axes(x0, y0, w, h, lo, ("coverage (answered / all questions)", "precision"))
    pts = " ".join(f"{x0 + p.coverage * w:.1f},{y(p.precision):.1f}" for p in report.curve)
    if pts:
        parts.append(f'<polyline points="{pts}" fill="none" stroke="#1c7ed6" stroke-width="2"/>')
    ty = y(t.target_precision)
    parts.append(
        f'<line x1="{x0}" y1="{ty:.1f}" x2="{x0 + w}" y2="{ty:.1f}" stroke="#c92a2a" '
        f'stroke-dasharray="4 3"/><text x="{x0 + w - 4}" y="{ty - 4:.1f}" text-anchor="end">'
        f"target {t.target_precision:g}</text>"
    )
    if t.answer is not None and t.answer_precision is not None:
        cx, cy = x0 + t.answer_coverage * w, y(t.answer_precision)
        parts.append(
            f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="5" fill="#c92a2a"/>'
            f'<text x="{cx + 8:.1f}" y="{cy + 14:.1f}">answer ≥ {t.answer:.3f}</text>'
        )
    return "".join(parts) + "</svg>"


def svg_histogram(report: EvalReport) -> str:
    """Top-1 confidence distributions (each series as shares of itself), side by side per bin."""
    x0, y0, w, h = 50, 30, 440, 240
    series = [(k, v) for k, v in report.histograms.items() if sum(v)]
    parts = [_svg_open("chart-score-histogram", "top-1 confidence histograms", 520, 310)]
    shares = {k: [c / sum(v) for c in v] for k, v in series}
    top = max((s for v in shares.values() for s in v), default=1.0) or 1.0
    parts += [
        f'<rect x="{x0}" y="{y0}" width="{w}" height="{h}" fill="none" stroke="#999"/>',
        f'<text x="{x0 + w / 2}" y="{y0 + h + 32}" text-anchor="middle">top-1 confidence</text>',
        f'<text x="{x0 - 6}" y="{y0 + 4}" text-anchor="end">{top:.0%}</text>',
    ]
    for i in range(0, 11, 2):
        x = x0 + i / 10 * w
        parts.append(
            f'<text x="{x:.1f}" y="{y0 + h + 15}" text-anchor="middle">{i / 10:.1f}</text>'
        )
    bins = len(next(iter(report.histograms.values()), [])) or 20
    bar = w / bins / max(len(series), 1)
    for s, (name, _) in enumerate(series):
        colour = _COLOURS.get(name, "#555")
        for b, share in enumerate(shares[name]):
            bh = share / top * h
            x = x0 + b * w / bins + s * bar
            parts.append(
                f'<rect x="{x:.1f}" y="{y0 + h - bh:.1f}" width="{bar:.1f}" height="{bh:.1f}" '
                f'fill="{colour}"/>'
            )
        parts.append(
            f'<rect x="{x0 + s * 150}" y="6" width="10" height="10" fill="{colour}"/>'
            f'<text x="{x0 + s * 150 + 14}" y="15">{_e(_SERIES.get(name, name))}</text>'
        )
    return "".join(parts) + "</svg>"


def svg_categories(report: EvalReport, *, limit: int = 30) -> str:
    """Per-category bars: top-1 accuracy and answered precision (largest categories first)."""
    rows = report.categories[:limit]
    x0, y0, w, step = 200, 28, 300, 22
    height = y0 + step * len(rows) + 10
    parts = [_svg_open("chart-categories", "per-category top-1 and precision", 540, height)]
    parts.append(
        f'<rect x="{x0}" y="6" width="10" height="10" fill="#1c7ed6"/><text x="{x0 + 14}" '
        f'y="15">top-1</text><rect x="{x0 + 70}" y="6" width="10" height="10" fill="#2b8a3e"/>'
        f'<text x="{x0 + 84}" y="15">precision of answers</text>'
    )
    for i, row in enumerate(rows):
        y = y0 + i * step
        label = row.category if len(row.category) <= 30 else row.category[:29] + "…"
        parts.append(f'<text x="{x0 - 6}" y="{y + 13}" text-anchor="end">{_e(label)}</text>')
        for j, (value, colour) in enumerate(((row.top1, "#1c7ed6"), (row.precision, "#2b8a3e"))):
            if value is not None:
                parts.append(
                    f'<rect x="{x0}" y="{y + j * 9}" width="{value * w:.1f}" height="8" '
                    f'fill="{colour}"><title>{_e(f"{row.category}: {value:.3f}")}</title></rect>'
                )
        parts.append(f'<text x="{x0 + w + 6}" y="{y + 13}">{_fmt(row.top1, 2)}</text>')
    return "".join(parts) + "</svg>"


def _pairs(rows: Sequence[tuple[str, object]]) -> str:
    return _table(["", ""], [list(row) for row in rows], {1})


def render_html(report: EvalReport) -> str:
    """The report as one self-contained HTML page: tables and three inline SVG charts."""
    r = report
    title = f"autoreply eval: {r.questions}"
    body = [
        f"<h1>{_e(title)}</h1>",
        f'<p class="muted">{_e(r.method)} · encoder {_e(r.encoder or "–")} · knowledge '
        f"{_e(r.knowledge)} · {_e(r.created_at.isoformat(timespec='seconds'))} · autoreply "
        f"{_e(r.autoreply_version)} · schema {r.schema_version}</p>",
        "<h2>Summary</h2>",
        _pairs(headline(r)),
        "<h2>Precision and coverage</h2><p>Answering every question whose top-1 confidence is at "
        "or above a threshold; answering an out-of-scope question counts as wrong.</p>",
        svg_curve(r),
        "<h2>Confidence: in scope vs out of scope</h2>",
        svg_histogram(r),
    ]
    if d := r.decisions:
        shares: list[tuple[str, float | None]] = [("answer", d.answer), ("clarify", d.clarify)]
        shares += [("escalate", d.escalate)]
        shares += [("answered right", d.answered_correct), ("answered wrong", d.answered_wrong)]
        shares += [("clarifications offering a right entry", d.clarify_hit)]
        reasons: list[tuple[str, object]] = [(f"reason: {k}", v) for k, v in d.reasons.items()]
        body += ["<h2>Decisions at the recommended thresholds</h2>"]
        body += [_pairs([(k, _pct(v)) for k, v in shares] + reasons)]
    categories = [
        [c.category, c.count, c.in_scope, _fmt(c.top1), _pct(c.answered), _fmt(c.precision)]
        for c in r.categories
    ]
    confusions = [
        [f"{p.expected_id}: {p.expected_question}", f"{p.predicted_id}: {p.predicted_question}"]
        + [p.count, " | ".join(p.examples)]
        for p in r.confusions
    ]
    body += [
        "<h2>Categories</h2>",
        svg_categories(r),
        _table(["category", "questions", "in scope", "top-1", "answered", "precision"], categories),
        "<h2>Most confused entries</h2><p>Entries that take each other's questions: merge them "
        "or add variants.</p>",
        _table(["expected", "got instead", "times", "examples"], confusions, {2}),
    ]
    speed: list[tuple[str, object]] = []
    if lat := r.latency:
        speed += [("p50 per question", f"{lat.p50_ms:.1f} ms")]
        speed += [("p95 per question", f"{lat.p95_ms:.1f} ms")]
        speed += [("batched throughput", f"{_fmt(lat.batch_qps, 1)} questions/s")]
    if r.index_build_seconds is not None:
        speed += [("index build", f"{r.index_build_seconds:.2f} s")]
    if speed:
        body += ["<h2>Speed</h2>", _pairs(speed)]
    if g := r.gap_clustering:
        rows: list[tuple[str, object]] = [("questions", g.questions), ("true topics", g.topics)]
        rows += [("clusters", g.clusters)]
        rows += [("ARI", _fmt(g.ari)), ("NMI", _fmt(g.nmi))]
        rows += [("distance threshold", g.distance_threshold)]
        body += ["<h2>Gap clustering</h2>", _pairs(rows)]
    if r.folds:
        folds = [[f.fold, f.questions, _fmt(f.top1), _fmt(f.mrr)] for f in r.folds]
        body += ["<h2>Folds</h2>", _table(["fold", "questions", "top-1", "MRR"], folds, {1, 2, 3})]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        + "\n".join(body)
        + "</body></html>\n"
    )
