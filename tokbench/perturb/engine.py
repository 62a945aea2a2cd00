"""The perturbation engine: simulate a generator's sampling errors on real tokens (RobustTok's latent perturbation,
generalised to every token space and layout), for pFID.

Rule (RobustTok, `algorithms.md` §1.2): an image is perturbed with probability β; each of its tokens is re-drawn with
probability α; a re-drawn token takes candidate rank j ~ U{0..δ-1} among its δ nearest neighbours (rank 0 = the
token itself, so the realised replacement share is α(δ-1)/δ, not α). `exclude_self` draws among the δ-1 candidates
other than the current id instead (realised share α; FSQ clipping at the grid edge aside).

Neighbour rule per token space (recorded with every pFID, `neighbour_rule`): learned codebooks use `feature`
(RobustTok's: the δ nearest codes to the encoder's pre-quantisation feature; the default) or `code` (the δ nearest to
the assigned code); LFQ/binary spaces always use Hamming shells and FSQ spaces ±1 grid steps (their natural
neighbours, the same under either setting). Deviations from upstream, on purpose:
- β is decided per image by a hash of its global index (upstream perturbs the first ⌊Bβ⌋ images of each batch, which
  depends on batch size); pFID uses β = 1 anyway.
- All draws are counter-based (`rng.py`): the perturbed tokens of an image depend only on (seed, image index, α, δ,
  neighbour rule). The selection draws do not depend on α, so the re-drawn tokens at a smaller α are a subset of those
  at a larger α (coupled pFID curves).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal, Sequence

import torch

from ..api import BinarySpace, CodebookSpace, FSQSpace, TokenLayout, Tokens, TokenSpace
from . import rng
from .neighbours import (binary_neighbours, code_neighbour_table, feature_candidates, fsq_neighbours, max_candidates,
                         radius_for)

NeighbourMode = Literal["code", "feature"]
DEFAULT_MODE: NeighbourMode = "feature"


def neighbour_rule(space: TokenSpace, mode: str) -> str:
    """The neighbour rule a token space actually gets under a requested mode: `feature` / `code` for learned codebooks,
    `hamming` for binary (LFQ) codes, `fsq-grid` for FSQ (the last two ignore the mode)."""
    if isinstance(space, CodebookSpace):
        return mode
    if isinstance(space, BinarySpace):
        return "hamming"
    if isinstance(space, FSQSpace):
        return "fsq-grid"
    raise TypeError(f"no perturbation rule for token space {type(space).__name__}")


def neighbour_rules(token_spaces: Sequence[TokenSpace], mode: str) -> dict[str, str]:
    """{"space0": rule, …} for a tokenizer's token spaces."""
    return {f"space{i}": neighbour_rule(sp, mode) for i, sp in enumerate(token_spaces)}


def rule_summary(rules: dict[str, str]) -> str:
    """One label for a tokenizer's rules, e.g. "feature" or "feature+hamming" (distinct rules, in space order)."""
    return "+".join(dict.fromkeys(rules.values()))


