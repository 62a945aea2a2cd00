"""tokbench's in-house autoregressive generator: a LlamaGen-style decoder-only transformer over any token layout.

Why in-house: gFID is the ground truth that rFID and pFID are judged against, so every tokenizer needs a generator
trained the same way on its own tokens (as the RobustTok benchmark trained one LlamaGen per tokenizer). The model is
a Llama block stack (RMSNorm, SwiGLU, rotary embeddings: 2-D on grids, 1-D otherwise) over the sequence view of a
`TokenLayout` (see `gen_layout.py`).

Sequence convention (one step per position, K ids per step):
- the input at step 0 is the class embedding (or the learned start embedding of an unconditional model, which is
  the "null class" used for classifier-free guidance); the input at step i > 0 is the sum of the K id embeddings of
  step i − 1;
- every input is rotated with the coordinates of the step it *predicts*, and, for layouts with several groups
  (multi-scale, branches), gets the learned embedding of that step's group; so the model always knows where the next
  token lies, whatever the layout;
- the hidden state of step i predicts the K ids of step i, one head per (sub-codebook slot, token space).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from .gen_layout import SequenceSpec

SIZES: dict[str, dict] = {
    # name: (depth, width, heads) as in LlamaGen (GPT-B/L/XL) plus small sizes for CPU tests and pilots
    "tiny": dict(depth=2, dim=64, heads=4, multiple_of=32),
    "small": dict(depth=6, dim=256, heads=8, multiple_of=64),
    "gpt-b": dict(depth=12, dim=768, heads=12),
    "gpt-l": dict(depth=24, dim=1024, heads=16),
    "gpt-xl": dict(depth=36, dim=1280, heads=20),
}


def sized_config(cls, d: dict, sizes: dict[str, dict], what: str) -> dict:
    """A config's fields: the named `size` preset (if any) updated by the explicit keys; unknown sizes or keys are
    refused with the known ones listed."""
    d = dict(d)
    size = d.pop("size", None)
    if size and size not in sizes:
        raise ValueError(f"unknown {what} size {size!r}; known: {sorted(sizes)}")
    base = dict(sizes[size]) if size else {}
    base.update(d)
    names = {f.name for f in fields(cls)}
    unknown = set(base) - names
    if unknown:
        raise ValueError(f"unknown {what} config keys {sorted(unknown)}; known: {sorted(names)}")
    return base


@dataclass
class GeneratorConfig:
    """Architecture and regularisation. Vocabulary and sequence come from the tokenizer (`SequenceSpec`)."""

    dim: int = 64
    depth: int = 2
    heads: int = 4
    multiple_of: int = 256  # SwiGLU hidden = multiple_of-rounded 2/3 · 4 · dim, as LlamaGen
    ffn_hidden: int | None = None  # explicit SwiGLU width (overrides the rule above)
    num_classes: int = 0  # 0 = unconditional
    class_dropout: float = 0.1  # label → null class during training, for classifier-free guidance
    token_dropout: float = 0.1
    dropout: float = 0.1  # residual and FFN dropout
    attn_dropout: float = 0.0
    rope_base: float = 10000.0
    norm_eps: float = 1e-5
    init_std: float = 0.02

    arch = "gpt"

    @classmethod
    def from_dict(cls, d: dict) -> "GeneratorConfig":
        d = dict(d)
        if d.pop("arch", "gpt") != "gpt":
            raise ValueError("GeneratorConfig is the 'gpt' architecture; build other archs with tokbench.gen.archs")
        return cls(**sized_config(cls, d, SIZES, "generator"))

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def hidden(self) -> int:
        if self.ffn_hidden:
            return int(self.ffn_hidden)
        h = int(2 * 4 * self.dim / 3)
        return self.multiple_of * ((h + self.multiple_of - 1) // self.multiple_of)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


def rope_angles(positions: torch.Tensor, head_dim: int, base: float) -> torch.Tensor:
    """L x P coordinates → L x head_dim/2 rotation angles. P = 2: the first half of the pairs turns with the row,
    the second with the column (2-D RoPE); P = 1: all pairs turn with the 1-D position."""
    p = positions.shape[1]
    if head_dim % (2 * p):
        raise ValueError(f"head dim {head_dim} must be divisible by {2 * p} for {p}-D rotary embeddings")
    n = head_dim // (2 * p)
    freqs = base ** (-torch.arange(n, dtype=torch.float64, device=positions.device) / n)
    ang = positions.double()[:, :, None] * freqs[None, None, :]  # L x P x n
    return ang.reshape(positions.shape[0], p * n)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: B x H x T x hd; cos/sin: T x hd/2; pairs are adjacent channels (2i, 2i+1)."""
    xf = x.float().reshape(*x.shape[:-1], -1, 2)
    x0, x1 = xf[..., 0], xf[..., 1]
    out = torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), -1)
    return out.flatten(-2).type_as(x)


