"""The CLI: version, list, fid between folders and statistics files, stats."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from tokbench import __version__
from tokbench.cli import main as cli
from tokbench.fid import FeatureExtractor, register_extractor


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        cli(["--version"])
    assert e.value.code == 0 and __version__ in capsys.readouterr().out


def test_list_shows_presets_and_licences(capsys):
    assert cli(["list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["pixel-vq-p4-k256"]["local"] is True and rows["pixel-vq-p4-k256"]["vocab"] == 256
    assert cli(["list"]) == 0
    out = capsys.readouterr().out
    assert "pixel-vq-p8-k1024" in out and "could not be imported" not in out


class _PixelMeans(FeatureExtractor):
    """A cheap deterministic stand-in (Inception exactness is tested in test_fid_engine.py)."""

    dim = 48
    protocol = {"extractor": "pixel-means-cli-test", "weights_sha256": "none", "random_weights": False}

    def __call__(self, images):
        return torch.nn.functional.adaptive_avg_pool2d(images.double(), 4).flatten(1)


register_extractor("pixel-means-cli-test", lambda weights=None, device="cpu": _PixelMeans())


def test_fid_and_stats_commands(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for d, shift in (("a", 0), ("b", 60)):
        (tmp_path / d).mkdir()
        for i in range(3):
            arr = np.clip(rng.integers(0, 196, (24, 24, 3)) + shift, 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(tmp_path / d / f"{i}.png")
    ext = ["--extractor", "pixel-means-cli-test"]
    assert cli(["fid", str(tmp_path / "a"), str(tmp_path / "b"), "--json", "--batch-size", "2", *ext]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["fid"] > 0 and res["extractor"]["extractor"] == "pixel-means-cli-test"
    assert res["a"]["data"]["num_images"] == 3
    assert cli(["stats", str(tmp_path / "a"), "--out", str(tmp_path / "a.npz"), *ext]) == 0
    assert cli(["stats", str(tmp_path / "b"), "--out", str(tmp_path / "b.npz"), *ext]) == 0
    capsys.readouterr()
    assert cli(["fid", str(tmp_path / "a.npz"), str(tmp_path / "b.npz"), *ext]) == 0
    from_files = float(capsys.readouterr().out.split()[0])
    assert from_files == pytest.approx(res["fid"], rel=1e-7)