@dataclass(frozen=True)
class PerturbSetting:
    """One perturbation setting. δ ≥ 1 (an integer) is absolute; 0 < δ < 1 is a fraction of each space's vocabulary.

    mode: neighbour rule for learned codebooks: "feature" (δ nearest codes to the encoder feature: RobustTok's exact
      rule, the default; needs `last_features`) or "code" (δ nearest codes to the assigned code, precomputed table).
    scales: perturb only the groups of these scales (multi-scale tokenizers); None = all. α counts tokens over all
      perturbed groups together.
    exclude_self: draw the replacement among the candidates other than the current id (realised share α instead of
      RobustTok's α(δ-1)/δ); needs δ ≥ 2."""

    alpha: float
    delta: float = 100
    beta: float = 1.0
    seed: int = 0
    mode: NeighbourMode = DEFAULT_MODE
    scales: tuple[int, ...] | None = None
    exclude_self: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"α={self.alpha} must lie in [0, 1]")
        if not 0.0 <= self.beta <= 1.0:
            raise ValueError(f"β={self.beta} must lie in [0, 1]")
        if not (self.delta >= 1 and float(self.delta).is_integer()) and not 0.0 < self.delta < 1.0:
            raise ValueError(f"δ={self.delta} must be an integer ≥ 1 or a fraction in (0, 1)")
        if self.mode not in ("code", "feature"):
            raise ValueError(f"unknown neighbour mode {self.mode!r}: use 'code' or 'feature'")
        if self.scales is not None:
            object.__setattr__(self, "scales", tuple(int(s) for s in self.scales))
        if self.delta >= 1:
            object.__setattr__(self, "delta", int(self.delta))
        if self.exclude_self and self.delta == 1:
            raise ValueError("exclude_self needs δ ≥ 2: with δ = 1 the only candidate is the token itself")
        object.__setattr__(self, "exclude_self", bool(self.exclude_self))

    @property
    def delta_is_fraction(self) -> bool:
        return self.delta < 1

    def delta_for(self, space: TokenSpace) -> int:
        """The absolute candidate count for one token space."""
        d = max(1, round(self.delta * space.vocab_size)) if self.delta_is_fraction else int(self.delta)
        top = max_candidates(space)
        if d > top:
            raise ValueError(f"δ={d} exceeds the {top} candidates of a {space.kind} space "
                             f"(vocabulary {space.vocab_size})")
        if self.exclude_self and d < 2:
            raise ValueError(f"exclude_self needs δ ≥ 2; δ={self.delta:g} gives {d} for a vocabulary of "
                             f"{space.vocab_size}")
        return d

    @property
    def label(self) -> str:
        d = f"{self.delta:g}" if self.delta_is_fraction else str(self.delta)
        s = "" if self.scales is None else "-sc" + ".".join(map(str, self.scales))
        x = "-xself" if self.exclude_self else ""
        return f"a{self.alpha:g}-d{d}-{self.mode}{x}{s}-s{self.seed}"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["scales"] = list(self.scales) if self.scales is not None else None
        return d


@dataclass
class PerturbResult:
    tokens: Tokens
    changed: torch.Tensor  # (B,) tokens whose id changed, per image
    eligible: torch.Tensor  # (B,) tokens that could be re-drawn (in perturbed images and chosen scales), per image
    deltas: dict[int, int] = field(default_factory=dict)  # token-space index → absolute δ used

    @property
    def rate(self) -> float | None:
        """Realised replacement rate: changed / eligible tokens; None (undefined) when no token was eligible (β = 0 or
        no image drawn). At α = 0 every token of a perturbed image is eligible and none changes: 0 by construction."""
        e = int(self.eligible.sum())
        return int(self.changed.sum()) / e if e else None


def select_replacements(ids: torch.Tensor, candidates: torch.Tensor, u: torch.Tensor, j: torch.Tensor,
                        alpha: float) -> torch.Tensor:
    """The pure RobustTok rule on given draws: a token with u ≤ α takes candidates[..., j], else keeps its id.
    ids (…), candidates (… x δ), u (…) float, j (…) int. Used to replay upstream's recorded draws in tests."""
    picked = candidates.gather(-1, j.long().unsqueeze(-1)).squeeze(-1)
    return torch.where(u <= alpha, picked, ids)


