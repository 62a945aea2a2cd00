"""Sampler invariants: the KV cache changes nothing, CFG 1 is conditional sampling, top-k 1 is greedy, samples
depend only on their seed."""

import math

import pytest
import torch

from tokbench.api import TokenGroup, TokenLayout
from tokbench.gen.sampling import SamplingConfig, cfg_scale, filter_logits, generate, pick, sample_noise, sample_seeds
from tokbench.models.gen_layout import SequenceSpec
from tokbench.models.generator import ARGenerator, GeneratorConfig

LAYOUTS = {
    "grid": (TokenLayout.grid(4, 4), [32]),
    "multiscale": (TokenLayout(tuple(TokenGroup((k, k), "grid", i) for i, k in enumerate([1, 2, 3]))), [24]),
    "sub_axis": (TokenLayout.grid(3, 3, num_sub=2), [16, 20]),
    "sequence": (TokenLayout.sequence(10), [16]),
}


def _model(layout, vocab, num_classes=4, seed=0):
    torch.manual_seed(seed)
    cfg = GeneratorConfig.from_dict(dict(size="tiny", num_classes=num_classes, dropout=0.0, token_dropout=0.0))
    m = ARGenerator(cfg, SequenceSpec.from_layout(layout, vocab)).eval()
    for h in m.heads:  # the zero-initialised heads would make every distribution uniform
        torch.nn.init.normal_(h.weight, std=1.0)
    return m


def _noise(m, n, seed=0):
    return sample_noise(sample_seeds(seed, range(n)), m.seq_len, m.num_sub)


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_kv_cache_gives_the_same_tokens(name):
    m = _model(*LAYOUTS[name])
    labels = torch.tensor([0, 3, 1, 2, 2])
    for s in (SamplingConfig(cfg=3.0, use_cache=True), SamplingConfig(cfg=1.5, cfg_schedule="power", cfg_power=1.5,
                                                                     temperature=1.2, top_p=0.9, use_cache=True)):
        a = generate(m, labels, _noise(m, 5), s)
        s.use_cache = False
        b = generate(m, labels, _noise(m, 5), s)
        assert torch.equal(a, b)
        assert len(torch.unique(a)) > 3  # real sampling, not a constant


def test_cached_hidden_states_match_full_forward():
    m = _model(*LAYOUTS["multiscale"])
    labels = torch.tensor([1, 2])
    seq = generate(m, labels, _noise(m, 2), SamplingConfig())
    from tokbench.models.generator import KVCache

    full = m(labels, seq[:, :-1])
    cache = KVCache(len(m.blocks))
    parts = [m(labels, None, 0, cache)] + [m(labels, seq[:, t - 1 : t], t, cache) for t in range(1, m.seq_len)]
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=1e-5)
    cache = KVCache(len(m.blocks))  # a prefix chunk after a cached prefix
    a = m(labels, seq[:, :4], 0, cache)
    b = m(labels, seq[:, 4:9], 5, cache)
    torch.testing.assert_close(torch.cat([a, b], 1), full[:, :10], atol=1e-5, rtol=1e-5)


def test_cfg_scale_one_is_conditional_sampling():
    m = _model(*LAYOUTS["grid"])
    labels = torch.tensor([0, 1, 2, 3])
    plain = generate(m, labels, _noise(m, 4), SamplingConfig())
    assert torch.equal(generate(m, labels, _noise(m, 4), SamplingConfig(cfg=1.0)), plain)
    # power schedule with w = 1 is 1 at every step as well
    assert torch.equal(generate(m, labels, _noise(m, 4), SamplingConfig(cfg=1.0, cfg_schedule="power", cfg_power=2.0)), plain)
    # the doubled (cond, uncond) batch gives the conditional logits in its first half
    h2 = m(torch.cat([labels, torch.full_like(labels, m.null_class)]), plain.repeat(2, 1, 1)[:, :-1])
    torch.testing.assert_close(h2[:4], m(labels, plain[:, :-1]), atol=1e-5, rtol=1e-5)
    # guidance changes something at w > 1
    assert not torch.equal(generate(m, labels, _noise(m, 4), SamplingConfig(cfg=4.0)), plain)


def test_top_k_one_is_greedy_and_deterministic():
    m = _model(*LAYOUTS["sub_axis"])
    labels = torch.tensor([0, 1, 2])
    a = generate(m, labels, _noise(m, 3, seed=1), SamplingConfig(top_k=1))
    b = generate(m, labels, _noise(m, 3, seed=2), SamplingConfig(top_k=1, temperature=1.7))
    c = generate(m, labels, _noise(m, 3, seed=3), SamplingConfig(temperature=0.0))
    assert torch.equal(a, b) and torch.equal(a, c)
    h = m(labels, a[:, :-1])  # every token is the argmax given its prefix
    for t in range(m.seq_len):
        for k, logits in enumerate(m.step_logits(h[:, t], t)):
            assert torch.equal(logits.argmax(-1), a[:, t, k])
    assert not torch.equal(generate(m, labels, _noise(m, 3, seed=1), SamplingConfig()), a)


def test_samples_do_not_depend_on_batching():
    m = _model(*LAYOUTS["grid"])
    labels = torch.tensor([3, 0, 1, 2])
    noise = _noise(m, 4)
    whole = generate(m, labels, noise, SamplingConfig(cfg=2.0))
    for i in range(4):
        assert torch.equal(generate(m, labels[i : i + 1], noise[i : i + 1], SamplingConfig(cfg=2.0)), whole[i : i + 1])


def test_unconditional_model_ignores_labels():
    m = _model(*LAYOUTS["sequence"], num_classes=0)
    noise = _noise(m, 2)
    a = generate(m, torch.tensor([0, 0]), noise, SamplingConfig(cfg=3.0))
    assert torch.equal(a, generate(m, torch.tensor([5, 9]), noise, SamplingConfig()))


def test_pick_and_filters():
    logits = torch.log(torch.tensor([[0.1, 0.2, 0.3, 0.4]]))
    # inverse CDF: u in the k-th probability interval picks id k
    assert [int(pick(logits, torch.tensor([u]))) for u in (0.05, 0.15, 0.35, 0.65, 0.999)] == [0, 1, 2, 3, 3]
    assert torch.isinf(filter_logits(logits, top_k=2)[0, :2]).all() and torch.isfinite(filter_logits(logits, top_k=2)[0, 2:]).all()
    kept = torch.isfinite(filter_logits(logits, top_p=0.65))[0].tolist()
    assert kept == [False, False, True, True]  # 0.4 + 0.3 ≥ 0.65
    assert int(pick(logits, torch.tensor([0.0]), top_p=0.65)) == 2  # masked ids are never picked
    assert int(pick(logits, torch.tensor([0.999]), top_k=1)) == 3


def test_cfg_schedules():
    assert cfg_scale(4.0, 0, 256) == cfg_scale(4.0, 100, 256) == 4.0
    assert cfg_scale(4.0, 0, 256, "power", 2.75) == 1.0  # RAR: the first token is unguided
    assert cfg_scale(4.0, 128, 256, "power", 1.0) == pytest.approx(1 + 3 * 0.5 * (1 - math.cos(math.pi / 2)))
    assert cfg_scale(4.0, 7, 256, "power", 0.0) == pytest.approx(4.0)  # p = 0: constant w
    with pytest.raises(ValueError, match="cfg_schedule"):
        SamplingConfig(cfg_schedule="linear")
    m = _model(*LAYOUTS["grid"])
    with pytest.raises(ValueError, match="class labels"):
        generate(m, torch.tensor([4]), _noise(m, 1), SamplingConfig())
