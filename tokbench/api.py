"""The one tokenizer API that every adapter and in-house model implements.

A tokenizer turns uint8 RGB images (already at its resolution) into `Tokens` and back. `Tokens` carry their layout
(2-D grid, 1-D sequence, a list of scales, a trailing sub-codebook axis), and the tokenizer exposes its
`token_spaces` so that the perturbation engine can find plausible wrong tokens without knowing the family.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Literal, Sequence

import torch
from torch import nn

Metric = Literal["l2", "cosine", "dot"]
GroupKind = Literal["grid", "sequence"]


# ----------------------------------------------------------------------------------------------------------------------
# Token spaces: what "a plausible wrong token" means for a quantiser.
# ----------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TokenSpace:
    """Base class: a set of ids [0, vocab_size)."""

    vocab_size: int

    @property
    def kind(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True, eq=False)
class CodebookSpace(TokenSpace):
    """A learned codebook. `codes` are the effective code vectors exactly as the model assigns with them (after any
    projection or normalisation), and `metric` is the assignment rule: id = argmin L2 / argmax cosine / argmax dot."""

    codes: torch.Tensor = field(default=None, repr=False)  # N x D, float
    metric: Metric = "l2"

    @property
    def kind(self) -> str:
        return "codebook"

    @property
    def dim(self) -> int:
        return int(self.codes.shape[1])

    def scores(self, queries: torch.Tensor, codes: torch.Tensor | None = None) -> torch.Tensor:
        """Similarity of each query (… x D) to every code (higher = nearer), under the model's own metric.
        For L2 this is the negated squared distance."""
        codes = self.codes if codes is None else codes
        codes = codes.to(queries.device, queries.dtype)
        q = queries.reshape(-1, queries.shape[-1])
        if self.metric == "cosine":
            q = nn.functional.normalize(q, dim=-1)
            c = nn.functional.normalize(codes, dim=-1)
            s = q @ c.T
        elif self.metric == "dot":
            s = q @ codes.T
        elif self.metric == "l2":
            s = 2 * q @ codes.T - (q * q).sum(-1, keepdim=True) - (codes * codes).sum(-1)[None, :]
        else:  # pragma: no cover - guarded by the Literal
            raise ValueError(f"unknown metric {self.metric!r}")
        return s.reshape(*queries.shape[:-1], codes.shape[0])


@dataclass(frozen=True)
class BinarySpace(TokenSpace):
    """LFQ / binary codes: id = sum_c bit_c * 2**c (channel 0 least significant); neighbours are bit flips."""

    bits: int = 0
    lsb_first: bool = True

    @property
    def kind(self) -> str:
        return "binary"


@dataclass(frozen=True)
class FSQSpace(TokenSpace):
    """Finite scalar quantisation: an implicit grid; id = sum_i q_i * prod(levels[:i]) (dimension 0 least
    significant); neighbours are ±1 steps on the grid, clipped at its edges."""

    levels: tuple[int, ...] = ()

    @property
    def kind(self) -> str:
        return "fsq"

    @property
    def bases(self) -> tuple[int, ...]:
        out, b = [], 1
        for lv in self.levels:
            out.append(b)
            b *= lv
        return tuple(out)


# ----------------------------------------------------------------------------------------------------------------------
# Tokens and their layout
# ----------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TokenGroup:
    """One id tensor of a tokenizer's output, per image.

    shape: per-image shape of the id tensor, e.g. (16, 16) for a grid, (32,) for a 1-D sequence, (16, 16, 8) for a
      grid with a trailing sub-codebook axis of 8.
    kind: "grid" or "sequence" (positions without spatial meaning, as in TiTok).
    scale: index of the scale for multi-scale tokenizers (0 = coarsest); 0 otherwise.
    spaces: index into `Tokenizer.token_spaces` for each entry of the trailing sub-codebook axis; a single entry means
      there is no sub-codebook axis.
    """

    shape: tuple[int, ...]
    kind: GroupKind = "grid"
    scale: int = 0
    spaces: tuple[int, ...] = (0,)

    @property
    def has_sub_axis(self) -> bool:
        return len(self.spaces) > 1

    @property
    def positions(self) -> tuple[int, ...]:
        """The positional part of the shape (without the sub-codebook axis)."""
        return self.shape[:-1] if self.has_sub_axis else self.shape

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


@dataclass(frozen=True)
class TokenLayout:
    """The ordered groups of a tokenizer's ids. `as_list()` order is the fixtures' `indices_0, indices_1, …` order."""

    groups: tuple[TokenGroup, ...]

    @property
    def multiscale(self) -> bool:
        return len({g.scale for g in self.groups}) > 1

    @property
    def tokens_per_image(self) -> int:
        return sum(g.numel for g in self.groups)

    @staticmethod
    def grid(h: int, w: int, num_sub: int = 1) -> "TokenLayout":
        if num_sub > 1:
            return TokenLayout((TokenGroup((h, w, num_sub), "grid", 0, tuple(range(num_sub))),))
        return TokenLayout((TokenGroup((h, w)),))

    @staticmethod
    def sequence(length: int) -> "TokenLayout":
        return TokenLayout((TokenGroup((length,), "sequence"),))

    def to_dict(self) -> dict:
        return {"groups": [asdict(g) for g in self.groups]}


@dataclass
class Tokens:
    """Token ids of a batch plus their layout. `ids[k]` has shape B x layout.groups[k].shape, dtype int64."""

    ids: list[torch.Tensor]
    layout: TokenLayout

    def __post_init__(self) -> None:
        if len(self.ids) != len(self.layout.groups):
            raise ValueError(f"{len(self.ids)} id tensors for a layout of {len(self.layout.groups)} groups")
        for t, g in zip(self.ids, self.layout.groups):
            if tuple(t.shape[1:]) != g.shape:
                raise ValueError(f"id tensor of shape {tuple(t.shape)} does not fit group shape B x {g.shape}")

    def as_list(self) -> list[torch.Tensor]:
        """One id tensor per group (per scale / branch), in the fixtures' order; a one-element list when single."""
        return list(self.ids)

    @property
    def batch_size(self) -> int:
        return int(self.ids[0].shape[0])

    @property
    def device(self) -> torch.device:
        return self.ids[0].device

    def to(self, device: torch.device | str) -> "Tokens":
        return Tokens([t.to(device) for t in self.ids], self.layout)

    def replace_ids(self, ids: Sequence[torch.Tensor]) -> "Tokens":
        return Tokens(list(ids), self.layout)

    def flat(self) -> torch.Tensor:
        """All ids of each image in one row, B x tokens_per_image (group order, then row-major within a group)."""
        return torch.cat([t.reshape(t.shape[0], -1) for t in self.ids], dim=1)

    @classmethod
    def from_flat(cls, flat: torch.Tensor, layout: TokenLayout) -> "Tokens":
        out, start = [], 0
        for g in layout.groups:
            out.append(flat[:, start : start + g.numel].reshape(flat.shape[0], *g.shape))
            start += g.numel
        if start != flat.shape[1]:
            raise ValueError(f"flat ids have {flat.shape[1]} tokens per image, layout has {start}")
        return cls(out, layout)

    def __getitem__(self, index) -> "Tokens":
        """Select images of the batch."""
        return Tokens([t[index] for t in self.ids], self.layout)


