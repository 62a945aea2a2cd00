"""Correlation statistics over a handful of tokenizers: point estimates with scipy's p-values, and vectorised
bootstrap / leave-one-out versions of the same coefficients.

Why our own vectorised coefficients: 10,000 bootstrap resamples × 3 coefficients × many metric pairs must run in
well under a second; scipy's functions work one sample at a time. The vectorised forms are checked against scipy
in the tests (they agree to rounding). Degenerate samples (a constant column, which a resample of few tokenizers
produces whenever it draws the same tokenizer, or tied values, n times) have no defined coefficient: they come back
as NaN and are *counted*, never silently mixed in.
"""

from __future__ import annotations

import warnings
from typing import Callable

import numpy as np
from scipy import stats as sps

METHODS = ("pearson", "spearman", "kendall")
SYMBOL = {"pearson": "r", "spearman": "ρ", "kendall": "τ_b"}
_CHUNK_ELEMS = 4_000_000  # bound on the temporary arrays of the vectorised Kendall (B × pairs)


def point(method: str, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(coefficient, two-sided p-value) from scipy; (nan, nan) when undefined (constant input, n < 2)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if len(x) < 2 or is_constant(x) or is_constant(y):
        return float("nan"), float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on n < 3 etc.; the caller reports those cases itself
        if method == "pearson":
            res = sps.pearsonr(x, y)
        elif method == "spearman":
            res = sps.spearmanr(x, y)
        elif method == "kendall":
            res = sps.kendalltau(x, y, variant="b")
        else:
            raise ValueError(f"unknown correlation method {method!r}; choose from {', '.join(METHODS)}")
    return float(res.statistic), float(res.pvalue)


def is_constant(x: np.ndarray) -> bool:
    x = np.asarray(x, dtype=float)
    return len(x) == 0 or bool(np.all(x == x[0]))


# --- vectorised coefficients: each row of X, Y (shape B × n) is one sample --------------------------------------

def pearson_rows(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=float)
    Y = np.asarray(Y, dtype=float)
    xc = X - X.mean(axis=1, keepdims=True)
    yc = Y - Y.mean(axis=1, keepdims=True)
    sxx = np.einsum("ij,ij->i", xc, xc)
    syy = np.einsum("ij,ij->i", yc, yc)
    sxy = np.einsum("ij,ij->i", xc, yc)
    degenerate = _constant_rows(X) | _constant_rows(Y)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = sxy / np.sqrt(sxx * syy)
    r = np.clip(r, -1.0, 1.0)
    r[degenerate] = np.nan
    return r


def spearman_rows(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Pearson on average ranks (ties share their mean rank), as scipy.stats.spearmanr."""
    return pearson_rows(sps.rankdata(X, axis=1), sps.rankdata(Y, axis=1))


def kendall_rows(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Kendall τ-b = Σ sign(Δx)·sign(Δy) / sqrt(#pairs untied in x · #pairs untied in y), over pairs i < j."""
    X = np.asarray(X, dtype=float)
    Y = np.asarray(Y, dtype=float)
    b, n = X.shape
    i, j = np.triu_indices(n, 1)
    out = np.empty(b)
    step = max(1, _CHUNK_ELEMS // max(1, len(i)))
    for s in range(0, b, step):
        dx = np.sign(X[s:s + step, i] - X[s:s + step, j])
        dy = np.sign(Y[s:s + step, i] - Y[s:s + step, j])
        num = np.einsum("ij,ij->i", dx, dy)
        den = np.sqrt(np.count_nonzero(dx, axis=1).astype(float) * np.count_nonzero(dy, axis=1))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[s:s + step] = np.where(den > 0, num / den, np.nan)
    return np.clip(out, -1.0, 1.0)


ROWS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "pearson": pearson_rows, "spearman": spearman_rows, "kendall": kendall_rows}


def _constant_rows(X: np.ndarray) -> np.ndarray:
    return np.all(X == X[:, :1], axis=1)


# --- resampling ------------------------------------------------------------------------------------------------

def resample_indices(n: int, n_resamples: int, seed: int) -> np.ndarray:
    """B × n indices drawn with replacement; one seeded generator so the CI is reproducible bit for bit."""
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))


