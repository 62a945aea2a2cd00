"""Sampling from a tokbench generator (GPT or RAR, raster order): temperature, top-k, top-p, classifier-free guidance (constant or RAR's
cosine-power schedule), with or without the KV cache.

Reproducibility: every sample draws its randomness from its own seed (one uniform number per step and slot, drawn
up front) and picks its token by inverting the CDF of its distribution. A sample therefore depends only on its seed
and class, never on the batch size, the batch it shares, the device count or whether the KV cache is used; gFID runs
can be sharded and resumed and still produce the very same images.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from ..models.generator import KVCache, SequenceHeads


@dataclass
class SamplingConfig:
    """Sampler settings; recorded verbatim in every gFID protocol."""

    cfg: float = 1.0  # guidance scale w; 1 = plain conditional sampling
    cfg_schedule: str = "constant"  # constant | power (RAR: w(t) = 1 + (w−1)·½·(1 − cos(π·(t/N)^p)))
    cfg_power: float = 0.0
    temperature: float = 1.0  # 0 = greedy
    top_k: int = 0  # 0 = off; 1 = greedy
    top_p: float = 1.0  # 1 = off
    use_cache: bool = True

    def __post_init__(self) -> None:
        if self.cfg_schedule not in ("constant", "power"):
            raise ValueError(f"cfg_schedule must be 'constant' or 'power', got {self.cfg_schedule!r}")
        if self.temperature < 0 or self.top_k < 0 or not 0 < self.top_p <= 1:
            raise ValueError(f"bad sampler settings: temperature={self.temperature}, top_k={self.top_k}, top_p={self.top_p}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("use_cache")  # an implementation detail: same tokens either way
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SamplingConfig":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def cfg_scale(w: float, t: int, n: int, schedule: str = "constant", power: float = 0.0) -> float:
    """Guidance scale at step t of n. 'power' is RAR's cosine-power ramp (p = 0 gives constant w)."""
    if schedule == "constant":
        return float(w)
    return 1.0 + (w - 1.0) * 0.5 * (1.0 - math.cos(math.pi * (t / n) ** power))


def guide(cond: torch.Tensor, uncond: torch.Tensor, w: float) -> torch.Tensor:
    """uncond + w·(cond − uncond); exactly `cond` at w = 1."""
    return cond if w == 1.0 else uncond + w * (cond - uncond)


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Mask (−inf) everything outside the top-k, then outside the smallest set of probability ≥ top_p."""
    logits = logits.float()
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        remove = cum - sorted_logits.softmax(-1) >= top_p  # keep tokens until the mass before them reaches top_p
        remove[..., 0] = False
        logits = logits.masked_fill(torch.zeros_like(remove).scatter(-1, order, remove), float("-inf"))
    return logits


def pick(logits: torch.Tensor, u: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """One id per row from B x V logits with uniform numbers u (B), by inverse CDF. Greedy for top_k = 1 or
    temperature 0."""
    if temperature == 0 or top_k == 1:
        return logits.argmax(-1)
    logits = filter_logits(logits.float() / temperature, top_k, top_p)
    cdf = logits.softmax(-1).double().cumsum(-1)
    target = (u.double() * cdf[:, -1]).unsqueeze(1)
    return torch.searchsorted(cdf, target, right=True).squeeze(1).clamp_(max=logits.shape[-1] - 1)


def sample_noise(seeds: list[int] | torch.Tensor, length: int, num_sub: int) -> torch.Tensor:
    """B x L x K uniforms in [0, 1), each row from its own seed (CPU generator, so every device agrees)."""
    out = torch.empty(len(seeds), length, num_sub, dtype=torch.float64)
    g = torch.Generator()
    for i, s in enumerate(seeds):
        g.manual_seed(int(s))
        out[i] = torch.rand(length, num_sub, generator=g, dtype=torch.float64)
    return out


def sample_seeds(base_seed: int, indices) -> list[int]:
    """Seed of sample number i of a run: fixed per (base seed, index), independent of batching."""
    return [(int(base_seed) * 1_000_003 + int(i) * 7_919 + 12_345) % (2**63 - 1) for i in indices]


@torch.no_grad()
def generate(model: SequenceHeads, labels: torch.Tensor, noise: torch.Tensor, settings: SamplingConfig,
             autocast_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Sample B sequences (B x L x K ids). labels: B class ids (ignored by unconditional models); noise: B x L x K
    uniforms from `sample_noise`."""
    model.eval()
    dev = model.device
    b, L, K = labels.shape[0], model.seq_len, model.num_sub
    if tuple(noise.shape) != (b, L, K):
        raise ValueError(f"noise of shape {tuple(noise.shape)}, expected {(b, L, K)}")
    labels = labels.to(dev).long()
    if not model.conditional:
        labels = torch.full_like(labels, model.null_class)
    elif labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= model.cfg.num_classes):
        raise ValueError(f"class labels must lie in [0, {model.cfg.num_classes})")
    noise = noise.to(dev)
    guided = model.conditional and not (settings.cfg == 1.0 and settings.cfg_schedule == "constant")
    lab = torch.cat([labels, torch.full_like(labels, model.null_class)]) if guided else labels
    seq = torch.zeros(b, L, K, dtype=torch.long, device=dev)
    cache = KVCache(len(model.blocks)) if settings.use_cache else None
    ac = torch.autocast(dev.type, dtype=autocast_dtype) if autocast_dtype is not None else _null()
    for t in range(L):
        prev = (seq[:, t - 1 : t] if cache is not None else seq[:, :t]) if t else None
        if guided and prev is not None:
            prev = torch.cat([prev, prev])
        with ac:
            if cache is not None:
                h = model(lab, prev, start=t, cache=cache)[:, -1]
            else:
                h = model(lab, prev, start=0)[:, -1]
            step_logits = model.step_logits(h, t)
        w = cfg_scale(settings.cfg, t, L, settings.cfg_schedule, settings.cfg_power) if guided else 1.0
        for k, logits in enumerate(step_logits):
            if guided:
                logits = guide(logits[:b], logits[b:], w)
            seq[:, t, k] = pick(logits, noise[:, t, k], settings.temperature, settings.top_k, settings.top_p)
    return seq


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *a):
        return False