class KVCache:
    """Keys and values of every layer for one batch, filled step by step during sampling."""

    def __init__(self, depth: int) -> None:
        self.k: list[torch.Tensor | None] = [None] * depth
        self.v: list[torch.Tensor | None] = [None] * depth
        self.max_len = 0

    def write(self, layer: int, start: int, k: torch.Tensor, v: torch.Tensor, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.k[layer] is None:
            b, h, _, d = k.shape
            self.k[layer] = k.new_zeros(b, h, max_len, d)
            self.v[layer] = v.new_zeros(b, h, max_len, d)
        end = start + k.shape[2]
        self.k[layer][:, :, start:end] = k
        self.v[layer][:, :, start:end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, start: int, drop: float) -> torch.Tensor:
    """Causal attention of the queries at positions start…start+t−1 over the keys 0…start+t−1 (a KV cache holds the
    prefix): the whole sequence at once, one cached step, or a chunk after a cached prefix (query i sees keys ≤
    start + i). Shared by the GPT and RAR blocks."""
    t = q.shape[2]
    if start == 0:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=drop)
    if t == 1:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=drop)
    keys = torch.arange(k.shape[2], device=q.device)[None, :]
    mask = keys <= (start + torch.arange(t, device=q.device))[:, None]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)


class Attention(nn.Module):
    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        if cfg.dim % cfg.heads:
            raise ValueError(f"width {cfg.dim} is not divisible by {cfg.heads} heads")
        self.heads = cfg.heads
        self.head_dim = cfg.dim // cfg.heads
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim, bias=False)
        self.proj = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.attn_dropout = cfg.attn_dropout
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x, cos, sin, cache: KVCache | None, layer: int, start: int, max_len: int) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            k, v = cache.write(layer, start, k, v, max_len)
        out = causal_attention(q, k, v, start, self.attn_dropout if self.training else 0.0)
        return self.resid_dropout(self.proj(out.transpose(1, 2).reshape(b, t, -1)))


class SwiGLU(nn.Module):
    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.w1 = nn.Linear(cfg.dim, cfg.hidden, bias=False)
        self.w3 = nn.Linear(cfg.dim, cfg.hidden, bias=False)
        self.w2 = nn.Linear(cfg.hidden, cfg.dim, bias=False)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.w2(F.silu(self.w1(x)) * self.w3(x)))


class Block(nn.Module):
    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.ffn = SwiGLU(cfg)

    def forward(self, x, cos, sin, cache, layer, start, max_len):
        x = x + self.attn(self.attn_norm(x), cos, sin, cache, layer, start, max_len)
        return x + self.ffn(self.ffn_norm(x))


class SequenceHeads(nn.Module):
    """What every tokbench AR generator shares: one embedding table and one output head per head key of the
    `SequenceSpec` (so multi-branch and sub-codebook layouts use the right vocabulary at every step), class dropout,
    and the cross-entropy over all steps and slots. Subclasses build `cls_emb`, `tok_emb`, `heads`, `blocks` and
    implement `forward(labels, prev_ids, start, cache)` → hidden states of steps start … start+T−1."""

    arch = "gpt"

    def _init_tables(self, spec: SequenceSpec, dim: int, num_classes: int) -> None:
        """Class and token embedding tables plus the step → head buffers (output heads: `_init_out_heads`, called
        after the blocks so that a seeded initialisation draws in the order it always has)."""
        self.spec = spec
        self.cls_emb = nn.Embedding(num_classes + 1, dim)  # index num_classes = null class / unconditional start
        self.tok_emb = nn.ModuleList(nn.Embedding(v, dim) for v in spec.head_vocab)
        self.register_buffer("step_heads", spec.step_heads.clone(), persistent=False)
        self.register_buffer("step_group", spec.step_group.clone(), persistent=False)
        # per slot k: the heads it uses (one for nearly every layout)
        self._slot_heads = [sorted({int(h) for h in spec.step_heads[:, k]}) for k in range(spec.num_sub)]

    def _init_out_heads(self, dim: int, bias: bool = False) -> None:
        self.heads = nn.ModuleList(nn.Linear(dim, v, bias=bias) for v in self.spec.head_vocab)

    @property
    def device(self) -> torch.device:
        return self.step_heads.device

    @property
    def conditional(self) -> bool:
        return self.cfg.num_classes > 0

    @property
    def null_class(self) -> int:
        return self.cfg.num_classes

    @property
    def seq_len(self) -> int:
        return self.spec.length

    @property
    def num_sub(self) -> int:
        return self.spec.num_sub

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def no_weight_decay(self) -> set[str]:
        """Names of ≥2-D parameters the optimiser must not decay (none for the GPT: LlamaGen decays embeddings)."""
        return set()

    def _embed_ids(self, ids: torch.Tensor, first_step: int) -> torch.Tensor:
        """ids: B x T x K of steps first_step … first_step+T−1 → B x T x D (sum over the K slots)."""
        t = ids.shape[1]
        heads = self.step_heads[first_step : first_step + t]  # T x K
        out = None
        for k, used in enumerate(self._slot_heads):
            x = ids[..., k]
            if len(used) == 1:
                e = self.tok_emb[used[0]](x)
            else:
                e = 0
                for h in used:
                    sel = (heads[:, k] == h)[None, :]
                    vocab = self.tok_emb[h].num_embeddings
                    e = e + torch.where(sel[..., None], self.tok_emb[h](torch.where(sel, x, 0).clamp(0, vocab - 1)), 0.0)
            out = e if out is None else out + e
        return out

    def step_logits(self, hidden: torch.Tensor, step: int) -> list[torch.Tensor]:
        """B x D hidden of one step → K logit tensors (B x vocab of that slot's head)."""
        return [self.heads[int(self.step_heads[step, k])](hidden).float() for k in range(self.num_sub)]

    def drop_labels(self, labels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Class dropout for CFG training (labels of an unconditional model are always the null class)."""
        if not self.conditional:
            return torch.full_like(labels, self.null_class)
        if self.cfg.class_dropout <= 0 or not self.training:
            return labels
        drop = torch.rand(labels.shape, device=labels.device, generator=generator) < self.cfg.class_dropout
        return torch.where(drop, torch.full_like(labels, self.null_class), labels)

    def _check_ids(self, ids: torch.Tensor) -> None:
        if ids.shape[1] != self.seq_len or ids.shape[2] != self.num_sub:
            raise ValueError(f"ids of shape {tuple(ids.shape)}, expected B x {self.seq_len} x {self.num_sub}")

    def heads_loss(self, h: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of hidden states h (B x L x D, step i predicts step i) against ids (B x L x K)."""
        total, count = h.new_zeros((), dtype=torch.float32), 0
        for k, used in enumerate(self._slot_heads):
            for hd in used:
                steps = (self.step_heads[:, k] == hd).nonzero().squeeze(1)
                hs = h if len(used) == 1 else h[:, steps]
                tg = ids[..., k] if len(used) == 1 else ids[:, steps, k]
                logits = self.heads[hd](hs).float()
                total = total + F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tg.reshape(-1), reduction="sum")
                count += tg.numel()
        return total / count


