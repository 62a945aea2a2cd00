"""The zoo power analysis' building blocks (benchmarks/experiments/zoo_power/power.py): row-wise Spearman, the copula's
feasibility, the noise decomposition."""

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

spec = importlib.util.spec_from_file_location("zoo_power", Path(__file__).resolve().parents[1] / "benchmarks" /
                                              "experiments" / "zoo_power" / "power.py")
power = importlib.util.module_from_spec(spec)
spec.loader.exec_module(power)


def test_spearman_rows_matches_scipy_with_ties():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, (6, 9)).astype(float)  # many ties
    b = rng.normal(size=(6, 9))
    got = power.spearman_rows(a, b)
    want = [spearmanr(x, y).statistic for x, y in zip(a, b)]
    assert np.allclose(got, want)


def test_copula_hits_the_spearman_targets_or_refuses():
    c = power.copula_corr(0.5, 0.2, 0.5)
    assert c[0, 2] == pytest.approx(2 * math.sin(math.pi * 0.5 / 6)) and c[1, 2] == pytest.approx(2 * math.sin(math.pi * 0.7 / 6))
    assert power.copula_corr(0.5, 0.2, 0.99) is None  # rFID ≈ pFID cannot track gFID that differently


def test_noise_model_splits_gfid_noise_into_sampling_and_training():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(12, 3, 3))
    sampling = {"rows": [{"n": 90, "sd": 0.1}, {"n": 360, "sd": 0.05}]}
    m = power.noise_model(x, sampling, n_zoo=90)
    assert m["c"] == pytest.approx(math.sqrt((0.01 * 90 + 0.0025 * 360) / 2))
    assert m["train_var_gfid_raw"] == pytest.approx(m["sigma_e"][2, 2] - m["c"] ** 2 / 90)
    res = x - x.mean(1, keepdims=True)
    assert m["sigma_e"][0, 0] == pytest.approx((res[..., 0] ** 2).sum() / (12 * 2))
