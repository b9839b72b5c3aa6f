"""The knowledge index's on-disk cache: one folder per encoder under the cache directory.

A folder holds the faiss index, the fitted scorer, every indexed text's vector (keyed by the
text's sha1, ``text_key``) and a manifest (encoder name, dimension, knowledge fingerprint, row
count). ``load_cached`` reuses the folder as is when the manifest matches; otherwise
``load_vectors`` gives the vectors already encoded, so only texts never encoded before are
encoded again. ``save`` writes into a temp folder and swaps it in: a crash never leaves a
half-written cache. Knows nothing about ranking (autoreply.knowledge_index).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from autoreply.encoder import Encoder
from autoreply.errors import IndexStateError
from autoreply.knowledge import KnowledgeBase
from autoreply.scoring import Scorer
from autoreply.vector_index import FaissIndex

log = logging.getLogger(__name__)

MANIFEST_VERSION = 2


def text_key(text: str) -> str:
    """The key a text's vector is cached under."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def folder_name(encoder_name: str) -> str:
    """The cache folder of an encoder: its name made safe for a path, and a short hash."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in encoder_name)
    return f"{safe[:60]}-{text_key(encoder_name)[:8]}"


def _manifest(encoder: Encoder, kb: KnowledgeBase, rows: int) -> dict[str, object]:
    return {
        "version": MANIFEST_VERSION,
        "encoder": encoder.name,
        "dim": encoder.dim,
        "fingerprint": kb.fingerprint,
        "rows": rows,
    }


def load_cached(
    folder: Path, encoder: Encoder, kb: KnowledgeBase
) -> tuple[FaissIndex, Scorer] | None:
    """The cached index and scorer, when the folder's manifest matches this encoder and
    knowledge base and both load; else None (the caller builds)."""
    path = folder / "manifest.json"
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    wanted = _manifest(encoder, kb, manifest.get("rows", -1))
    if any(manifest.get(key) != value for key, value in wanted.items()):
        return None
    try:
        index = FaissIndex.load(folder)
    except IndexStateError as exc:
        log.warning("cached index unusable, rebuilding: %s", exc)
        return None
    scorer = Scorer.load(folder / "scorer.npz")
    if scorer is None or len(index) != manifest["rows"]:
        return None
    return index, scorer


def load_vectors(folder: Path | None) -> dict[str, np.ndarray]:
    """The cached vectors by ``text_key``; empty when there are none or they cannot be read."""
    if folder is None or not (folder / "vectors.npz").exists():
        return {}
    try:
        with np.load(folder / "vectors.npz") as data:
            keys, vectors = data["keys"], data["vectors"]
    except (OSError, ValueError, KeyError):
        return {}
    return {str(k): v for k, v in zip(keys, vectors, strict=False)}


def save(
    folder: Path,
    index: FaissIndex,
    scorer: Scorer,
    encoder: Encoder,
    kb: KnowledgeBase,
    texts: list[str],
    vectors: np.ndarray,
) -> None:
    """Write into a temp folder, then swap it in: a crash never leaves a half-written cache."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=folder.parent))
    try:
        index.save(tmp)
        scorer.save(tmp / "scorer.npz")
        keys = np.array([text_key(t) for t in texts])
        np.savez(tmp / "vectors.npz", keys=keys, vectors=vectors)
        manifest = _manifest(encoder, kb, len(texts))
        manifest["built_at"] = datetime.now(UTC).isoformat()
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        old = None
        if folder.exists():
            old = folder.with_name(folder.name + f".old-{os.getpid()}")
            folder.rename(old)
        tmp.rename(folder)
        if old is not None:
            _rmtree(old)
    except OSError as exc:
        _rmtree(tmp)
        log.warning("could not write the index cache in %s: %s", folder, exc)


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
