"""Codebook statistics over a whole evaluation set (`algorithms.md` §6), on the clean tokens.

Per token space (sub-codebook / branch), joint over all groups that use it: usage (share of codes used), dead codes,
perplexity exp(H), entropy H in bits and normalised H / log K. For multi-scale layouts also per (scale, space). For
binary (LFQ) spaces also the per-bit marginal entropies. Plus the ViT-VQGAN usage per window of 256 consecutive
images (by global image index), averaged over the full windows (the one partial window counts only when it is the
only one). T, the number of tokens counted, is always reported. Counts merge exactly across shards and processes.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
import torch

from ..api import BinarySpace, TokenLayout, Tokens, TokenSpace

MAX_JOINT_VOCAB = 1 << 24  # joint histograms only where K is enumerable


class CodebookStats:
    def __init__(self, token_spaces: Sequence[TokenSpace], layout: TokenLayout, window: int = 256,
                 device: torch.device | str = "cpu"):
        self.token_spaces = list(token_spaces)
        self.layout = layout
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"usage_window (images per codebook-usage window) must be a whole number ≥ 1, got "
                             f"{window!r}")
        self.window = window
        self.device = torch.device(device)
        used = sorted({s for g in layout.groups for s in g.spaces})
        self.space_ids = used
        self.counts: dict[str, torch.Tensor] = {}
        self.tokens: dict[str, int] = {}
        self.bit_ones: dict[int, torch.Tensor] = {}
        for s in used:
            k = self.token_spaces[s].vocab_size
            if k <= MAX_JOINT_VOCAB:
                self.counts[self._name(s)] = torch.zeros(k, dtype=torch.int64, device=self.device)
            self.tokens[self._name(s)] = 0
            if isinstance(self.token_spaces[s], BinarySpace):
                self.bit_ones[s] = torch.zeros(self.token_spaces[s].bits, dtype=torch.int64, device=self.device)
        if layout.multiscale:
            for g in layout.groups:
                for s in g.spaces:
                    name = self._name(s, g.scale)
                    if name not in self.tokens and self.token_spaces[s].vocab_size <= MAX_JOINT_VOCAB:
                        self.counts[name] = torch.zeros(self.token_spaces[s].vocab_size, dtype=torch.int64,
                                                        device=self.device)
                        self.tokens[name] = 0
        self.open_windows: dict[int, dict[int, torch.Tensor]] = {}  # window → space → bool[K]
        self.closed_windows: dict[int, dict[int, int]] = {}  # window → space → unique codes
        self.window_images: dict[int, int] = {}  # window → images seen (all ranks after reduce)

    def _name(self, space: int, scale: int | None = None) -> str:
        base = f"space{space}"
        return base if scale is None else f"scale{scale}/{base}"

    # --- accumulation ---------------------------------------------------------------------------------------------
    @torch.no_grad()
    def update(self, tokens: Tokens, image_index: torch.Tensor) -> None:
        image_index = torch.as_tensor(image_index).to(torch.int64).cpu()
        win = image_index // self.window
        for w, c in zip(*torch.unique(win, return_counts=True)):
            self.window_images[int(w)] = self.window_images.get(int(w), 0) + int(c)
        win_dev = win.to(tokens.device)
        for gi, g in enumerate(self.layout.groups):
            for si, s in enumerate(g.spaces):
                ids = tokens.ids[gi][..., si] if g.has_sub_axis else tokens.ids[gi]
                ids = ids.reshape(ids.shape[0], -1)
                k = self.token_spaces[s].vocab_size
                flat = ids.reshape(-1)
                names = [self._name(s)] + ([self._name(s, g.scale)] if self.layout.multiscale else [])
                hist = torch.bincount(flat, minlength=k).to(self.device) if k <= MAX_JOINT_VOCAB else None
                for name in names:
                    if hist is not None and name in self.counts:
                        self.counts[name] += hist
                    if name in self.tokens:
                        self.tokens[name] += int(flat.numel())
                if s in self.bit_ones:
                    bits = self.token_spaces[s].bits
                    shifts = torch.arange(bits, device=flat.device)
                    self.bit_ones[s] += ((flat[:, None] >> shifts) & 1).sum(0).to(self.device)
                for w in torch.unique(win).tolist():
                    seen = self.open_windows.setdefault(int(w), {}).get(s)
                    if seen is None:
                        seen = torch.zeros(k, dtype=torch.bool, device=self.device)
                        self.open_windows[int(w)][s] = seen
                    seen[ids[win_dev == w].reshape(-1).to(self.device)] = True

    def close_windows(self, windows: Iterable[int]) -> None:
        """Turn finished windows (all their images seen by this process) into unique-code counts."""
        for w in list(windows):
            if w in self.open_windows:
                self.closed_windows[w] = {s: int(v.sum()) for s, v in self.open_windows.pop(w).items()}

    # --- merging ------------------------------------------------------------------------------------------------
    def all_reduce(self) -> "CodebookStats":
        """Sum counts over processes; OR the windows that several processes touched; gather closed windows."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            self.close_windows(list(self.open_windows))
            return self
        for t in list(self.counts.values()) + list(self.bit_ones.values()):
            dist.all_reduce(t)
        names = sorted(self.tokens)
        tok = torch.tensor([self.tokens[n] for n in names], dtype=torch.int64, device=self.device)
        dist.all_reduce(tok)
        self.tokens = dict(zip(names, tok.tolist()))
        payload = ({w: {s: np.packbits(v.cpu().numpy()) for s, v in d.items()} for w, d in self.open_windows.items()},
                   self.closed_windows, self.window_images)
        gathered: list = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, payload)
        opened: dict[int, dict[int, np.ndarray]] = {}
        closed: dict[int, dict[int, int]] = {}
        images: dict[int, int] = {}
        for op, cl, im in gathered:
            closed.update(cl)
            for w, c in im.items():
                images[w] = images.get(w, 0) + c
            for w, d in op.items():
                for s, packed in d.items():
                    prev = opened.setdefault(w, {}).get(s)
                    opened[w][s] = packed if prev is None else np.bitwise_or(prev, packed)
        for w, d in opened.items():
            closed[w] = {s: int(np.unpackbits(p)[: self.token_spaces[s].vocab_size].sum()) for s, p in d.items()}
        self.open_windows, self.closed_windows, self.window_images = {}, closed, images
        return self

    def state_dict(self) -> dict:
        return {"counts": {k: v.cpu() for k, v in self.counts.items()}, "tokens": dict(self.tokens),
                "bit_ones": {s: v.cpu() for s, v in self.bit_ones.items()},
                "open_windows": {w: {s: v.cpu() for s, v in d.items()} for w, d in self.open_windows.items()},
                "closed_windows": {w: dict(d) for w, d in self.closed_windows.items()},
                "window_images": dict(self.window_images), "window": self.window}

    def load_state_dict(self, sd: dict) -> "CodebookStats":
        if sd["window"] != self.window or set(sd["counts"]) != set(self.counts):
            raise ValueError("codebook statistics state does not fit this tokenizer / window")
        self.counts = {k: v.to(self.device).clone() for k, v in sd["counts"].items()}
        self.tokens = dict(sd["tokens"])
        self.bit_ones = {int(s): v.to(self.device).clone() for s, v in sd["bit_ones"].items()}
        self.open_windows = {int(w): {int(s): v.to(self.device).clone() for s, v in d.items()}
                             for w, d in sd["open_windows"].items()}
        self.closed_windows = {int(w): {int(s): int(c) for s, c in d.items()} for w, d in sd["closed_windows"].items()}
        self.window_images = {int(w): int(c) for w, c in sd["window_images"].items()}
        return self

    # --- results ------------------------------------------------------------------------------------------------
    def summary(self) -> dict:
        units = {}
        for name in sorted(self.tokens):
            space = int(name.split("space")[-1])
            sp = self.token_spaces[space]
            u: dict = {"vocab_size": sp.vocab_size, "tokens": self.tokens[name], "kind": sp.kind}
            if name in self.counts:
                u.update(histogram_stats(self.counts[name]))
            if name == self._name(space) and space in self.bit_ones and self.tokens[name]:
                p = (self.bit_ones[space].double() / self.tokens[name]).cpu()
                h = -(p * torch.log2(p.clamp_min(1e-300)) + (1 - p) * torch.log2((1 - p).clamp_min(1e-300)))
                u["bit_entropy"] = [round(float(x), 6) for x in h]
                u["bit_entropy_mean"] = float(h.mean())
            units[name] = u
        full = [w for w, n in self.window_images.items() if n >= self.window]
        use = full if full else list(self.window_images)
        per_window = {}
        for s in self.space_ids:
            vals = [self.closed_windows[w][s] / self.token_spaces[s].vocab_size for w in use
                    if w in self.closed_windows and s in self.closed_windows[w]]
            per_window[f"space{s}"] = float(np.mean(vals)) if vals else None
        heads = [units[self._name(s)] for s in self.space_ids]

        def mean(key):
            vals = [h[key] for h in heads if h.get(key) is not None]
            return float(np.mean(vals)) if vals else None

        pw = [v for v in per_window.values() if v is not None]
        return {
            "usage": mean("usage"), "perplexity": mean("perplexity"), "entropy_norm": mean("entropy_norm"),
            "usage_per_window": float(np.mean(pw)) if pw else None,
            "headline_over": (f"space{self.space_ids[0]}" if len(self.space_ids) == 1
                              else f"mean over {len(self.space_ids)} token spaces"),
            "window": self.window, "windows_counted": len(use), "windows_full": bool(full),
            "usage_per_window_by_space": per_window, "units": units,
            "computed_on": "clean tokens",
        }


def histogram_stats(counts: torch.Tensor) -> dict:
    """usage, dead codes, perplexity, entropy (bits) and normalised entropy of one histogram."""
    c = counts.double().cpu()
    total, k = float(c.sum()), c.numel()
    used = int((c > 0).sum())
    if total == 0:
        return {"used": 0, "usage": 0.0, "dead": k, "perplexity": None, "entropy_bits": None, "entropy_norm": None}
    p = c[c > 0] / total
    h = float(-(p * p.log()).sum())  # nats
    return {"used": used, "usage": used / k, "dead": k - used, "perplexity": math.exp(h),
            "entropy_bits": h / math.log(2), "entropy_norm": h / math.log(k) if k > 1 else 0.0}
