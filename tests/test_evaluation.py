"""The eval harness: metric functions on hand-computed cases, question files, the regression
gate, an end-to-end run on the fixture FAQ (HashingEncoder) with its JSON and HTML, --split,
and the ``eval`` command."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from conftest import write_small_faq
from typer.testing import CliRunner

from autoreply import ranking_metrics as m
from autoreply.cli.eval import register
from autoreply.encoder import HashingEncoder
from autoreply.errors import ConfigError, QuestionFormatError
from autoreply.eval_questions import LabelledQuestion, load_questions
from autoreply.eval_report import SCHEMA_VERSION, EvalReport, compare, load_report, write_report
from autoreply.evaluation import build_report, holdout_folds, recommend, run_eval
from autoreply.gap_clustering import cluster_quality
from autoreply.knowledge import KnowledgeBase, load_knowledge
from autoreply.models import Candidate

HOSTILE = "<b>vip</b> & <script>alert(1)</script>"

QUESTIONS = [
    {"question": "怎么才能退款呢", "expected_id": "refund"},
    {"question": "密码忘了要怎么改", "expected_id": "password"},
    {"question": "I forgot my password, help", "expected_id": "reset-password"},
    {"question": "do you ship to france", "expected_id": "shipping", "category": HOSTILE},
    {"question": "please cancel my subscription", "expected_id": "cancel", "source": "chat"},
    {"question": "how do I end my plan", "expected_id": "cancel", "acceptable_ids": ["refund"]},
    {"question": "what's the weather tomorrow", "expected_id": None, "gap_topic": "weather"},
    {"question": "is it going to rain today", "expected_id": "", "gap_topic": "weather"},
    {"question": "when does the rocket launch", "expected_id": None, "gap_topic": "space"},
    {"question": "rocket launch schedule", "expected_id": None, "gap_topic": "space"},
]


def _candidates(*pairs: tuple[str, float]) -> list[Candidate]:
    return [
        Candidate(entry_id=i, question=f"q {i}", category="c", confidence=c, similarity=c)
        for i, c in pairs
    ]


def _write_jsonl(path: Path, rows: list[Any]) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def kb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_small_faq(tmp_path_factory.mktemp("eval") / "knowledge")


@pytest.fixture(scope="module")
def kb(kb_dir: Path) -> KnowledgeBase:
    return load_knowledge(kb_dir)


@pytest.fixture(scope="module")
def questions_file(kb_dir: Path) -> Path:
    return _write_jsonl(kb_dir.parent / "questions.jsonl", QUESTIONS)


@pytest.fixture(scope="module")
def report(kb_dir: Path, questions_file: Path) -> EvalReport:
    """One end-to-end run on the fixture FAQ with the HashingEncoder, shared by several tests."""
    return run_eval(kb_dir, questions_file, encoder=HashingEncoder())


# -- metrics -----------------------------------------------------------------------------


def test_rank_metrics_on_hand_computed_ranks() -> None:
    """Ranks 1, 2, none, 4: top-1 1/4, recall@3 2/4, recall@5 3/4, MRR (1 + 1/2 + 1/4) / 4."""
    ranks = [1, 2, None, 4]
    assert m.top1_accuracy(ranks) == 0.25
    assert m.recall_at_k(ranks, 3) == 0.5
    assert m.recall_at_k(ranks, 5) == 0.75
    assert m.mrr_at_k(ranks, 10) == pytest.approx(0.4375)
    assert m.mrr_at_k(ranks, 3) == pytest.approx(0.375)
    assert m.first_correct_rank(["a", "b", "c"], {"c", "x"}) == 3
    assert m.first_correct_rank(["a"], set()) is None


def test_auroc_counts_ties_as_half() -> None:
    """Pairs: 0.9 beats both, 0.5 ties one and beats one, 0.3 beats one: 4.5 / 6."""
    assert m.auroc([0.9, 0.5, 0.3], [0.5, 0.1]) == pytest.approx(0.75)
    assert m.auroc([0.5], [0.5]) == 0.5
    assert m.auroc([0.9, 0.8], [0.1]) == 1.0
    assert m.auroc([0.1], [0.9]) == 0.0
    assert m.auroc([], [0.3]) is None


def test_auroc_matches_sklearn_on_random_scores_with_ties() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(7)
    pos, neg = rng.integers(0, 10, 40) / 10, rng.integers(0, 10, 30) / 10
    labels = [1] * len(pos) + [0] * len(neg)
    expected = roc_auc_score(labels, np.concatenate([pos, neg]))
    assert m.auroc(list(pos), list(neg)) == pytest.approx(expected)


def test_precision_coverage_groups_tied_confidences() -> None:
    curve = m.precision_coverage([0.9, 0.8, 0.8, 0.3], [True, False, True, False])
    assert [(p.threshold, p.answered, p.correct) for p in curve] == [
        (0.9, 1, 1),
        (0.8, 3, 2),
        (0.3, 4, 2),
    ]
    assert [p.precision for p in curve] == pytest.approx([1.0, 2 / 3, 0.5])
    assert [p.coverage for p in curve] == [0.25, 0.75, 1.0]
    assert m.precision_at_coverage(curve, 0.75) == pytest.approx(2 / 3)
    assert m.precision_at_coverage(curve, 0.8) == 0.5
    assert m.coverage_at_precision(curve, 0.95) == 0.25
    assert m.coverage_at_precision(curve, 0.6) == 0.75
    assert m.coverage_at_precision(m.precision_coverage([0.5], [False]), 0.9) == 0.0


def test_recommended_thresholds_are_the_lowest_that_reach_the_target() -> None:
    """Answer: at 0.6 answers are right 3 of 4 times; clarify: at 0.5 the right entry is
    offered 4 of 5 times."""
    conf = [0.9, 0.8, 0.7, 0.6, 0.5]
    top1 = [True, True, False, True, False]
    offered = [True, True, True, True, False]
    assert m.recommend_thresholds(conf, top1, offered, target_precision=0.75) == (0.6, 0.5)
    assert m.recommend_thresholds(conf, top1, top1, target_precision=0.75) == (0.6, 0.6)
    assert m.recommend_thresholds(conf, [False] * 5, offered, target_precision=0.5) == (None, None)


def test_recommend_reads_the_right_entry_from_rankings() -> None:
    questions = [
        LabelledQuestion(question="a", expected_id="x"),
        LabelledQuestion(question="b", expected_id="y"),
        LabelledQuestion(question="c"),
    ]
    rankings = [
        _candidates(("x", 0.9), ("y", 0.2)),
        _candidates(("x", 0.7), ("y", 0.6)),
        _candidates(("y", 0.4)),
    ]
    t = recommend(questions, rankings, target_precision=0.9, max_candidates=2)
    # At 0.7 both offered lists hold the right entry; at 0.4 the out-of-scope one is offered too.
    assert (t.answer, t.clarify) == (0.9, 0.7)
    assert t.answer_coverage == pytest.approx(1 / 3)
    assert t.answer_precision == 1.0


def test_expected_calibration_error_weighs_bins_by_size() -> None:
    """Bin 0.9-1: confidence 0.95, accuracy 0.5; bin 0.1-0.2: 0.15 vs 0: (0.45 + 0.15) / 2."""
    ece = m.expected_calibration_error([0.95, 0.95, 0.15, 0.15], [True, False, False, False])
    assert ece == pytest.approx(0.3)
    assert m.expected_calibration_error([1.0, 0.0], [True, False]) == 0.0
    assert m.expected_calibration_error([], []) is None
    bins = m.calibration_bins([0.95, 0.15], [True, False])
    assert len(bins) == 10 and bins[9].count == 1 and bins[9].accuracy == 1.0


def test_histogram_puts_one_in_the_last_bin() -> None:
    assert m.histogram([0.0, 0.49, 0.5, 1.0], bins=2) == [2, 2]


def test_category_scores_and_confusions() -> None:
    rows = m.category_scores(
        ["a", "a", "b", "oos"],
        in_scope=[True, True, True, False],
        top1_ok=[True, False, True, False],
        answered=[True, True, False, True],
        right=[True, False, False, False],
    )
    by = {r.category: r for r in rows}
    assert rows[0].category == "a" and by["a"].count == 2
    assert (by["a"].top1, by["a"].answered, by["a"].precision) == (0.5, 1.0, 0.5)
    assert (by["b"].answered, by["b"].precision) == (0.0, None)
    assert (by["oos"].top1, by["oos"].precision) == (None, 0.0)
    found = m.confusions(
        ["x", "x", "x", None, "y"],
        ["y", "y", "x", "y", "x"],
        [False, False, True, False, False],
        ["q1", "q2", "q3", "q4", "q5"],
    )
    assert [(c.expected_id, c.predicted_id, c.count) for c in found] == [
        ("x", "y", 2),
        ("y", "x", 1),
    ]
    assert found[0].examples == ("q1", "q2")


def test_cluster_quality_wires_ari_and_nmi() -> None:
    """Two tight, far-apart groups: a sensible cut finds both topics exactly."""
    rng = np.random.default_rng(0)
    a = np.array([1.0, 0.0, 0.0]) + rng.normal(0, 0.01, (5, 3))
    b = np.array([0.0, 1.0, 0.0]) + rng.normal(0, 0.01, (4, 3))
    vectors = np.vstack([a, b])
    topics = ["refund"] * 5 + ["rocket"] * 4
    good = cluster_quality(vectors, topics, threshold=0.2)
    assert (good.clusters, good.topics, good.ari, good.nmi) == (2, 2, 1.0, pytest.approx(1.0))
    merged = cluster_quality(vectors, topics, threshold=3.0)  # above the two groups' Ward gap
    assert merged.clusters == 1 and merged.ari == 0.0
    with pytest.raises(ValueError, match="9 labels but 8 topics"):
        m.cluster_quality(list(range(9)), topics[:8], distance_threshold=0.2)


# -- question files ----------------------------------------------------------------------


def test_questions_load_from_jsonl_ignoring_extra_fields(
    questions_file: Path, kb: KnowledgeBase
) -> None:
    questions = load_questions(questions_file, kb=kb)
    assert len(questions) == len(QUESTIONS)
    assert questions[1].line == 2
    assert questions[5].correct_ids == {"cancel", "refund"}
    assert not questions[7].in_scope and questions[7].gap_topic == "weather"


def test_questions_load_from_csv(tmp_path: Path, kb: KnowledgeBase) -> None:
    path = tmp_path / "q.csv"
    path.write_text(
        "question,expected_id,acceptable_ids,category,notes\n"
        "how do I get my money back,refund,cancel|password,billing,x\n"
        '"a question\nover two lines",,,,\n',
        encoding="utf-8",
    )
    first, second = load_questions(path, kb=kb)
    assert first.correct_ids == {"refund", "cancel", "password"} and first.category == "billing"
    assert not second.in_scope and second.line == 3
    path.write_text("question,expected_id\nfine,refund\n\nbad,refnud\n", encoding="utf-8")
    with pytest.raises(
        QuestionFormatError, match=r"q\.csv:4: expected_id 'refnud' .* known: refund"
    ):
        load_questions(path, kb=kb)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('{"question": "hi", "expected_id": null', r"q\.jsonl:2: is not valid JSON"),
        ('{"expected_id": "refund"}', r"q\.jsonl:2: field 'question' is missing"),
        ('{"question": "  ", "expected_id": null}', r"q\.jsonl:2: field 'question' is empty"),
        ('{"question": "hi"}', r"q\.jsonl:2: field 'expected_id' is missing"),
        ('{"question": "hi", "expected_id": 12}', r"q\.jsonl:2: .*not a number \(12\): put it"),
        ('{"question": 3, "expected_id": null}', r"q\.jsonl:2: field 'question' must be text"),
        ('{"question": "hi", "expected_id": "refund", "acceptable_ids": "cancel"}', "a list"),
        ('{"question": "hi", "expected_id": null, "acceptable_ids": ["cancel"]}', "set expected"),
        ('["hi", "refund"]', r"q\.jsonl:2: a question must be an object"),
        ('{"question": "hi", "expected_id": "refnd"}', r"q\.jsonl:2: .*'refnd' .*known: refund"),
        (
            '{"question": "hi", "expected_id": "refund", "acceptable_ids": ["nope"]}',
            r"q\.jsonl:2: acceptable_ids 'nope' is not in the knowledge base",
        ),
    ],
)
def test_bad_question_lines_say_file_and_line(
    tmp_path: Path, kb: KnowledgeBase, line: str, problem: str
) -> None:
    path = _write_jsonl(tmp_path / "q.jsonl", ['{"question": "ok", "expected_id": "refund"}', line])
    with pytest.raises(QuestionFormatError, match=problem):
        load_questions(path, kb=kb)


def test_unusable_question_files_are_rejected(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(QuestionFormatError, match="empty.jsonl: has no questions"):
        load_questions(empty)
    with pytest.raises(QuestionFormatError, match="not a .jsonl or .csv file"):
        load_questions(tmp_path / "q.yaml")
    with pytest.raises(QuestionFormatError, match="missing.jsonl: cannot be read"):
        load_questions(tmp_path / "missing.jsonl")


# -- regression gate ---------------------------------------------------------------------


def _gate_report(**values: float | None) -> EvalReport:
    """A report with given headline metrics (defaults are a decent bot)."""
    v: dict[str, Any] = {"top1": 0.9, "mrr": 0.93, "recall@3": 0.97, "auroc": 0.9}
    v |= {"coverage_at_95": 0.6, "precision_at_80": 0.92, "false_answer_rate": 0.03, "ece": 0.05}
    v |= values
    questions = [LabelledQuestion(question="q", expected_id="x")]
    report = build_report(
        questions,
        [_candidates(("x", 0.9))],
        KnowledgeBase(entries=()),
        thresholds=recommend(questions, [_candidates(("x", 0.9))], target_precision=0.9),
        method="test",
        questions="test",
    )
    recall = dict(report.recall) | {"3": v["recall@3"]}
    fields = {k: v[k] for k in v if "@" not in k}
    return report.model_copy(update={**fields, "recall": recall})


def test_gate_passes_within_the_allowed_drop() -> None:
    baseline = _gate_report()
    assert compare(_gate_report(), baseline, 0.01) == []
    assert compare(_gate_report(top1=0.895, ece=0.059), baseline, 0.01) == []
    assert compare(_gate_report(top1=0.99, ece=0.0), baseline, 0.0) == []


def test_gate_fails_with_one_clear_line_per_metric() -> None:
    baseline = _gate_report(top1=0.912, ece=0.05)
    failures = compare(_gate_report(top1=0.887, ece=0.08, auroc=None), baseline, 0.01)
    assert failures == [
        "top1 fell from 0.912 to 0.887 (−0.025, allowed −0.010)",
        "auroc is missing from this run (baseline 0.900)",
        "ece rose from 0.050 to 0.080 (+0.030, allowed +0.010)",
    ]


def test_gate_reads_a_baseline_file(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_text(_gate_report(mrr=0.99).model_dump_json(), encoding="utf-8")
    assert compare(_gate_report(), load_report(path), 0.01) == [
        "mrr fell from 0.990 to 0.930 (−0.060, allowed −0.010)"
    ]
    path.write_text('{"top1": 1}', encoding="utf-8")
    with pytest.raises(ConfigError, match="not an eval report"):
        load_report(path)


# -- end to end --------------------------------------------------------------------------


def test_run_eval_measures_the_fixture(report: EvalReport) -> None:
    assert report.schema_version == SCHEMA_VERSION
    assert report.counts.questions == 10 and report.counts.out_of_scope == 4
    assert report.counts.entries == 6
    assert set(report.recall) == {"1", "3", "5", "10"}
    assert report.top1 is not None and 0 <= report.top1 <= 1
    assert report.auroc is not None
    assert report.curve and report.curve[-1].coverage == 1.0
    assert sum(sum(h) for h in report.histograms.values()) == 10
    assert report.decisions is not None
    d = report.decisions
    assert d.answer + d.clarify + d.escalate == pytest.approx(1.0)
    assert d.config["answer_threshold"] == (report.thresholds.answer or 1.0)
    assert report.latency is not None and report.latency.samples == 10
    assert report.index_build_seconds is not None and report.index_build_seconds > 0
    g = report.gap_clustering
    assert g is not None and (g.questions, g.topics) == (4, 2) and g.sweep
    assert {c.category for c in report.categories} >= {HOSTILE, "out-of-scope", "支付/退款"}
    assert set(report.summary) >= {"top1", "mrr", "recall@3", "auroc", "ece", "false_answer_rate"}


def test_report_files_are_written_and_reload(report: EvalReport, tmp_path: Path) -> None:
    json_path, html_path = write_report(report, tmp_path / "out")
    data = json.loads(json_path.read_text(encoding="utf-8"))
    assert data["schema_version"] == SCHEMA_VERSION and data["summary"] == report.summary
    assert EvalReport.model_validate(data).summary == report.summary
    assert compare(report, load_report(json_path)) == []
    assert html_path.exists()


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_report_has_its_three_charts_and_escapes_text(
    report: EvalReport, tmp_path: Path
) -> None:
    _, html_path = write_report(report, tmp_path)
    page = _Page()
    page.feed(html_path.read_text(encoding="utf-8"))
    charts = {a.get("id") for tag, a in page.tags if tag == "svg"}
    assert charts == {"chart-precision-coverage", "chart-score-histogram", "chart-categories"}
    names = {tag for tag, _ in page.tags}
    assert "script" not in names and "b" not in names  # the category text stayed text
    assert "polyline" in names and "rect" in names
    assert HOSTILE in "".join(page.text)
    assert not any(a.get("src") or a.get("href") for _, a in page.tags)  # self-contained


def test_split_holds_out_every_variant_once(kb: KnowledgeBase) -> None:
    folds = holdout_folds(kb, 3)
    held = [q.question for _, qs in folds for q in qs]
    variants = [v for e in kb.enabled for v in e.variants]
    assert sorted(held) == sorted(variants)
    fold_kb, questions = folds[0]
    for q in questions:
        entry = fold_kb.get(q.expected_id or "")
        assert q.question not in entry.variants and entry.question == kb.get(entry.id).question
    with pytest.raises(ConfigError, match="at least 2 folds"):
        holdout_folds(kb, 1)


def test_run_eval_with_split_on_the_fixture(kb: KnowledgeBase) -> None:
    report = run_eval(kb, split=3, encoder=HashingEncoder())
    variants = sum(len(e.variants) for e in kb.enabled)
    assert report.counts.in_scope == variants and report.counts.out_of_scope == 0
    assert report.questions.startswith("split:3") and report.split == 3
    assert [f.questions for f in report.folds] == [6, 6, 6]
    assert report.auroc is None and report.gap_clustering is None
    with pytest.raises(ConfigError, match="not both"):
        run_eval(kb, [LabelledQuestion(question="x")], split=2, encoder=HashingEncoder())


# -- command line ------------------------------------------------------------------------


def test_eval_command_gate_exit_codes(
    report: EvalReport,
    kb_dir: Path,
    questions_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same numbers pass the gate (exit 0); a better baseline fails it (exit 1)."""
    monkeypatch.setenv("AUTOREPLY_CONFIG", str(tmp_path / "none.toml"))
    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    good = tmp_path / "good.json"
    good.write_text(report.model_dump_json(), encoding="utf-8")
    bad_data = json.loads(good.read_text(encoding="utf-8"))
    bad_data["summary"]["top1"] = 1.5
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(bad_data), encoding="utf-8")
    args = ["eval", "-k", str(kb_dir), "-q", str(questions_file), "--encoder", "hashing"]
    runner = CliRunner()

    ok = runner.invoke(app, [*args, "--baseline", str(good), "--out", str(tmp_path / "r")])
    assert ok.exit_code == 0, ok.output
    assert "no metric fell" in ok.output and (tmp_path / "r" / "report.html").exists()

    failed = runner.invoke(app, [*args, "--baseline", str(bad), "--json"])
    assert failed.exit_code == 1, failed.output
    assert f"top1 fell from 1.500 to {report.top1:.3f}" in failed.stderr
    assert json.loads(failed.stdout)["schema_version"] == SCHEMA_VERSION


@pytest.mark.slow
def test_demo_set_with_the_real_encoder_is_sane(tmp_path: Path) -> None:
    """The demo question set on the demo knowledge base: a quality floor, not exact numbers."""
    repo = Path(__file__).resolve().parent.parent
    report = run_eval(repo / "knowledge" / "demo", repo / "eval" / "demo_questions.jsonl")
    assert report.counts.questions >= 80 and report.counts.out_of_scope >= 20
    assert (report.top1 or 0) > 0.8 and (report.auroc or 0) > 0.8
    write_report(report, tmp_path)
