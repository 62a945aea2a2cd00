"""The FID engine: exact agreement with torch-fidelity, exact merging, the reference cache, the random fallback."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tokbench.data import open_dataset
from tokbench.fid import (
    FeatureExtractor,
    StatsAccumulator,
    compute_stats,
    frechet_distance,
    get_extractor,
    load_npz_stats,
    reference_stats,
    save_stats,
)
from tokbench.fid.extractors import random_inception_weights


class _ImageList(torch.utils.data.Dataset):
    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i]


@pytest.fixture(scope="module")
def sets():
    ds = open_dataset("sample", 32)
    imgs = torch.stack([ds[i] for i in range(len(ds))])
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(ds), generator=g)
    a, b, c = imgs[perm[:10]], imgs[perm[10:20]], imgs[perm[20:30]]
    blur = F.avg_pool2d(a.float(), 5, 1, 2).round().to(torch.uint8)
    noise = (a.float() + 2 * torch.randn(a.shape, generator=g)).round().clamp(0, 255).to(torch.uint8)
    return {"a": a, "b": b, "c": c, "blur": blur, "noise": noise}


@pytest.fixture(scope="module")
def inception(tmp_path_factory):
    import os

    os.environ["TOKBENCH_CACHE"] = str(tmp_path_factory.getbasetemp() / "tokbench-cache")
    with pytest.warns(UserWarning, match="RANDOM-WEIGHT"):
        ext = get_extractor()
    return ext


@pytest.fixture(scope="module")
def stats(sets, inception):
    out = {}
    for k, v in sets.items():
        acc = StatsAccumulator(inception.dim)
        acc.update(inception(v))
        out[k] = acc
    return out


def test_random_inception_is_flagged_and_deterministic(inception):
    assert inception.protocol["random_weights"] is True
    assert inception.protocol["weights"] == "random-he-init"
    path = random_inception_weights()
    assert inception.protocol["weights_sha256"] == __import__("tokbench").weights.sha256_file(path)


@pytest.mark.parametrize("pair", [("a", "b"), ("a", "c")])
def test_fid_equals_torch_fidelity(pair, sets, stats, inception):
    import torch_fidelity

    ours = frechet_distance(stats[pair[0]], stats[pair[1]])
    theirs = torch_fidelity.calculate_metrics(
        input1=_ImageList(sets[pair[0]]), input2=_ImageList(sets[pair[1]]), fid=True, cuda=False, verbose=False,
        cache=False, save_cpu_ram=True, batch_size=10, feature_extractor_weights_path=str(inception.weights_path),
    )["frechet_inception_distance"]
    assert ours > 0
    assert ours == pytest.approx(theirs, rel=1e-4)


def test_random_weights_do_not_collapse(stats):
    """A collapsed random Inception reads ~0 for everything; ours must rank a blur clearly worse than other photos."""
    fid_blur = frechet_distance(stats["a"], stats["blur"])
    fid_noise = frechet_distance(stats["a"], stats["noise"])
    assert fid_blur > 1.0
    assert fid_blur > 20 * fid_noise  # ±2 grey levels of noise barely moves it; a 5×5 box blur clearly does


def test_merging_halves_equals_one_pass():
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(300, 64, generator=g, dtype=torch.float64) * 3 + 1
    whole = StatsAccumulator(64)
    whole.update(feats)
    left, right = StatsAccumulator(64), StatsAccumulator(64)
    for chunk in feats[:130].split(17):
        left.update(chunk)
    right.update(feats[130:])
    merged = left.merge(right)
    mu1, s1 = whole.mean_cov()
    mu2, s2 = merged.mean_cov()
    np.testing.assert_allclose(mu2, mu1, rtol=1e-10)
    np.testing.assert_allclose(s2, s1, rtol=1e-10, atol=1e-12)
    other = StatsAccumulator(64)
    other.update(torch.randn(200, 64, generator=g, dtype=torch.float64))
    assert frechet_distance(merged, other) == pytest.approx(frechet_distance(whole, other), rel=1e-10)
    # the covariance is the unbiased sample covariance
    np.testing.assert_allclose(s1, np.cov(feats.numpy(), rowvar=False), rtol=1e-10, atol=1e-12)


def test_stats_file_roundtrip_and_adm_npz(tmp_path):
    acc = StatsAccumulator(8)
    acc.update(torch.randn(40, 8, dtype=torch.float64))
    save_stats(tmp_path / "s.npz", acc, {"extractor": {"weights_sha256": "x"}})
    back, mu, sigma, proto = load_npz_stats(tmp_path / "s.npz")
    assert back.n == 40 and torch.equal(back.outer, acc.outer)
    assert proto["extractor"]["weights_sha256"] == "x"
    np.savez(tmp_path / "adm.npz", mu=mu, sigma=sigma)  # ADM reference batches carry only mu/sigma
    none, mu2, sigma2, proto2 = load_npz_stats(tmp_path / "adm.npz")
    assert none is None and np.array_equal(mu2, mu) and "ADM" in proto2["source"]
    assert frechet_distance((mu2, sigma2), acc) == pytest.approx(0.0, abs=1e-8)


class PixelMeans(FeatureExtractor):
    """A tiny deterministic stand-in: per-channel means of a 4×4 pooling (48-d)."""

    dim = 48
    protocol = {"extractor": "pixel-means-test", "weights_sha256": "none", "random_weights": False}

    def __call__(self, images):
        return F.adaptive_avg_pool2d(images.double(), 4).flatten(1)


def test_reference_cache_hit_and_miss(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    ext, cache = PixelMeans(), tmp_path / "cache"
    acc1, p1 = reference_stats(open_dataset(tmp_path, 16), ext, batch_size=4, cache=cache)
    acc2, p2 = reference_stats(open_dataset(tmp_path, 16), ext, batch_size=4, cache=cache)
    assert (p1["cache"], p2["cache"]) == ("miss", "hit") and torch.equal(acc1.outer, acc2.outer)
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "3.png")  # one image changes
    acc3, p3 = reference_stats(open_dataset(tmp_path, 16), ext, batch_size=4, cache=cache)
    assert p3["cache"] == "miss" and not torch.equal(acc3.outer, acc1.outer)
    direct = compute_stats([open_dataset(tmp_path, 16)[i][None] for i in range(6)], ext)
    assert torch.allclose(direct.outer, acc3.outer)


def test_nan_features_are_an_error():
    acc = StatsAccumulator(4)
    with pytest.raises(FloatingPointError):
        acc.update(torch.tensor([[0.0, float("nan"), 1.0, 2.0]]))
