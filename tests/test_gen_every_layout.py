"""Every token layout through both generators on CPU: each parity-fixture tokenizer (grids, 1-D TiTok, multi-scale
VAR and ImageFolder branches, UniTok sub-codebooks, LFQ 2^k codes, Cosmos FSQ) goes pretokenize → train-gen (GPT and
RAR, 2 steps, tiny dims) → sample (KV cache on and off: identical tokens) → decode → gFID on tiny data (a moments
extractor stands in for Inception; FID exactness is tested elsewhere)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from tokbench.cli import main
from tokbench.gen.checkpoint import load_generator
from tokbench.gen.gfid import gfid
from tokbench.gen.sampling import SamplingConfig, generate, sample_noise, sample_seeds
from tokbench.gen.training import RunConfig, train
from tokbench.testing import fixture_dir

# fixture folder → tokbench family (16 tokenizers, variants included)
FAMILIES = {
    "cosmos_di": "cosmos_di", "ibq": "ibq", "llamagen_vq": "llamagen_vq", "mage": "mage", "maskbit/lfq": "maskbit",
    "maskbit/vqgan_plus": "vqgan_plus", "maskgit_vq": "maskgit_vq", "open_magvit2": "open_magvit2",
    "taming_vqgan": "taming_vqgan", "titok": "titok", "titok_vq8k": "titok_vq8k", "unitok": "unitok", "var": "var",
    "vqgan_lc": "vqgan_lc", "xqgan/imagefolder": "imagefolder", "xqgan/single": "xqgan",
}
NUM = 4  # images in the data set and samples per gFID


class _Moments:
    """A deterministic stand-in for Inception: 6 colour moments per image."""

    protocol = {"extractor": "layout-test-moments"}

    def __call__(self, images):
        x = images.double() / 255.0
        return torch.cat([x.mean((2, 3)), x.std((2, 3))], 1)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("layouts")
    g = np.random.default_rng(0)
    for c in range(2):
        (root / "images" / f"n0{c}").mkdir(parents=True)
        for i in range(NUM // 2):
            img = g.integers(0, 256, (1, 1, 3)) * np.linspace(0.3, 1, 128)[:, None, None] + g.integers(0, 40, (128, 128, 3))
            Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(root / "images" / f"n0{c}" / f"{i}.png")
    return root


def _gen_config(arch: str) -> RunConfig:
    model = {"arch": arch, "size": "tiny", "dim": 32, "depth": 1, "heads": 2, "class_dropout": 0.0, "dropout": 0.0,
             "token_dropout": 0.0}
    if arch == "gpt":
        model["multiple_of"] = 16
    else:
        model.update(attn_dropout=0.0, anneal_start=0.0, anneal_end=1.0)  # permuted orders during these steps
    return RunConfig.from_dict({"model": model, "train": {"steps": 2, "batch_size": 4, "lr": 1e-3, "ema": 0.0,
                                                         "log_every": 1, "ckpt_every": 1000}}, name=f"tiny-{arch}")


@pytest.mark.parametrize("fixture", list(FAMILIES))
def test_layout_through_both_generators(fixture, data, tmp_path, monkeypatch):
    torch.set_num_threads(1)
    monkeypatch.setenv("TOKBENCH_CACHE", str(tmp_path / "cache"))
    d = fixture_dir(*fixture.split("/"))
    (tmp_path / "tok.json").write_text((d / "config.json").read_text())
    tokens = tmp_path / "tokens"
    assert main(["pretokenize", "--tokenizer", FAMILIES[fixture], "--tokenizer-config", str(tmp_path / "tok.json"),
                 "--weights", str(d / "weights.safetensors"), "--data", str(data / "images"), "--out", str(tokens),
                 "--batch-size", str(NUM), "--device", "cpu", "--no-progress"]) == 0
    meta = json.loads((tokens / "meta.json").read_text())
    assert meta["num_images"] == NUM and meta["complete"]
    tok = None
    for arch in ("gpt", "rar"):
        ckpt = train(tokens, _gen_config(arch), tmp_path / arch, device="cpu", progress=False)
        model, gmeta = load_generator(ckpt)
        assert gmeta.config.arch == arch
        with torch.no_grad():  # 2 steps barely move the weights: perturb them so that sampling is not near-uniform
            g = torch.Generator().manual_seed(1)
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=g) * 0.3)
        tok = tok or gmeta.tokenizer.load("cpu")
        assert tok.layout == gmeta.spec.layout
        labels = torch.tensor([0, 1, 0])
        noise = sample_noise(sample_seeds(0, range(3)), model.seq_len, model.num_sub)
        s = SamplingConfig(cfg=2.0, cfg_schedule="power", cfg_power=1.5, top_k=50, top_p=0.95)
        cached = generate(model, labels, noise, s)
        s.use_cache = False
        assert torch.equal(cached, generate(model, labels, noise, s)), f"{fixture} {arch}: cache changes the tokens"
        gmeta.spec.check(cached)
        images = tok.decode(gmeta.spec.to_tokens(cached))
        assert images.shape == (3, 3, tok.info.resolution, tok.info.resolution) and torch.isfinite(images).all()
        ref = _Moments()(torch.from_numpy(np.stack([np.asarray(Image.open(p)) for p in sorted((data / "images").rglob("*.png"))])).permute(0, 3, 1, 2))
        s.use_cache = True
        value, proto = gfid(model, tok, (ref.mean(0).numpy(), np.cov(ref.numpy(), rowvar=False)), _Moments(),
                            settings=s, num=NUM, batch_size=NUM, progress=False)
        assert np.isfinite(value) and value >= 0 and proto["generator"]["arch"] == arch