class Perturber:
    """Perturbs `Tokens` of one tokenizer. Holds the per-space code→neighbour tables (computed once per space for the
    largest δ asked, then sliced: top-k lists are nested)."""

    def __init__(self, token_spaces: Sequence[TokenSpace], layout: TokenLayout, device: torch.device | str | None = None):
        self.token_spaces = list(token_spaces)
        self.layout = layout
        self.device = device
        self._tables: dict[int, torch.Tensor] = {}
        offsets, o = [], 0
        for g in layout.groups:
            offsets.append(o)
            o += g.numel
        self._offsets = offsets

    @classmethod
    def for_tokenizer(cls, tokenizer, device=None) -> "Perturber":
        return cls(tokenizer.token_spaces, tokenizer.layout, device if device is not None else tokenizer.device)

    def prepare(self, settings: Sequence[PerturbSetting]) -> None:
        """Precompute the code→neighbour tables for the largest δ of the given code-mode settings."""
        need: dict[int, int] = {}
        for s in settings:
            if s.mode != "code" or s.alpha == 0:
                continue
            for i, sp in enumerate(self.token_spaces):
                if isinstance(sp, CodebookSpace):
                    need[i] = max(need.get(i, 0), s.delta_for(sp))
        for i, d in need.items():
            self._table(i, d)

    def _table(self, space_index: int, delta: int) -> torch.Tensor:
        t = self._tables.get(space_index)
        if t is None or t.shape[1] < delta:
            t = code_neighbour_table(self.token_spaces[space_index], delta, device=self.device)
            self._tables[space_index] = t
        return t[:, :delta]

    def __call__(self, tokens: Tokens, setting: PerturbSetting, image_index: torch.Tensor,
                 features: Sequence[torch.Tensor] | None = None) -> PerturbResult:
        return self.perturb(tokens, setting, image_index, features)

    def perturb(self, tokens: Tokens, setting: PerturbSetting, image_index: torch.Tensor,
                features: Sequence[torch.Tensor] | None = None,
                draws: Sequence[tuple[torch.Tensor, torch.Tensor]] | None = None) -> PerturbResult:
        """tokens: a batch; image_index (B,): the global index of each image in the data set (the key of its draws);
        features: `tokenizer.last_features` (needed for mode="feature");
        draws: replay given draws instead of the counter-based ones (tests against upstream's recorded case): one
          (u, j) pair per (group, sub-space) in layout order, u (B x P) float selection draws and j (B x P) integer
          candidate ranks in [0, δ) (in [0, δ-1) with exclude_self), P = the group's positions."""
        if tokens.layout != self.layout:
            raise ValueError("tokens do not have the layout this Perturber was built for")
        dev = tokens.device
        image_index = torch.as_tensor(image_index, device=dev).to(torch.int64).reshape(-1)
        B = tokens.batch_size
        if image_index.shape[0] != B:
            raise ValueError(f"{image_index.shape[0]} image indices for a batch of {B}")
        changed = torch.zeros(B, dtype=torch.int64, device=dev)
        eligible = torch.zeros(B, dtype=torch.int64, device=dev)
        deltas: dict[int, int] = {}
        out = [t.clone() for t in tokens.ids]
        if setting.beta == 0:
            return PerturbResult(tokens.replace_ids(out), changed, eligible, deltas)
        img_on = rng.image_uniform(setting.seed, rng.STREAM_IMAGE, image_index) < setting.beta  # (B,)
        k = 0
        for gi, g in enumerate(self.layout.groups):
            if setting.scales is not None and g.scale not in setting.scales:
                k += len(g.spaces)
                continue
            pos_all = self._offsets[gi] + torch.arange(g.numel, device=dev).reshape(g.shape)
            for si, space_index in enumerate(g.spaces):
                replay = draws[k] if draws is not None else None
                k += 1
                space = self.token_spaces[space_index]
                delta = setting.delta_for(space)
                deltas[space_index] = delta
                sub = (lambda t: t[..., si]) if g.has_sub_axis else (lambda t: t)
                ids = sub(tokens.ids[gi]).reshape(B, -1)
                pos = sub(pos_all).reshape(-1)
                eligible += img_on.long() * pos.numel()
                if delta == 1 or setting.alpha == 0:
                    continue
                if replay is None:
                    u = rng.token_uniform(setting.seed, rng.STREAM_SELECT, image_index, pos)
                else:
                    u = replay[0].to(dev, torch.float64).reshape(B, -1)
                sel = (u <= setting.alpha) & img_on[:, None]
                if not bool(sel.any()):
                    continue
                b_idx, p_idx = sel.nonzero(as_tuple=True)
                choices = delta - 1 if setting.exclude_self else delta
                if replay is None:
                    uj = _pairwise_uniform(setting.seed, rng.STREAM_RANK, image_index[b_idx], pos[p_idx])
                    rank = torch.clamp((uj * choices).long(), max=choices - 1)
                else:
                    rank = replay[1].to(dev).long().reshape(B, -1)[b_idx, p_idx]
                cur = ids[b_idx, p_idx]
                new = self._neighbours(space, space_index, setting, delta, cur, rank, image_index[b_idx], pos[p_idx],
                                       features, gi, si, g.has_sub_axis, b_idx, p_idx, B)
                ids_new = ids.clone()
                ids_new[b_idx, p_idx] = new
                changed += (ids_new != ids).sum(1)
                if g.has_sub_axis:
                    out[gi][..., si] = ids_new.reshape(B, *g.positions)
                else:
                    out[gi] = ids_new.reshape(B, *g.shape)
        return PerturbResult(tokens.replace_ids(out), changed, eligible, deltas)

    def _neighbours(self, space, space_index, setting, delta, cur, rank, img, pos, features, gi, si, has_sub, b_idx,
                    p_idx, B) -> torch.Tensor:
        """The candidate at `rank` for each re-drawn token. With exclude_self, `rank` indexes the candidates other
        than the current id: rank + 1 in the code table and the binary/FSQ shells (whose rank 0 is the token itself),
        the list with the current id removed (else its last entry dropped) for the feature rule."""
        shift = 1 if setting.exclude_self else 0
        if isinstance(space, CodebookSpace):
            if setting.mode == "code":
                return self._table(space_index, delta)[cur, rank + shift].long()
            if features is None:
                raise ValueError("mode='feature' needs the encoder features: set tokenizer.keep_features = True and "
                                 "pass tokenizer.last_features (or choose the 'code' rule)")
            f = features[gi]
            if has_sub:
                f = f[..., si, :]
            f = f.reshape(B, -1, f.shape[-1])[b_idx, p_idx]
            cand = feature_candidates(space, f, delta)
            if setting.exclude_self:
                others_first = torch.argsort((cand == cur[:, None]).to(torch.int8), dim=-1, stable=True)
                cand = cand.gather(-1, others_first)[:, : delta - 1]
            return cand.gather(-1, rank[:, None]).squeeze(-1)
        if isinstance(space, (BinarySpace, FSQSpace)):
            n = space.bits if isinstance(space, BinarySpace) else len(space.levels)
            if n > 64:
                raise ValueError(f"{n} bits/digits: at most 64 supported")
            slots = pos[:, None] * 64 + torch.arange(n, device=pos.device)[None, :]
            perm_bits = _pairwise_bits(setting.seed, rng.STREAM_PERM, img, slots)
            if isinstance(space, BinarySpace):
                return binary_neighbours(space, cur, rank + shift, perm_bits)
            return fsq_neighbours(space, cur, rank + shift, perm_bits)
        raise TypeError(f"no perturbation rule for token space {type(space).__name__}")


