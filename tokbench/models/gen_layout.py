"""How any tokbench `TokenLayout` becomes one autoregressive sequence, and back.

A *step* is one position of the sequence. Grids are read in raster order, 1-D sequences as they are, multi-scale
lists group after group (coarse to fine, the layout's own order). A trailing sub-codebook axis does not lengthen the
sequence: each step carries K ids, one per sub-codebook, predicted by K heads from the same hidden state.

Every step also gets a *head key* per slot: the pair (slot k, token space s). A model keeps one embedding table and one
output head per key, so ImageFolder-style layouts (branch groups with different codebooks) and UniTok-style layouts
(8 sub-codebooks) use the right vocabulary at every step, while plain layouts have a single key.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..api import TokenGroup, TokenLayout, TokenSpace, Tokens


@dataclass(frozen=True)
class SequenceSpec:
    """The sequence view of one layout (everything the generator needs to know about a tokenizer)."""

    layout: TokenLayout
    vocab_sizes: tuple[int, ...]  # one per token space of the tokenizer
    num_sub: int  # K: ids per step
    head_keys: tuple[tuple[int, int], ...]  # distinct (slot, space) pairs; index = head / embedding table number
    step_heads: torch.Tensor  # L x K long: head index of each slot of each step
    step_group: torch.Tensor  # L long: group index of each step
    positions: torch.Tensor  # L x P float: RoPE coordinates (P = 2 for all-grid layouts, else 1)

    @property
    def length(self) -> int:
        return int(self.step_group.shape[0])

    @property
    def num_groups(self) -> int:
        return len(self.layout.groups)

    @property
    def rope_dims(self) -> int:
        return int(self.positions.shape[1])

    @property
    def head_vocab(self) -> tuple[int, ...]:
        return tuple(self.vocab_sizes[s] for _, s in self.head_keys)

    # ------------------------------------------------------------------------------------------------------------
    @classmethod
    def from_layout(cls, layout: TokenLayout, vocab_sizes: list[int] | tuple[int, ...]) -> "SequenceSpec":
        groups = layout.groups
        ks = {len(g.spaces) for g in groups}
        if len(ks) != 1:
            desc = ", ".join(f"{g.kind} {tuple(g.shape)} spaces {tuple(g.spaces)}" for g in groups)
            raise ValueError(f"the generators (gpt, rar) cannot model layout [{desc}]: its groups have different "
                             f"sub-codebook counts {sorted(ks)}, and a step must carry the same number of ids in "
                             "every group")
        num_sub = ks.pop()
        for g in groups:
            for s in g.spaces:
                if not 0 <= s < len(vocab_sizes):
                    raise ValueError(f"group {g} names token space {s}, the tokenizer has {len(vocab_sizes)}")
        keys: list[tuple[int, int]] = []
        for g in groups:
            for k, s in enumerate(g.spaces):
                if (k, s) not in keys:
                    keys.append((k, s))
        all_grid = all(g.kind == "grid" and len(g.positions) == 2 for g in groups)
        hmax = max((g.positions[0] for g in groups), default=1) if all_grid else 1
        wmax = max((g.positions[1] for g in groups), default=1) if all_grid else 1
        heads, gidx, pos = [], [], []
        offset = 0
        for gi, g in enumerate(groups):
            n = 1
            for p in g.positions:
                n *= p
            heads.append(torch.tensor([keys.index((k, s)) for k, s in enumerate(g.spaces)]).expand(n, num_sub))
            gidx.append(torch.full((n,), gi, dtype=torch.long))
            if all_grid:
                h, w = g.positions
                # coordinates on the finest grid, so that scales of a pyramid line up spatially
                r = (torch.arange(h, dtype=torch.float64) + 0.5) * (hmax / h) - 0.5
                c = (torch.arange(w, dtype=torch.float64) + 0.5) * (wmax / w) - 0.5
                pos.append(torch.stack(torch.meshgrid(r, c, indexing="ij"), -1).reshape(n, 2))
            else:
                pos.append(torch.arange(offset, offset + n, dtype=torch.float64)[:, None])
            offset += n
        return cls(layout=layout, vocab_sizes=tuple(int(v) for v in vocab_sizes), num_sub=num_sub,
                   head_keys=tuple(keys), step_heads=torch.cat(heads).long().contiguous(),
                   step_group=torch.cat(gidx), positions=torch.cat(pos).float())

    @classmethod
    def from_tokenizer(cls, tokenizer) -> "SequenceSpec":
        return cls.from_layout(tokenizer.layout, [sp.vocab_size for sp in tokenizer.token_spaces])

    # ------------------------------------------------------------------------------------------------------------
    def to_sequence(self, tokens: Tokens | list[torch.Tensor]) -> torch.Tensor:
        """Tokens → B x L x K long ids (K = ids per step)."""
        ids = tokens.as_list() if isinstance(tokens, Tokens) else list(tokens)
        if len(ids) != self.num_groups:
            raise ValueError(f"{len(ids)} id tensors for a layout of {self.num_groups} groups")
        out = []
        for t, g in zip(ids, self.layout.groups):
            if tuple(t.shape[1:]) != g.shape:
                raise ValueError(f"id tensor of shape {tuple(t.shape)} does not fit group shape B x {g.shape}")
            out.append(t.reshape(t.shape[0], -1, self.num_sub))
        return torch.cat(out, 1).long()

    def to_tokens(self, seq: torch.Tensor) -> Tokens:
        """B x L x K (or B x L when K = 1) ids → `Tokens` in the layout."""
        if seq.ndim == 2:
            seq = seq[..., None]
        if seq.shape[1] != self.length or seq.shape[2] != self.num_sub:
            raise ValueError(f"sequence of shape {tuple(seq.shape)}, expected B x {self.length} x {self.num_sub}")
        out, start = [], 0
        for g in self.layout.groups:
            n = g.numel // self.num_sub
            out.append(seq[:, start : start + n].reshape(seq.shape[0], *g.shape))
            start += n
        return Tokens(out, self.layout)

    def flat_to_sequence(self, flat: torch.Tensor) -> torch.Tensor:
        """`Tokens.flat()` rows (B x tokens_per_image) → B x L x K; the flat order is already step-major."""
        if flat.shape[1] != self.length * self.num_sub:
            raise ValueError(f"flat ids have {flat.shape[1]} tokens per image, layout has {self.length * self.num_sub}")
        return flat.reshape(flat.shape[0], self.length, self.num_sub).long()

    def check(self, seq: torch.Tensor) -> None:
        """Clear error when ids fall outside their vocabularies."""
        vocab = torch.tensor(self.head_vocab)[self.step_heads.to(torch.long)]  # L x K
        if seq.numel() and (bool((seq < 0).any()) or bool((seq >= vocab.to(seq.device)).any())):
            raise ValueError("token ids fall outside the vocabulary of their token space")

    def to_dict(self) -> dict:
        return {"layout": self.layout.to_dict(), "vocab_sizes": list(self.vocab_sizes)}

    @classmethod
    def from_dict(cls, d: dict) -> "SequenceSpec":
        return cls.from_layout(layout_from_dict(d["layout"]), d["vocab_sizes"])


def layout_from_dict(d: dict) -> TokenLayout:
    return TokenLayout(tuple(TokenGroup(tuple(g["shape"]), g.get("kind", "grid"), int(g.get("scale", 0)),
                                        tuple(g.get("spaces", (0,)))) for g in d["groups"]))


def vocab_sizes_of(spaces: list[TokenSpace]) -> list[int]:
    return [int(s.vocab_size) for s in spaces]
