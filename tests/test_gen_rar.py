"""RAR generator: published sizes, the r = 0 objective is the raster one, the permutation schedule is exact under
resume, orders stay inside groups, cached and uncached sampling agree (both archs), checkpoints record the arch."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tokbench.api import TokenGroup, TokenLayout
from tokbench.gen.archs import build_generator, generator_config
from tokbench.gen.checkpoint import load_generator
from tokbench.gen.sampling import SamplingConfig, generate, sample_noise, sample_seeds
from tokbench.gen.tokenset import write_token_folder
from tokbench.gen.training import RunConfig, train
from tokbench.models.gen_layout import SequenceSpec
from tokbench.models.generator import ARGenerator
from tokbench.models.rar import PAPER_PARAMS, RARGenerator, rar_ratio
from tokbench.testing import fork_ranks

TOK_META = {"tokenizer": {"name": "stand-in", "weights": None, "upstream_config": None, "pretrained": False}}
PYRAMID = TokenLayout((TokenGroup((1, 1), "grid", 0), TokenGroup((2, 2), "grid", 1), TokenGroup((3, 3), "grid", 2)))


def _model(arch: str, spec: SequenceSpec, num_classes: int = 3, **kw):
    torch.manual_seed(0)
    cfg = generator_config({"arch": arch, "size": "tiny", "num_classes": num_classes, "dropout": 0.0,
                            "token_dropout": 0.0, **({"attn_dropout": 0.0} if arch == "rar" else {}), **kw})
    m = build_generator(cfg, spec)
    with torch.no_grad():  # untrained adaLN-Zero / zero heads would make every distribution uniform
        for p in m.parameters():
            p.normal_(0, 0.2)
    return m.eval()


@pytest.mark.parametrize("size", ["rar-b", "rar-l"])
def test_param_counts_match_the_paper(size):
    spec = SequenceSpec.from_layout(TokenLayout.grid(16, 16), [1024])  # MaskGIT-VQ: 256 tokens, 1024 codes
    with torch.device("meta"):
        m = build_generator(generator_config({"arch": "rar", "size": size, "num_classes": 1000}), spec)
    assert isinstance(m, RARGenerator)
    assert abs(m.num_params() / PAPER_PARAMS[size] - 1) < 0.02, m.num_params()


def test_ratio_schedule():
    assert [rar_ratio(s, 100, 0.5, 0.75) for s in (0, 49, 50, 55, 74, 75, 99)] == [1.0, 1.0, 1.0, 0.8, pytest.approx(0.04), 0.0, 0.0]
    assert rar_ratio(0, 10, 0.0, 0.0) == 0.0
    with pytest.raises(ValueError, match="anneal"):
        generator_config({"arch": "rar", "anneal_start": 0.8, "anneal_end": 0.2})
    with pytest.raises(ValueError, match="arch"):
        generator_config({"arch": "maskgit"})


def test_orders_are_seeded_within_group_permutations():
    spec = SequenceSpec.from_layout(PYRAMID, [16])
    m = _model("rar", spec)
    assert m.sample_orders(64, 0.0, 0, 3) is None  # r = 0: raster for all
    o = m.sample_orders(64, 0.5, 7, 3)
    assert torch.equal(o, m.sample_orders(64, 0.5, 7, 3)) and not torch.equal(o, m.sample_orders(64, 0.5, 7, 4))
    assert torch.equal(torch.sort(o, 1).values, torch.arange(14).expand(64, -1))
    g = spec.step_group
    assert torch.equal(g[o], g.expand(64, -1))  # coarse-to-fine order of the scales is kept
    permuted = (o != torch.arange(14)).any(1)
    assert 10 < int(permuted.sum()) < 54  # about half the samples at r = 0.5
    assert bool((m.sample_orders(32, 1.0, 7, 3) != torch.arange(14)).any(1).all())


@pytest.mark.parametrize("layout,vocab", [(TokenLayout.grid(3, 3), [16]), (PYRAMID, [16]),
                                          (TokenLayout.grid(2, 3, num_sub=2), [8, 12])])
def test_zero_ratio_is_the_raster_objective(layout, vocab):
    """The training loss at r = 0 equals −mean log p of the ids under the raster sampler's own step-by-step
    (KV-cached) distributions."""
    spec = SequenceSpec.from_layout(layout, vocab)
    m = _model("rar", spec)
    g = torch.Generator().manual_seed(1)
    vmax = torch.tensor(spec.head_vocab)[spec.step_heads]
    ids = (torch.rand(4, spec.length, spec.num_sub, generator=g) * vmax).long()
    labels = torch.tensor([0, 1, 2, 3])  # 3 = null class
    with torch.no_grad():
        loss = m.loss(ids, labels)
        ident = torch.arange(spec.length).expand(4, -1)
        assert torch.equal(m.loss(ids, labels, orders=ident), loss)
        from tokbench.models.generator import KVCache

        cache, nll = KVCache(len(m.blocks)), []
        for t in range(spec.length):
            h = m(labels, ids[:, t - 1 : t] if t else None, start=t, cache=cache)[:, -1]
            for k, logits in enumerate(m.step_logits(h, t)):
                nll.append(F.cross_entropy(logits, ids[:, t, k], reduction="none"))
        torch.testing.assert_close(loss, torch.stack(nll).mean(), rtol=1e-5, atol=1e-6)
        order = m.sample_orders(4, 1.0, 0, 0)
        assert not torch.allclose(m.loss(ids, labels, orders=order), loss)  # permutation changes the objective


@pytest.mark.parametrize("arch", ["gpt", "rar"])
@pytest.mark.parametrize("layout,vocab", [(PYRAMID, [16]), (TokenLayout.sequence(5), [300]),
                                          (TokenLayout.grid(2, 3, num_sub=2), [8, 12])])
def test_cache_and_no_cache_give_identical_tokens(arch, layout, vocab):
    spec = SequenceSpec.from_layout(layout, vocab)
    m = _model(arch, spec)
    labels = torch.tensor([0, 1, 2, 0, 1])
    noise = sample_noise(sample_seeds(0, range(5)), spec.length, spec.num_sub)
    for s in (SamplingConfig(cfg=3.0, cfg_schedule="power", cfg_power=2.75, temperature=1.02),
              SamplingConfig(cfg=1.5, top_k=5, top_p=0.9, temperature=0.8)):
        cached = generate(m, labels, noise, s)
        s.use_cache = False
        assert torch.equal(cached, generate(m, labels, noise, s))
        assert len(torch.unique(cached.reshape(5, -1), dim=0)) > 1


def _token_folder(tmp_path, layout, vocab, n=6, variants=2):
    spec = SequenceSpec.from_layout(layout, vocab)
    g = np.random.default_rng(0)
    vmax = np.array(spec.head_vocab)[spec.step_heads.numpy()]
    ids = (g.random((n, variants, spec.length, spec.num_sub)) * vmax).astype(np.int64)
    return write_token_folder(tmp_path / "tokens", ids, np.arange(n) % 3, spec, meta=TOK_META,
                              classes=["a", "b", "c"], shard_size=4)


def _rar_config(steps, **model):
    return RunConfig.from_dict({
        "model": {"arch": "rar", "size": "tiny", "class_dropout": 0.3, "dropout": 0.1, "attn_dropout": 0.1, **model},
        "train": {"steps": steps, "batch_size": 4, "lr": 3e-3, "warmup_steps": 2, "ema": 0.9, "log_every": 1,
                  "ckpt_every": 1000}}, name="rar-test")


def test_exact_resume_with_the_permutation_schedule(tmp_path):
    folder = _token_folder(tmp_path, PYRAMID, [16])
    cfg = _rar_config(6, anneal_start=0.0, anneal_end=1.0)  # r = 1, 5/6, …: permuted and raster samples mix
    straight = train(folder, cfg, tmp_path / "a", progress=False)
    train(folder, cfg, tmp_path / "b", stop_at=3, progress=False)
    resumed = train(folder, cfg, tmp_path / "b", progress=False)
    (ma, meta), (mb, _) = load_generator(straight), load_generator(resumed)
    assert isinstance(ma, RARGenerator) and meta.config.arch == "rar" and meta.config.anneal_end == 1.0
    for (k, a), (_, b) in zip(ma.state_dict().items(), mb.state_dict().items()):
        assert torch.equal(a, b), k
    log = [json.loads(x) for x in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [r["rar_ratio"] for r in log] == pytest.approx([1 - s / 6 for s in range(6)])
    # another window really trains differently (the schedule is not ignored)
    other = train(folder, _rar_config(6, anneal_start=0.0, anneal_end=0.0), tmp_path / "c", progress=False)
    assert not torch.equal(load_generator(other)[0].pos_embed, ma.pos_embed)


def test_arch_flag_and_checkpoints_of_both_archs(tmp_path):
    from tokbench.cli import main

    folder = _token_folder(tmp_path, TokenLayout.grid(2, 2), [8])
    cfg = tmp_path / "gen.yaml"
    cfg.write_text("model: {size: tiny, dropout: 0.0, token_dropout: 0.0}\ntrain: {steps: 2, batch_size: 2, ema: 0.0}\n")
    for arch, cls in (("gpt", ARGenerator), ("rar", RARGenerator)):
        out = tmp_path / arch
        assert main(["train-gen", "--tokens", str(folder), "--config", str(cfg), "--arch", arch, "--out", str(out),
                     "--no-progress"]) == 0
        model, meta = load_generator(out / "generator.safetensors")
        assert type(model) is cls and meta.config.arch == arch


def _ddp_rank(rank: int, folder, out) -> None:
    """One rank of a 2-process gloo group training RAR (as torchrun would start it)."""
    train(folder, _rar_config(3, class_dropout=0.0, dropout=0.0, attn_dropout=0.0, anneal_start=0.0, anneal_end=1.0),
          out, device="cpu", progress=False)


def test_ddp_two_ranks_equal_one_process(tmp_path):
    folder = _token_folder(tmp_path, PYRAMID, [16])
    errors = fork_ranks(_ddp_rank, folder, tmp_path / "ddp")
    assert not errors, errors
    one = train(folder, _rar_config(3, class_dropout=0.0, dropout=0.0, attn_dropout=0.0, anneal_start=0.0,
                                    anneal_end=1.0), tmp_path / "one", device="cpu", progress=False)
    (ma, _), (mb, _) = load_generator(one), load_generator(tmp_path / "ddp" / "generator.safetensors")
    for (k, a), (_, b) in zip(ma.state_dict().items(), mb.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=k)
