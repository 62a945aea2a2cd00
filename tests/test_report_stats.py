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
def test_point_value_is_scipy(method):
    x = [3.1, 1.2, 5.0, 5.0, 2.2, 9.9]
    y = [2.0, 1.0, 4.0, 3.5, 2.0, 7.0]
    assert stats.point(method, x, y)[0] == pytest.approx(SCIPY[method](x, y).statistic, abs=1e-12)


def _scipy_exact_permutation_p(method, x, y):
    """scipy's own exact permutation p (every ordering enumerated), with scipy's own statistic."""
    fn = {"pearson": lambda a: sps.pearsonr(a, y).statistic, "spearman": lambda a: sps.spearmanr(a, y).statistic,
          "kendall": lambda a: sps.kendalltau(a, y).statistic}[method]
    return sps.permutation_test((np.asarray(x, float),), fn, permutation_type="pairings", n_resamples=np.inf,
                                vectorized=False, alternative="two-sided").pvalue


@pytest.mark.parametrize("n", [3, 4, 5, 6])
@pytest.mark.parametrize("method", stats.METHODS)
@pytest.mark.parametrize("tied", [False, True])
def test_p_values_equal_scipys_exact_ones(n, method, tied):
    rng = np.random.default_rng(10 * n + tied)
    x = rng.normal(size=n)
    y = x + rng.normal(size=n)
    if tied:
        x[1] = x[0]
    got = stats.significance(method, x, y)
    assert got["p"] == pytest.approx(_scipy_exact_permutation_p(method, x, y), abs=1e-12)
    assert "exact" in got["p_method"]
    if method == "kendall" and not tied:
        assert got["p"] == pytest.approx(sps.kendalltau(x, y, method="exact").pvalue, abs=1e-12)


def test_exact_p_at_n3_is_one_third_not_zero():
    """The issue's case: ρ = +1 at n = 3. Of the 6 orderings one gives +1 and one −1: two-sided p = 2/6."""
    for m in ("spearman", "kendall", "pearson"):
        v, p = stats.point(m, [1, 2, 3], [10, 20, 30])
        assert v == pytest.approx(1.0) and p == pytest.approx(1 / 3)
    assert sps.spearmanr([1, 2, 3], [10, 20, 30]).pvalue < 1e-6  # the asymptotic p this replaces


def test_spearman_dynamic_programming_null_is_exact_beyond_enumeration():
    """n = 9…12 (no enumeration in the tests): the DP counts sum to n!, are symmetric, and match a direct
    enumeration at n = 8."""
    import itertools
    import math
    for n in (8, 9, 12):
        c = stats._spearman_null_counts(n)
        assert int(c.sum()) == math.factorial(n)
        nz = np.flatnonzero(c)
        assert np.array_equal(c[nz], c[nz][::-1])
    direct = np.bincount([sum(i * v for i, v in enumerate(p)) for p in itertools.permutations(range(8))])
    assert np.array_equal(direct, stats._spearman_null_counts(8)[: len(direct)])


def test_interval_coverage_at_n8_bivariate_normal():
    """The chosen 95% interval covers the population coefficient 92–98 % of the time at n = 8 (2,000 samples per
    correlation, fixed seed; Monte Carlo SE ≈ 0.5 %). Population values under a bivariate normal with correlation r:
    Spearman 6/π·asin(r/2), Kendall 2/π·asin(r). A percentile bootstrap fails this for Pearson (≈ 0.88)."""
    rng = np.random.default_rng(2024)
    n, reps = 8, 2000
    for r in (0.0, 0.5, 0.8):
        z = rng.standard_normal((reps, n, 2))
        X = z[..., 0]
        Y = r * z[..., 0] + np.sqrt(1 - r * r) * z[..., 1]
        truth = {"pearson": r, "spearman": 6 / np.pi * np.arcsin(r / 2), "kendall": 2 / np.pi * np.arcsin(r)}
        for m in stats.METHODS:
            est = stats.ROWS[m](X, Y)
            cis = [stats.interval(m, float(v), n) for v in est]
            cover = np.mean([c["ci_low"] <= truth[m] <= c["ci_high"] for c in cis])
            assert abs(cover - 0.95) <= 0.03, (m, r, cover)


def test_verdict_never_contradicts_p_and_interval():
    rng = np.random.default_rng(5)
    seen = set()
    for _ in range(300):
        n = int(rng.integers(3, 13))
        x = rng.normal(size=n)
        y = rng.normal(scale=0.5) * x + rng.normal(size=n)
        sign = float(rng.choice([1.0, -1.0]))
        sig = stats.significance("spearman", x, y)
        ci = stats.interval("spearman", sig["value"], n)
        v = stats.verdict(sign * sig["value"], sig["p"], ci, sign)
        seen.add(v.split(" ")[0])
        if v.startswith("yes") or v.startswith("reversed"):
            assert sig["p"] < 0.05
            if ci is not None:
                lo, hi = sorted((sign * ci["ci_low"], sign * ci["ci_high"]))
                assert (lo > 0) if v.startswith("yes") else (hi < 0)
        else:
            assert v.startswith("unclear")
    assert {"yes", "unclear"} <= seen


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
