"""Every token layout maps to the generator's sequence and back without loss."""

import pytest
import torch

from tokbench.api import TokenGroup, TokenLayout, Tokens
from tokbench.models.gen_layout import SequenceSpec

LAYOUTS = {
    "grid": (TokenLayout.grid(4, 3), [16]),
    "sequence": (TokenLayout.sequence(7), [10]),
    "multiscale": (TokenLayout(tuple(TokenGroup((k, k), "grid", i) for i, k in enumerate([1, 2, 4]))), [12]),
    "sub_axis": (TokenLayout.grid(3, 2, num_sub=3), [5, 6, 7]),
    "branches": (TokenLayout(tuple(TokenGroup((k, k), "grid", b * 10 + i, (b,)) for b in range(2)
                                   for i, k in enumerate([1, 2]))), [9, 11]),
}


def _random_tokens(layout, vocab, b=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = []
    for grp in layout.groups:
        if grp.has_sub_axis:
            t = torch.stack([torch.randint(0, vocab[s], (b, *grp.positions), generator=g) for s in grp.spaces], -1)
        else:
            t = torch.randint(0, vocab[grp.spaces[0]], (b, *grp.shape), generator=g)
        ids.append(t)
    return Tokens(ids, layout)


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_round_trip(name):
    layout, vocab = LAYOUTS[name]
    spec = SequenceSpec.from_layout(layout, vocab)
    tokens = _random_tokens(layout, vocab)
    seq = spec.to_sequence(tokens)
    assert seq.shape == (3, spec.length, spec.num_sub)
    assert spec.length * spec.num_sub == layout.tokens_per_image
    spec.check(seq)
    back = spec.to_tokens(seq)
    assert back.layout == layout
    for a, b in zip(back.as_list(), tokens.as_list()):
        assert torch.equal(a, b)
    assert torch.equal(spec.flat_to_sequence(tokens.flat()), seq)
    again = SequenceSpec.from_dict(spec.to_dict())  # what checkpoints store
    assert torch.equal(again.step_heads, spec.step_heads) and torch.equal(again.positions, spec.positions)


def test_raster_and_coarse_to_fine_order():
    layout, vocab = LAYOUTS["multiscale"]
    spec = SequenceSpec.from_layout(layout, vocab)
    tokens = _random_tokens(layout, vocab)
    seq = spec.to_sequence(tokens)[..., 0]
    assert torch.equal(seq[:, 0], tokens.ids[0][:, 0, 0])  # the 1x1 scale first
    assert torch.equal(seq[:, 1:5], tokens.ids[1].reshape(3, 4))  # then the 2x2 scale, raster order
    assert spec.rope_dims == 2 and spec.num_groups == 3
    # scales line up on the finest grid: the 1x1 token sits at the centre of the 4x4 grid
    assert spec.positions[0].tolist() == [1.5, 1.5]


def test_heads_per_sub_codebook_and_branch():
    spec = SequenceSpec.from_layout(*LAYOUTS["sub_axis"])
    assert spec.head_keys == ((0, 0), (1, 1), (2, 2)) and spec.head_vocab == (5, 6, 7)
    spec = SequenceSpec.from_layout(*LAYOUTS["branches"])
    assert spec.head_keys == ((0, 0), (0, 1)) and spec.head_vocab == (9, 11)
    assert spec.step_heads[:5, 0].tolist() == [0] * 5 and spec.step_heads[5:, 0].tolist() == [1] * 5
    assert SequenceSpec.from_layout(*LAYOUTS["sequence"]).rope_dims == 1


def test_bad_input_errors():
    layout, vocab = LAYOUTS["grid"]
    spec = SequenceSpec.from_layout(layout, vocab)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        spec.check(torch.full((1, spec.length, 1), 16))
    with pytest.raises(ValueError, match="expected B x 12 x 1"):
        spec.to_tokens(torch.zeros(1, 11, dtype=torch.long))
    mixed = TokenLayout((TokenGroup((2, 2)), TokenGroup((2, 2, 2), spaces=(0, 1))))
    with pytest.raises(ValueError, match=r"cannot model layout \[grid \(2, 2\) spaces \(0,\), grid \(2, 2, 2\) "
                                         r"spaces \(0, 1\)\]: .*sub-codebook counts"):
        SequenceSpec.from_layout(mixed, [4, 4])
