"""Generator training: a tiny model overfits a tiny token set; resuming is exact; configs build the published sizes."""

import json

import numpy as np
import pytest
import torch

from tokbench.api import TokenGroup, TokenLayout
from tokbench.gen.checkpoint import load_generator
from tokbench.gen.sampling import SamplingConfig, generate, sample_noise, sample_seeds
from tokbench.gen.tokenset import TokenSet, write_token_folder
from tokbench.gen.training import RunConfig, lr_at, train
from tokbench.models.gen_layout import SequenceSpec
from tokbench.models.generator import ARGenerator, GeneratorConfig

TOK_META = {"tokenizer": {"name": "stand-in", "weights": None, "upstream_config": None, "pretrained": False}}


def _token_folder(tmp_path, layout, vocab, n=4, variants=1, seed=0, name="tokens"):
    spec = SequenceSpec.from_layout(layout, vocab)
    g = np.random.default_rng(seed)
    vmax = np.array(spec.head_vocab)[spec.step_heads.numpy()]  # L x K
    ids = (g.random((n, variants, spec.length, spec.num_sub)) * vmax).astype(np.int64)
    labels = np.arange(n) % 4
    return write_token_folder(tmp_path / name, ids, labels, spec, meta=TOK_META, classes=["a", "b", "c", "d"],
                              shard_size=3), ids, labels


def _config(steps, **train):
    return RunConfig.from_dict({
        "model": {"size": "tiny", "class_dropout": 0.0, "token_dropout": 0.0, "dropout": 0.0},
        "train": {"steps": steps, "batch_size": 8, "lr": 3e-3, "warmup_steps": 5, "min_lr": 1e-4, "ema": 0.0,
                  "log_every": 5, "ckpt_every": 1000, **train}}, name="test")


def test_tiny_model_overfits_and_reproduces_training_sequences(tmp_path):
    layout = TokenLayout((TokenGroup((1, 1), "grid", 0), TokenGroup((2, 2), "grid", 1), TokenGroup((3, 3), "grid", 2)))
    folder, ids, labels = _token_folder(tmp_path, layout, [32])
    ckpt = train(folder, _config(100), tmp_path / "run", progress=False)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log[0]["loss"] > 2.0 and log[-1]["loss"] < 0.05 and log[-1]["step"] == 100
    model, meta = load_generator(ckpt)
    assert meta.train["step"] == 100 and meta.config.num_classes == 4
    noise = sample_noise(sample_seeds(0, range(4)), model.seq_len, model.num_sub)
    for s in (SamplingConfig(top_k=1), SamplingConfig(temperature=0.5)):  # greedy, and (sharpened) sampling
        seq = generate(model, torch.tensor(labels), noise, s)
        assert torch.equal(seq, torch.from_numpy(ids[:, 0]))


def test_exact_resume(tmp_path):
    folder, _, _ = _token_folder(tmp_path, TokenLayout.grid(2, 3, num_sub=2), [8, 12], n=7, variants=2)
    cfg = _config(6, ema=0.9, batch_size=4)
    cfg.model.update(dropout=0.1, token_dropout=0.1, class_dropout=0.5)  # randomness must be replayed exactly
    straight = train(folder, cfg, tmp_path / "a", progress=False)
    train(folder, cfg, tmp_path / "b", stop_at=3, progress=False)
    assert torch.load(tmp_path / "b" / "state.pt", weights_only=True)["step"] == 3
    resumed = train(folder, cfg, tmp_path / "b", progress=False)
    (ma, _), (mb, _) = load_generator(straight), load_generator(resumed)
    for (k, a), (_, b) in zip(ma.state_dict().items(), mb.state_dict().items()):
        assert torch.equal(a, b), k
    sa = torch.load(tmp_path / "a" / "state.pt", weights_only=True)
    sb = torch.load(tmp_path / "b" / "state.pt", weights_only=True)
    for k in sa["model"]:
        assert torch.equal(sa["model"][k], sb["model"][k]), k
    la = (tmp_path / "a" / "log.jsonl").read_text().splitlines()
    lb = (tmp_path / "b" / "log.jsonl").read_text().splitlines()
    steps_b = [json.loads(x)["step"] for x in lb]
    assert steps_b == sorted(set(steps_b)) and steps_b[-1] == 6  # no duplicate lines after the resume
    assert json.loads(la[0]) ["step"] == 5 and 3 in steps_b
    other = _config(6, lr=1e-3)
    with pytest.raises(ValueError, match="another config"):
        train(folder, other, tmp_path / "b", progress=False)