class ARGenerator(SequenceHeads):
    """Decoder-only transformer over a tokenizer's token sequence (see the module docstring for the convention)."""

    def __init__(self, cfg: GeneratorConfig, spec: SequenceSpec) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        self._init_tables(spec, d, cfg.num_classes)
        self.group_emb = nn.Embedding(spec.num_groups, d) if spec.num_groups > 1 else None
        self.tok_drop = nn.Dropout(cfg.token_dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.norm = RMSNorm(d, cfg.norm_eps)
        self._init_out_heads(d)
        ang = rope_angles(spec.positions, d // cfg.heads, cfg.rope_base)
        self.register_buffer("rope_cos", ang.cos().float(), persistent=False)
        self.register_buffer("rope_sin", ang.sin().float(), persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=self.cfg.init_std)
        for h in self.heads:  # zero heads: uniform first predictions (LlamaGen does the same)
            nn.init.zeros_(h.weight)

    # ------------------------------------------------------------------------------------------------------------
    def embed(self, labels: torch.Tensor, prev_ids: torch.Tensor | None, start: int) -> torch.Tensor:
        """Inputs of steps start … start+T−1. At start = 0, `prev_ids` holds the ids of steps 0…T−2 (or None for
        T = 1) and the class embedding leads; at start > 0 it holds steps start−1 … start+T−2."""
        if start == 0:
            x = self.cls_emb(labels)[:, None]
            if prev_ids is not None and prev_ids.shape[1]:
                x = torch.cat([x, self._embed_ids(prev_ids, 0)], 1)
        else:
            x = self._embed_ids(prev_ids, start - 1)
        if self.group_emb is not None:
            x = x + self.group_emb(self.step_group[start : start + x.shape[1]])[None]
        return self.tok_drop(x)

    def forward(self, labels: torch.Tensor, prev_ids: torch.Tensor | None = None, start: int = 0,
                cache: KVCache | None = None) -> torch.Tensor:
        """Final hidden states (after the norm) of steps start … start+T−1, B x T x D."""
        x = self.embed(labels, prev_ids, start)
        t = x.shape[1]
        if start + t > self.seq_len:
            raise ValueError(f"steps {start}…{start + t - 1} exceed the sequence length {self.seq_len}")
        cos, sin = self.rope_cos[start : start + t], self.rope_sin[start : start + t]
        for i, blk in enumerate(self.blocks):
            x = blk(x, cos, sin, cache, i, start, self.seq_len)
        return self.norm(x)

    def loss(self, ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean next-token cross-entropy over all steps and slots. ids: B x L x K; labels: B (already dropped)."""
        self._check_ids(ids)
        return self.heads_loss(self(labels, ids[:, :-1]), ids)
