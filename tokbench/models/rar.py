"""RAR (randomized autoregressive, Yu et al. 2024, arXiv 2411.00776) beside the LlamaGen-style GPT, for any token layout.

Written from the paper and the design notes in shared/docs/rar.md (not from upstream code). What makes it RAR:
- a ViT decoder stack with adaLN-Zero: every block is modulated by c_p = Emb[class] + S[p], S learned per sequence
  position (never permuted), plus a final adaLN before the heads; pre-norm LayerNorm (eps 1e-6), QK-LayerNorm, qkv
  bias, GELU MLP;
- sequence [cls | class | x_τ0 … x_τ(L−2)], the output at position 1+j predicting x_τj;
- absolute position embeddings `pos` of each token's own step, and *target-aware* embeddings `ta` of the step it
  must predict next (added to the input), so that a permuted order stays well posed;
- during training each sample's order τ is a random permutation with probability r, else raster, with r annealed
  linearly 1 → 0 over a window of training (`rar_ratio`); sampling is always raster (τ = identity).

Layouts: a "step" is a step of the `SequenceSpec` (raster for grids, sequential for 1-D, group after group for
multi-scale / branch layouts; K sub-codebook ids travel together). **Permutations stay inside each group**: a
multi-scale layout keeps its coarse → fine order (a fine-scale token never precedes the coarse scale it refines, and
every step keeps its own vocabulary and head, so branch layouts with different codebooks work unchanged). For a
single-group layout (every grid or 1-D tokenizer) this is RAR's full permutation.

Differences from upstream, deliberate: position tables have L + 2 rows (upstream over-allocates L + 1024 and L + 100;
unused rows only), one class table shared by the class token and adaLN (upstream shares one table for codes and
classes; the same parameter count up to the unused mask row), one output head per head key (K heads for sub-codebooks).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .gen_layout import SequenceSpec
from .generator import KVCache, SequenceHeads, causal_attention, sized_config

SIZES: dict[str, dict] = {
    # RAR paper Tab. 1 / README_RAR.md: (depth, width, heads, MLP) — B 261M, L 461M, XL 955M at 1024 codes, 256 tokens
    "tiny": dict(depth=2, dim=64, heads=4),
    "small": dict(depth=6, dim=256, heads=8),
    "rar-b": dict(depth=24, dim=768, heads=16),
    "rar-l": dict(depth=24, dim=1024, heads=16),
    "rar-xl": dict(depth=32, dim=1280, heads=16),
}
PAPER_PARAMS = {"rar-b": 261e6, "rar-l": 461e6, "rar-xl": 955e6}


@dataclass
class RARConfig:
    """Architecture, regularisation and the randomness schedule (fractions of the run's total optimiser steps:
    RAR's 400-epoch recipe anneals between epochs 200 and 300, i.e. 0.5 → 0.75)."""

    dim: int = 64
    depth: int = 2
    heads: int = 4
    mlp_ratio: float = 4.0
    num_classes: int = 0
    class_dropout: float = 0.1
    dropout: float = 0.1  # RAR: proj/MLP dropout 0.1
    attn_dropout: float = 0.1
    token_dropout: float = 0.0  # not in RAR; kept so that a GPT config runs with --arch rar
    norm_eps: float = 1e-6
    init_std: float = 0.02
    anneal_start: float = 0.5  # r = 1 before this fraction of training …
    anneal_end: float = 0.75  # … falls linearly to 0 here, then stays 0

    arch = "rar"

    @classmethod
    def from_dict(cls, d: dict) -> "RARConfig":
        d = dict(d)
        d.pop("arch", None)
        cfg = cls(**sized_config(cls, d, SIZES, "RAR"))
        if not 0.0 <= cfg.anneal_start <= cfg.anneal_end <= 1.0:
            raise ValueError(f"RAR anneal window must satisfy 0 <= anneal_start <= anneal_end <= 1 (fractions of "
                             f"training), got {cfg.anneal_start}, {cfg.anneal_end}")
        return cfg

    def to_dict(self) -> dict:
        return {"arch": self.arch, **asdict(self)}

    @property
    def hidden(self) -> int:
        return int(self.dim * self.mlp_ratio)


def rar_ratio(step: int, total: int, start: float, end: float) -> float:
    """Probability r that a sample of optimiser step `step` (0-based) is permuted: 1 before start·total, linear to 0
    at end·total, 0 after. A pure function of the step, so a resumed run draws exactly the same orders."""
    s0, s1 = start * total, end * total
    if step < s0:
        return 1.0
    if step >= s1:
        return 0.0
    return float(1.0 - (step - s0) / (s1 - s0))


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class RARAttention(nn.Module):
    def __init__(self, cfg: RARConfig) -> None:
        super().__init__()
        if cfg.dim % cfg.heads:
            raise ValueError(f"width {cfg.dim} is not divisible by {cfg.heads} heads")
        self.heads, self.head_dim = cfg.heads, cfg.dim // cfg.heads
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim, bias=True)
        self.q_norm = nn.LayerNorm(self.head_dim, eps=cfg.norm_eps)
        self.k_norm = nn.LayerNorm(self.head_dim, eps=cfg.norm_eps)
        self.proj = nn.Linear(cfg.dim, cfg.dim)
        self.attn_dropout = cfg.attn_dropout
        self.proj_drop = nn.Dropout(cfg.dropout)

    def forward(self, x, cache: KVCache | None, layer: int, start: int, max_len: int) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = self.q_norm(q), self.k_norm(k)
        if cache is not None:
            k, v = cache.write(layer, start, k, v, max_len)
        out = causal_attention(q, k, v, start, self.attn_dropout if self.training else 0.0)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, t, -1)))


