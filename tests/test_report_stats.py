"""Correlation statistics: scipy parity, textbook values, bootstrap reproducibility, degenerate resamples,
leave-one-out and paired comparisons."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from tokbench.report import stats

SCIPY = {"pearson": sps.pearsonr, "spearman": sps.spearmanr,
         "kendall": lambda x, y: sps.kendalltau(x, y, variant="b")}


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("method", stats.METHODS)
def test_vectorised_rows_equal_scipy_with_ties(seed, method):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(4, 25))
    X = rng.integers(0, 6, size=(5, n)).astype(float)  # few distinct values: many ties
    Y = X + rng.integers(0, 4, size=(5, n))
    got = stats.ROWS[method](X, Y)
    for k in range(5):
        if np.all(X[k] == X[k, 0]) or np.all(Y[k] == Y[k, 0]):
            assert np.isnan(got[k])
            continue
        assert got[k] == pytest.approx(SCIPY[method](X[k], Y[k]).statistic, abs=1e-12)


@pytest.mark.parametrize("method", stats.METHODS)
def test_point_is_scipy(method):
    x = [3.1, 1.2, 5.0, 5.0, 2.2, 9.9]
    y = [2.0, 1.0, 4.0, 3.5, 2.0, 7.0]
    ref = SCIPY[method](x, y)
    assert stats.point(method, x, y) == (pytest.approx(ref.statistic), pytest.approx(ref.pvalue))


def test_textbook_values():
    # Anscombe's quartet, set I: r = 0.816 (Anscombe 1973).
    x = [10, 8, 13, 9, 11, 14, 6, 4, 12, 7, 5]
    y = [8.04, 6.95, 7.58, 8.81, 8.33, 9.96, 7.24, 4.26, 10.84, 4.82, 5.68]
    assert stats.point("pearson", x, y)[0] == pytest.approx(0.816, abs=5e-4)
    assert stats.pearson_rows(np.array([x]), np.array([y]))[0] == pytest.approx(0.816, abs=5e-4)
    # Spearman, the IQ / hours-of-TV example (Wikipedia, "Spearman's rank correlation coefficient"): ρ = −29/165.
    iq = [106, 100, 86, 101, 99, 103, 97, 113, 112, 110]
    tv = [7, 27, 2, 50, 28, 29, 20, 12, 6, 17]
    assert stats.point("spearman", iq, tv)[0] == pytest.approx(-29 / 165, abs=1e-12)
    assert stats.spearman_rows(np.array([iq]), np.array([tv]))[0] == pytest.approx(-29 / 165, abs=1e-12)
    # Kendall by hand: y = 3,4,1,2,5 against 1..5 has 6 concordant and 4 discordant pairs: τ = 0.2.
    assert stats.point("kendall", [1, 2, 3, 4, 5], [3, 4, 1, 2, 5])[0] == pytest.approx(0.2, abs=1e-12)
    assert stats.kendall_rows(np.array([[1, 2, 3, 4, 5.]]), np.array([[3, 4, 1, 2, 5.]]))[0] == pytest.approx(0.2)
    # τ-b with ties: x = 1,1,2,3, y = 1,2,2,3: C = 4, D = 0, untied pairs 5 and 5: τ_b = 4/5.
    assert stats.kendall_rows(np.array([[1, 1, 2, 3.]]), np.array([[1, 2, 2, 3.]]))[0] == pytest.approx(0.8)
    assert stats.point("kendall", [1, 1, 2, 3], [1, 2, 2, 3])[0] == pytest.approx(0.8)


def test_constant_input_is_nan_not_error():
    assert all(np.isnan(v) for v in stats.point("spearman", [1, 1, 1, 1], [1, 2, 3, 4]))
    assert np.isnan(stats.kendall_rows(np.ones((1, 4)), np.arange(4.)[None])).all()


def _table(seed=3, n=9):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    return x, x + 0.7 * rng.normal(size=n)


def test_bootstrap_reproducible_and_contains_point():
    x, y = _table()
    a = stats.bootstrap(x, y, n_resamples=10_000, seed=7)
    b = stats.bootstrap(x, y, n_resamples=10_000, seed=7)
    c = stats.bootstrap(x, y, n_resamples=10_000, seed=8)
    assert a == b
    assert a["spearman"]["ci_low"] != c["spearman"]["ci_low"] or a["kendall"]["ci_low"] != c["kendall"]["ci_low"]
    for m in stats.METHODS:
        value = stats.point(m, x, y)[0]
        assert a[m]["ci_low"] <= value <= a[m]["ci_high"], m
        assert a[m]["n_resamples"] == 10_000
        assert -1 <= a[m]["ci_low"] < a[m]["ci_high"] <= 1


def test_degenerate_resamples_counted_exactly():
    # Three of five tokenizers share x: every resample drawing only those three (or one tokenizer) is constant.
    x = np.array([1.0, 1.0, 1.0, 2.0, 3.0])
    y = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    res = stats.bootstrap(x, y, n_resamples=10_000, seed=0)
    idx = stats.resample_indices(5, 10_000, 0)
    X = x[idx]
    expected = int(np.sum(np.all(X == X[:, :1], axis=1)))
    assert expected > 0
    for m in stats.METHODS:
        assert res[m]["n_degenerate"] == expected


def test_kendall_chunking_does_not_change_values(monkeypatch):
    x, y = _table(n=12)
    idx = stats.resample_indices(12, 500, 1)
    full = stats.kendall_rows(x[idx], y[idx])
    monkeypatch.setattr(stats, "_CHUNK_ELEMS", 100)
    np.testing.assert_array_equal(stats.kendall_rows(x[idx], y[idx]), full)


def test_leave_one_out_matches_refits():
    x, y = _table(n=7)
    names = [f"t{i}" for i in range(7)]
    loo = stats.leave_one_out(x, y, names)
    for m in stats.METHODS:
        vals = [SCIPY[m](np.delete(x, i), np.delete(y, i)).statistic for i in range(7)]
        assert loo[m]["min"] == pytest.approx(min(vals))
        assert loo[m]["max"] == pytest.approx(max(vals))
        assert loo[m]["min_without"] == names[int(np.argmin(vals))]


def test_paired_difference():
    x, y = _table(n=10)
    same = stats.paired_difference(x, x, y, "spearman", n_resamples=2000, seed=0)
    assert same["delta"] == 0 and same["share_a_better"] == 0 and same["share_equal"] == 1
    # A = the target itself predicts perfectly; B = noise: A better in (nearly) every resample.
    noise = np.random.default_rng(5).normal(size=10)
    d = stats.paired_difference(y, noise, y, "kendall", n_resamples=2000, seed=0)
    assert d["delta"] > 0 and d["share_a_better"] > 0.9 and d["ci_low"] <= d["delta"] <= d["ci_high"]
    # Opposite directions: a higher-is-better copy (−y) with sign −1 agrees as well as y with sign +1.
    flip = stats.paired_difference(-y, y, y, "spearman", sign_a=-1.0, sign_b=1.0, n_resamples=500, seed=0)
    assert flip["delta"] == pytest.approx(0) and flip["share_equal"] == 1


def test_ties_listed():
    t = stats.ties(np.array([1.0, 2.0, 1.0, 3.0]), ["a", "b", "c", "d"])
    assert t == [{"value": 1.0, "tokenizers": ["a", "c"]}]