def _interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    ok = values[~np.isnan(values)]
    if len(ok) == 0:
        return float("nan"), float("nan")
    a = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(ok, [a, 1.0 - a])
    return float(lo), float(hi)


def bootstrap(x: np.ndarray, y: np.ndarray, methods=METHODS, n_resamples: int = 10_000, seed: int = 0,
              confidence: float = 0.95, idx: np.ndarray | None = None) -> dict[str, dict]:
    """Percentile bootstrap CI over tokenizers for each coefficient. Degenerate resamples (coefficient undefined)
    are excluded from the interval and counted in `n_degenerate`."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if idx is None:
        idx = resample_indices(len(x), n_resamples, seed)
    X, Y = x[idx], y[idx]
    out = {}
    for m in methods:
        v = ROWS[m](X, Y)
        lo, hi = _interval(v, confidence)
        out[m] = {"ci_low": lo, "ci_high": hi, "n_resamples": int(len(v)), "n_degenerate": int(np.isnan(v).sum()),
                  "confidence": confidence, "method": "percentile", "seed": seed}
    return out


def paired_difference(xa: np.ndarray, xb: np.ndarray, y: np.ndarray, method: str = "spearman", sign_a: float = 1.0,
                      sign_b: float = 1.0, n_resamples: int = 10_000, seed: int = 0,
                      confidence: float = 0.95) -> dict:
    """Bootstrap of Δ = sign_a·coef(A, y) − sign_b·coef(B, y) on *paired* resamples (the same tokenizers drawn for
    both metrics). The signs turn each coefficient into 'agreement' (positive = the metric orders tokenizers the way
    the target does), so metrics with opposite directions (PSNR vs rFID) can be compared. Δ > 0: A predicts better."""
    xa, xb, y = (np.asarray(v, dtype=float) for v in (xa, xb, y))
    idx = resample_indices(len(y), n_resamples, seed)
    f = ROWS[method]
    va = sign_a * f(xa[idx], y[idx])
    vb = sign_b * f(xb[idx], y[idx])
    d = va - vb
    ok = ~np.isnan(d)
    lo, hi = _interval(d, confidence)
    pa, _ = point(method, xa, y)
    pb, _ = point(method, xb, y)
    return {"method": method, "delta": sign_a * pa - sign_b * pb, "ci_low": lo, "ci_high": hi,
            "share_a_better": float(np.mean(d[ok] > 0)) if ok.any() else float("nan"),
            "share_equal": float(np.mean(d[ok] == 0)) if ok.any() else float("nan"),
            "n_resamples": int(n_resamples), "n_degenerate": int((~ok).sum()), "confidence": confidence,
            "seed": seed}


def leave_one_out(x: np.ndarray, y: np.ndarray, names: list[str], methods=METHODS) -> dict[str, dict]:
    """Each coefficient with one tokenizer removed at a time: the range, and whose removal gives each end."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    n = len(x)
    keep = np.array([[k for k in range(n) if k != i] for i in range(n)])
    out = {}
    for m in methods:
        v = ROWS[m](x[keep], y[keep])
        ok = ~np.isnan(v)
        if not ok.any():
            out[m] = {"min": float("nan"), "max": float("nan"), "n_undefined": int(n)}
            continue
        imin = int(np.nanargmin(v))
        imax = int(np.nanargmax(v))
        out[m] = {"min": float(v[imin]), "min_without": names[imin], "max": float(v[imax]),
                  "max_without": names[imax], "n_undefined": int((~ok).sum()),
                  "values": {names[i]: (None if np.isnan(v[i]) else float(v[i])) for i in range(n)}}
    return out


def ties(values: np.ndarray, names: list[str]) -> list[dict]:
    """Groups of tokenizers that share a value (they get the mean rank; τ-b corrects for them)."""
    values = np.asarray(values, dtype=float)
    out = []
    for v in np.unique(values):
        members = [names[i] for i in np.flatnonzero(values == v)]
        if len(members) > 1:
            out.append({"value": float(v), "tokenizers": members})
    return out