# ----------------------------------------------------------------------------------------------------------------------
# Metadata
# ----------------------------------------------------------------------------------------------------------------------
@dataclass
class TokenizerInfo:
    """What a user (and a result file) needs to know about a tokenizer. Recorded in every result."""

    family: str
    preset: str | None = None
    resolution: int = 256
    crop: str = "adm"  # the centre crop the published numbers use; see tokbench.data.transforms
    value_range: str = "[-1,1]"  # the model's native input/output range: "[-1,1]" or "[0,1]"
    vocab_size: int = 0
    tokens_per_image: int = 0
    quantizer: str = "vq"  # vq | lfq | fsq | multiscale-vq | multi-codebook | product-multiscale-vq | pixel-kmeans
    paper: str = ""
    code_license: str = ""
    weights_license: str = ""
    weight_source: str = ""
    notes: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    def with_updates(self, **kw) -> "TokenizerInfo":
        return replace(self, **kw)


# ----------------------------------------------------------------------------------------------------------------------
# The tokenizer base class
# ----------------------------------------------------------------------------------------------------------------------
class Tokenizer(nn.Module):
    """Base class. Subclasses implement `_encode(x_native) -> (ids list, features list | None)` and
    `decode_raw(tokens)`, set `self.info`, `self.layout` and `self.token_spaces`.

    - `encode(images)`: uint8 B x 3 x H x W RGB at the tokenizer's resolution → `Tokens`.
    - `decode(tokens)`: float B x 3 x H x W in [0, 1], clamped.
    - `decode_raw(tokens)`: the decoder's native output, unclamped (parity tests compare this).
    - `last_features`: the pre-quantisation features of the last encode, one tensor per group shaped
      B x group.shape x D, in the space of the group's token space (so that argmax of `space.scores` is the id).
    """

    info: TokenizerInfo
    layout: TokenLayout
    token_spaces: list[TokenSpace]

    def __init__(self) -> None:
        super().__init__()
        self.last_features: list[torch.Tensor] | None = None
        self.keep_features: bool = False

    # --- value ranges -------------------------------------------------------------------------------------------
    @staticmethod
    def check_images(images: torch.Tensor) -> None:
        """The encode contract: uint8 B × 3 × H × W. Families that convert differently call this first."""
        if images.dtype != torch.uint8:
            raise TypeError(f"encode expects uint8 images, got {images.dtype}")
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"encode expects B x 3 x H x W images, got shape {tuple(images.shape)}")

    def to_model_input(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 → the model's native range, computed in float64 then cast (as taming/LlamaGen data pipelines do)."""
        self.check_images(images)
        x = images.to(self.device, torch.float64)
        if self.info.value_range == "[-1,1]":
            x = x / 127.5 - 1.0
        elif self.info.value_range == "[0,1]":
            x = x / 255.0
        else:
            raise ValueError(f"unknown value range {self.info.value_range!r}")
        return x.to(self.compute_dtype)

    def native_to_unit(self, x: torch.Tensor) -> torch.Tensor:
        """Native decoder output → [0, 1] (unclamped)."""
        if self.info.value_range == "[-1,1]":
            return (x + 1.0) / 2.0
        return x

    # --- public API ---------------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        for b in self.buffers():
            return b.device
        return torch.device("cpu")

    @property
    def compute_dtype(self) -> torch.dtype:
        return torch.float32

    @property
    def token_space(self) -> TokenSpace:
        """The single token space (error for tokenizers with several, e.g. multi-codebook or product)."""
        if len(self.token_spaces) != 1:
            raise AttributeError(f"{self.info.family} has {len(self.token_spaces)} token spaces: use token_spaces")
        return self.token_spaces[0]

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> Tokens:
        """uint8 images, B×3×H×W at `info.resolution`, → their token ids (`Tokens`: one id tensor per scale /
        branch, in the layout `self.layout` describes). The model's own preprocessing is applied here, so every
        tokenizer takes the same input; with `keep_features`, the pre-quantisation latents stay in `last_features`
        (the perturbation engine's feature rule needs them)."""
        x = self.to_model_input(images)
        ids, feats = self._encode(x)
        self.last_features = feats if self.keep_features else None
        return Tokens([i.long() for i in ids], self.layout)

    @torch.no_grad()
    def decode(self, tokens: Tokens) -> torch.Tensor:
        """Token ids → float images B×3×H×W in [0, 1] (the decoder's output mapped from its native range and
        clamped); what every metric compares, after round-half-up to uint8."""
        return self.native_to_unit(self.decode_raw(tokens).float()).clamp_(0.0, 1.0)

    def _encode(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
        raise NotImplementedError

    def decode_raw(self, tokens: Tokens) -> torch.Tensor:
        """Token ids → the decoder's native output, unclamped and in its own range (e.g. [-1, 1]): what parity
        fixtures compare against upstream, before `decode` maps and clamps it. Adapters implement this."""
        raise NotImplementedError

    def check_tokens(self, tokens: Tokens) -> None:
        """Raise a clear error when ids do not fit this tokenizer (wrong layout or out-of-range ids)."""
        if tokens.layout != self.layout:
            raise ValueError(f"tokens have layout {tokens.layout}, {self.info.family} expects {self.layout}")
        for t, g in zip(tokens.ids, self.layout.groups):
            for j, s in enumerate(g.spaces):
                sub = t[..., j] if g.has_sub_axis else t
                v = self.token_spaces[s].vocab_size
                if sub.numel() and (int(sub.min()) < 0 or int(sub.max()) >= v):
                    raise ValueError(f"token ids out of range [0, {v}) for {self.info.family}")

    def extra_repr(self) -> str:
        i = self.info
        return f"family={i.family}, preset={i.preset}, resolution={i.resolution}, tokens={i.tokens_per_image}"
