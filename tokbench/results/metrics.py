"""One registry of metric metadata: the canonical key (as `tokbench correlate` names columns), the label the
leaderboard shows, whether higher is better, and how a value is printed. The correlation report reads directions here
and the leaderboard reads formats here, so a new metric is declared once."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class MetricInfo:
    key: str  # canonical column key, lower case: `rfid`, `pfid` (also the prefix of `pfid@…`), `usage_per_window`
    label: str  # as the leaderboard heads its column
    higher_is_better: bool | None  # None: no preferred direction
    digits: int = 2  # decimals when printed
    percent: bool = False  # a fraction printed as a percentage

    @property
    def direction(self) -> str:
        return "unknown" if self.higher_is_better is None else ("higher" if self.higher_is_better else "lower")

    def format(self, v: float) -> str:
        return f"{100 * v:.{self.digits}f}%" if self.percent else f"{v:.{self.digits}f}"


METRICS: tuple[MetricInfo, ...] = (
    MetricInfo("rfid", "rFID", False),
    MetricInfo("pfid", "pFID", False),
    MetricInfo("gfid", "gFID", False),
    MetricInfo("fid", "FID", False),
    MetricInfo("rkid", "rKID", False, digits=4),  # KIDs are small numbers (×10⁻³ is typical)
    MetricInfo("pkid", "pKID", False, digits=4),
    MetricInfo("kid", "KID", False, digits=4),
    MetricInfo("gkid", "gKID", False, digits=4),  # KID of generated samples (the zoo's `gfid.kid`)
    MetricInfo("lpips", "LPIPS", False, digits=4),
    MetricInfo("dead", "dead codes", False),
    MetricInfo("psnr", "PSNR", True),
    MetricInfo("ssim", "SSIM", True, digits=4),
    MetricInfo("usage", "usage", True, digits=1, percent=True),
    MetricInfo("usage_per_window", "usage/256img", True, digits=1, percent=True),
    MetricInfo("perplexity", "perplexity", True, digits=1),
    MetricInfo("entropy", "entropy", True),
    MetricInfo("entropy_norm", "entropy_norm", True, digits=4),
    MetricInfo("is", "IS", True),
    MetricInfo("inception_score", "inception score", True),
    MetricInfo("precision", "precision", True),
    MetricInfo("recall", "recall", True),
)
BY_KEY = {m.key: m for m in METRICS}
BY_LABEL = {m.label: m for m in METRICS}


def lookup(name: str) -> MetricInfo | None:
    """The metric a column name denotes: a key (`pfid@alpha=0.5,…`, `gfid_heldout`, `usage/256img`: the part before
    '@', ' ' or '(' and then before '_' or '/' when the whole is unknown) or a leaderboard label (`pFID α=0.5 δ=0.1
    (code)`, `rFID (paper)`: the label before the first space). None when unknown."""
    if name in BY_LABEL:
        return BY_LABEL[name]
    head_label = name.split(" ", 1)[0]
    if head_label in BY_LABEL:  # `pFID α=…`, `rKID (paper)`
        return BY_LABEL[head_label]
    base = re.split(r"[@ (]", name.strip().lower(), maxsplit=1)[0]
    if base in BY_KEY:
        return BY_KEY[base]
    return BY_KEY.get(base.split("_")[0].split("/")[0])


def direction(name: str) -> str:
    """'lower' or 'higher' is better, or 'unknown'. Every `…fid` / `…kid` column is FID-like (lower is better)."""
    base = re.split(r"[@ (]", name.strip().lower(), maxsplit=1)[0]
    if base.endswith(("fid", "kid")):
        return "lower"
    info = lookup(name)
    return "unknown" if info is None else info.direction