def test_token_folder_reading(tmp_path):
    folder, ids, labels = _token_folder(tmp_path, TokenLayout.sequence(5), [300], n=8, variants=2)
    ts = TokenSet(folder)
    assert len(ts) == 8 and ts.variants == 2 and ts.num_classes == 4 and len(ts.ids) == 3
    got, lab = ts.get(np.array([7, 0, 3]), np.array([1, 0, 1]))
    assert torch.equal(got, torch.from_numpy(ids[[7, 0, 3], [1, 0, 1]]))
    assert lab.tolist() == labels[[7, 0, 3]].tolist()
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps({**meta, "complete": False}))
    with pytest.raises(ValueError, match="incomplete"):
        TokenSet(folder)
    with pytest.raises(FileNotFoundError, match="pretokenize"):
        TokenSet(tmp_path / "nothing")


def test_lr_schedule_and_config_errors():
    tc = _config(100, warmup_steps=10, lr=1.0, min_lr=0.0).train
    assert lr_at(0, 100, tc) == pytest.approx(0.1) and lr_at(9, 100, tc) == pytest.approx(1.0)
    assert lr_at(10, 100, tc) == pytest.approx(1.0) and lr_at(55, 100, tc) == pytest.approx(0.5)
    assert lr_at(100, 100, tc) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="unknown train config keys"):
        RunConfig.from_dict({"train": {"stepz": 3}})
    with pytest.raises(ValueError, match="unknown generator size"):
        GeneratorConfig.from_dict({"size": "huge"})


@pytest.mark.parametrize("name,params", [("gpt-b", 111e6), ("gpt-l", 343e6)])
def test_shipped_configs_build_llamagen_sizes(name, params):
    from tokbench.testing import project_root

    cfg = RunConfig.load(project_root() / "benchmarks" / "experiments" / "gen" / f"{name}.yaml")
    spec = SequenceSpec.from_layout(TokenLayout.grid(16, 16), [16384])
    with torch.device("meta"):
        m = ARGenerator(GeneratorConfig.from_dict({**cfg.model, "num_classes": 1000}), spec)
    assert abs(m.num_params() - params) / params < 0.02, m.num_params()
    SamplingConfig.from_dict(cfg.sampling)
    RunConfig.load(project_root() / "benchmarks" / "experiments" / "gen" / "tiny.yaml")


def test_augmentations():
    from tokbench.gen.tokenset import augment, source_resolution

    x = torch.arange(2 * 3 * 11 * 11, dtype=torch.int64).reshape(2, 3, 11, 11).to(torch.uint8)
    assert augment(x, "none", 11).shape == (2, 1, 3, 11, 11)
    f = augment(x, "flip", 11)
    assert torch.equal(f[:, 0], x) and torch.equal(f[:, 1], x.flip(-1))
    assert source_resolution("tencrop", 256) == 281 and source_resolution("flip", 256) == 256
    t = augment(x, "tencrop", 10)  # LlamaGen: centre + 4 corners, then the same mirrored
    assert t.shape == (2, 10, 3, 10, 10)
    assert torch.equal(t[:, 1], x[..., :10, :10]) and torch.equal(t[:, 4], x[..., 1:, 1:])
    assert torch.equal(t[:, 5:], t[:, :5].flip(-1))
    with pytest.raises(ValueError, match="unknown augmentation"):
        augment(x, "rotate", 10)
