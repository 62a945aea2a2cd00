"""End to end on CPU: pretokenize an image folder with the pixel-VQ baseline, train a tiny generator, sample, gFID."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from tokbench.cli import main

RES = 32


class _TinyExtractor:
    """A deterministic stand-in for Inception: 6 colour moments per image (uint8 → float64)."""

    dim = 6
    protocol = {"extractor": "gen-test-moments"}

    def __call__(self, images):
        x = images.double() / 255.0
        return torch.cat([x.mean((2, 3)), x.std((2, 3))], 1)

    def to(self, device):
        return self


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from tokbench.fid import register_extractor

    register_extractor("gen-test-moments", lambda weights=None, device="cpu", **kw: _TinyExtractor())
    root = tmp_path_factory.mktemp("gencli")
    data = root / "images"
    g = np.random.default_rng(0)
    for c, name in enumerate(["n01", "n02"]):
        (data / name).mkdir(parents=True)
        for i in range(3):  # smooth two-colour images, different per class
            yy, xx = np.mgrid[0:RES, 0:RES] / RES
            base = np.array([200, 40, 40]) if c == 0 else np.array([40, 60, 200])
            img = base[None, None] * (0.5 + 0.5 * yy[..., None]) + 30 * g.random((RES, RES, 3)) * xx[..., None]
            Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(data / name / f"{i}.png")
    cfg = {"constructor_kwargs": {"patch": 8, "codebook_size": 16, "resolution": RES,
                                  "fit": {"data": str(data), "num_patches": 500, "iters": 3, "seed": 0}}}
    (root / "tok.json").write_text(json.dumps(cfg))
    return root, data


def test_pretokenize_train_sample_gfid(setup, monkeypatch):
    root, data = setup
    monkeypatch.setenv("TOKBENCH_CACHE", str(root / "cache"))
    tokdir = root / "tokens"
    args = ["pretokenize", "--tokenizer", "pixel_vq", "--tokenizer-config", str(root / "tok.json"), "--data", str(data),
            "--aug", "flip", "--out", str(tokdir), "--shard-size", "4", "--batch-size", "2", "--no-progress"]
    assert main(args) == 0
    meta = json.loads((tokdir / "meta.json").read_text())
    assert meta["complete"] and meta["classes"] == ["n01", "n02"] and meta["num_images"] == 6
    ids = np.load(tokdir / "shard_00000.ids.npy")
    assert ids.shape == (4, 2, 16, 1)
    assert np.load(tokdir / "shard_00001.labels.npy").tolist() == [1, 1]

    # the stored ids are the tokenizer's, the second variant is the mirrored image
    from tokbench.data import open_dataset
    from tokbench.registry import load_tokenizer

    tok = load_tokenizer("pixel_vq", upstream_config=json.loads((root / "tok.json").read_text()))
    img = open_dataset(str(data), RES)[0][None]
    assert np.array_equal(tok.encode(img).flat()[0].numpy(), ids[0, 0, :, 0])
    assert np.array_equal(tok.encode(img.flip(-1)).flat()[0].numpy(), ids[0, 1, :, 0])

    # resumable: a lost shard is redone, the others are kept
    (tokdir / "shard_00001.ids.npy").unlink()
    assert main(args) == 0
    assert np.array_equal(np.load(tokdir / "shard_00000.ids.npy"), ids)
    assert json.loads((tokdir / "meta.json").read_text())["complete"]
    with pytest.raises(SystemExit):
        main([a if a != "flip" else "bogus" for a in args])
    assert main([a if a != "flip" else "none" for a in args]) == 1  # different settings into the same folder

    cfg = root / "gen.yaml"
    cfg.write_text("model: {size: tiny, dropout: 0.0, token_dropout: 0.0}\n"
                   "train: {steps: 4, batch_size: 4, lr: 1.0e-3, log_every: 2, ckpt_every: 2}\n"
                   "sampling: {cfg: 1.5, temperature: 1.0}\n")
    run = root / "run"
    assert main(["train-gen", "--tokens", str(tokdir), "--config", str(cfg), "--out", str(run), "--no-progress"]) == 0
    ckpt = run / "generator.safetensors"
    assert len((run / "log.jsonl").read_text().splitlines()) == 2

    out = root / "sample"
    assert main(["sample", "--generator", str(ckpt), "--num", "4", "--reference", str(data), "--extractor",
                 "gen-test-moments", "--out", str(out), "--save-png", "--batch-size", "3", "--cfg", "2.0",
                 "--cfg-schedule", "power", "--cfg-power", "1.5", "--top-k", "8", "--no-progress"]) == 0
    rec = json.loads((out / "gfid.json").read_text())
    assert np.isfinite(rec["value"]) and rec["value"] >= 0
    p = rec["protocol"]
    assert p["sampling"] == {"cfg": 2.0, "cfg_schedule": "power", "cfg_power": 1.5, "temperature": 1.0, "top_k": 8,
                             "top_p": 1.0}
    assert p["num_samples"] == 4 and p["per_class"] == 2 and p["generator"]["checkpoint"]["sha256"]
    assert p["reference"]["kind"] == "dataset" and p["extractor"]["extractor"] == "gen-test-moments"
    pngs = sorted(x.name for x in (out / "images").iterdir())
    assert pngs == ["000000_c0000.png", "000001_c0000.png", "000002_c0001.png", "000003_c0001.png"]

    # the library entry point gives the same number for another batch size (per-sample seeds), and the .npz path works
    from tokbench.fid import StatsAccumulator, save_stats
    from tokbench.gen import SamplingConfig, gfid, load_generator

    model, meta = load_generator(ckpt)
    s = SamplingConfig(cfg=2.0, cfg_schedule="power", cfg_power=1.5, top_k=8)
    ds = open_dataset(str(data), RES)
    acc = StatsAccumulator(6)
    acc.update(_TinyExtractor()(torch.stack([ds[i] for i in range(len(ds))])))
    save_stats(root / "ref.npz", acc, {"note": "test"})
    v1, _ = gfid(model, tok, acc, _TinyExtractor(), settings=s, num=4, seed=0, batch_size=1, progress=False)
    v2, p2 = gfid(model, tok, str(root / "ref.npz"), _TinyExtractor(), settings=s, num=4, seed=0, batch_size=4,
                  progress=False)
    assert v1 == pytest.approx(rec["value"], rel=1e-6, abs=1e-9) and v2 == pytest.approx(v1, rel=1e-6, abs=1e-9)
    assert p2["reference"]["kind"] == "npz" and p2["reference"]["stats_file_sha256"]
    v3, _ = gfid(model, tok, acc, _TinyExtractor(), settings=s, num=4, seed=1, batch_size=4, progress=False)
    assert v3 != v1  # another seed, other samples


def test_sample_errors(setup, tmp_path):
    root, _ = setup
    bad = tmp_path / "x.safetensors"
    from tokbench.weights import save_safetensors

    save_safetensors({"a": torch.zeros(1)}, bad, {"tokbench.kind": "something-else"})
    assert main(["sample", "--generator", str(bad), "--num", "2", "--save-png", "--out", str(tmp_path)]) == 1
    assert main(["sample", "--generator", str(bad), "--num", "2"]) == 1  # nothing to do
    assert main(["train-gen", "--tokens", str(tmp_path / "none"), "--config", str(tmp_path / "none.yaml")]) == 1