def _pairwise_bits(seed: int, stream: int, image_index: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Draws for M (image, position) pairs: image_index (M,), positions (M,) or (M, k) → bits shaped like positions."""
    k = rng.image_keys(seed, stream, image_index).reshape(-1, *([1] * (positions.ndim - 1)))
    return rng.hash32(rng.hash32(k ^ (positions.to(torch.int64) & rng.M32)) + 0x9E3779B9)


def _pairwise_uniform(seed: int, stream: int, image_index: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    return (_pairwise_bits(seed, stream, image_index, positions).to(torch.float64) + 0.5) / 4294967296.0


def expected_change_rate(setting: PerturbSetting, delta: int) -> float:
    """The share of eligible tokens whose id changes for a codebook (ties aside): α(δ-1)/δ, or α with exclude_self."""
    return setting.alpha if setting.exclude_self else setting.alpha * (delta - 1) / delta


def neighbourhood_radius(space: TokenSpace, delta: int) -> int:
    """Binary: the largest Hamming distance among the δ candidates; FSQ: the largest number of moved digits."""
    if isinstance(space, BinarySpace):
        return radius_for("binary", space.bits, delta)
    if isinstance(space, FSQSpace):
        return radius_for("fsq", len(space.levels), delta)
    raise TypeError("radius is defined for binary and FSQ spaces")