class RARBlock(nn.Module):
    def __init__(self, cfg: RARConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)
        self.attn = RARAttention(cfg)
        self.norm2 = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)
        self.fc1 = nn.Linear(cfg.dim, cfg.hidden)
        self.fc2 = nn.Linear(cfg.hidden, cfg.dim)
        self.drop = nn.Dropout(cfg.dropout)
        self.ada = nn.Linear(cfg.dim, 6 * cfg.dim)  # adaLN-Zero (SiLU applied to the condition first)

    def forward(self, x, c, cache, layer, start, max_len):
        sh1, sc1, g1, sh2, sc2, g2 = self.ada(F.silu(c)).chunk(6, -1)
        x = x + g1 * self.attn(modulate(self.norm1(x), sh1, sc1), cache, layer, start, max_len)
        return x + g2 * self.drop(self.fc2(self.drop(F.gelu(self.fc1(modulate(self.norm2(x), sh2, sc2))))))


class RARGenerator(SequenceHeads):
    """RAR over a tokenizer's token sequence; same call convention as `ARGenerator` (hidden state of step i
    predicts step i), so `tokbench.gen.sampling.generate` drives both. Internal sequence position p = step + 1
    (position 0 is the learned cls token)."""

    arch = "rar"

    def __init__(self, cfg: RARConfig, spec: SequenceSpec) -> None:
        super().__init__()
        self.cfg = cfg
        d, L = cfg.dim, spec.length
        self._init_tables(spec, d, cfg.num_classes)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.tok_drop = nn.Dropout(cfg.token_dropout)
        self.pos_embed = nn.Parameter(torch.zeros(L + 2, d))  # row 0 cls, 1 class, 2 + step
        self.target_pos_embed = nn.Parameter(torch.zeros(L + 2, d))  # row 2 + step of the *next* target
        self.step_cond = nn.Parameter(torch.zeros(L + 1, d))  # S[p]: per sequence position, added to the condition
        self.blocks = nn.ModuleList(RARBlock(cfg) for _ in range(cfg.depth))
        self.final_norm = nn.LayerNorm(d, eps=cfg.norm_eps, elementwise_affine=False)
        self.final_ada = nn.Linear(d, 2 * d)
        self._init_out_heads(d, bias=True)
        # group-major keys: permutations drawn by argsort(group + U[0,1)) stay inside each group
        self.register_buffer("_perm_base", spec.step_group.double().clone(), persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        std = self.cfg.init_std
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.trunc_normal_(m.weight, std=std)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm) and m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for p in (self.pos_embed, self.target_pos_embed, self.step_cond):
            nn.init.trunc_normal_(p, std=std)
        nn.init.zeros_(self.cls_token)
        for lin in [b.ada for b in self.blocks] + [self.final_ada]:  # adaLN-Zero
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def no_weight_decay(self) -> set[str]:
        """RAR decays no embedding or position table (nor biases and norms, which are 1-D anyway)."""
        return {n for n, p in self.named_parameters()
                if n.startswith(("cls_emb.", "tok_emb.")) or n in ("cls_token", "pos_embed", "target_pos_embed", "step_cond")}

    # ------------------------------------------------------------------------------------------------------------
    def sample_orders(self, batch: int, ratio: float, seed: int, step: int) -> torch.Tensor | None:
        """Orders of the `batch` samples of global optimiser step `step` (B x L spatial step indices), or None when
        r = 0 (raster for all). Drawn from a generator seeded by (seed, step) only: exact under resume and the same
        on every rank (each rank takes its slice)."""
        if ratio <= 0.0:
            return None
        g = torch.Generator().manual_seed((int(seed) * 1_000_003 + int(step) * 7_919 + 424_242) % (2**63 - 1))
        coin = torch.rand(batch, generator=g, dtype=torch.float64) < ratio
        keys = self._perm_base.cpu()[None] + torch.rand(batch, self.seq_len, generator=g, dtype=torch.float64)
        perm = keys.argsort(1)
        raster = torch.arange(self.seq_len).expand(batch, -1)
        return torch.where(coin[:, None], perm, raster).to(self.device)

    def _positions(self, orders: torch.Tensor | None, p0: int, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """pos and target-aware embeddings of internal positions p0 … p0+t−1 (B x t x D, or 1 x t x D for raster)."""
        L = self.seq_len
        if orders is None:
            own = torch.arange(L + 2, device=self.device)  # row of internal position p: p (cls 0, class 1, 2 + step)
            nxt = torch.cat([own.new_tensor([-1]), torch.arange(2, L + 2, device=self.device), own.new_tensor([-1])])
            own, nxt = own[None], nxt[None]
        else:
            pre = orders.new_tensor([0, 1]).expand(orders.shape[0], 2)
            own = torch.cat([pre, orders + 2], 1)  # B x (L + 2)
            none = orders.new_full((orders.shape[0], 1), -1)
            nxt = torch.cat([none, orders + 2, none], 1)
        own, nxt = own[:, p0 : p0 + t], nxt[:, p0 : p0 + t]
        ta = self.target_pos_embed[nxt.clamp(min=0)] * (nxt >= 0)[..., None].to(self.target_pos_embed.dtype)
        return self.pos_embed[own], ta

    def forward(self, labels: torch.Tensor, prev_ids: torch.Tensor | None = None, start: int = 0,
                cache: KVCache | None = None, orders: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states (after the final adaLN) of steps start … start+T−1. At start = 0 `prev_ids` holds steps
        0 … T−2 (the cls and class tokens lead); at start > 0 steps start−1 … start+T−2. `orders` (training only):
        prev_ids are already in that order, and position/target embeddings follow it."""
        b = labels.shape[0]
        cls = self.cls_emb(labels)  # B x D: the class token and the adaLN condition
        if start == 0:
            parts = [self.cls_token.expand(b, -1, -1), cls[:, None]]
            if prev_ids is not None and prev_ids.shape[1]:
                parts.append(self.tok_drop(self._embed_ids(prev_ids, 0)))
            x, p0 = torch.cat(parts, 1), 0
        else:
            x, p0 = self.tok_drop(self._embed_ids(prev_ids, start - 1)), start + 1
        t = x.shape[1]
        if p0 + t > self.seq_len + 1:
            raise ValueError(f"steps up to {p0 + t - 2} exceed the sequence length {self.seq_len}")
        pos, ta = self._positions(orders, p0, t)
        x = x + pos + ta
        c = cls[:, None] + self.step_cond[p0 : p0 + t][None]
        for i, blk in enumerate(self.blocks):
            x = blk(x, c, cache, i, p0, self.seq_len + 1)
        shift, scale = self.final_ada(F.silu(c)).chunk(2, -1)
        x = modulate(self.final_norm(x), shift, scale)
        return x[:, 1:] if start == 0 else x

    def loss(self, ids: torch.Tensor, labels: torch.Tensor, orders: torch.Tensor | None = None) -> torch.Tensor:
        """Mean cross-entropy of the (permuted) sequence. Orders permute within groups, so every step keeps its
        vocabulary and head; orders=None is the plain raster objective."""
        self._check_ids(ids)
        if orders is not None:
            ids = torch.gather(ids, 1, orders[..., None].expand(-1, -1, ids.shape[2]))
        return self.heads_loss(self(labels, ids[:, :-1], orders=orders), ids)

