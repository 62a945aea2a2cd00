"""Benchmark suites: YAML files that fix the data, the metrics and the pFID settings.

The shipped suites live in the package (`tokbench/suites/<name>.yaml`, package data), so an installed tokbench finds
them by name without the repository; `sample` (the default of a plain `tokbench run`: the shipped zoo tokenizers on the
held-out part of the embedded sample set, with gFID of their shipped generators) is one of them. Any other suite is a
YAML path.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..fid import get_extractor
from ..perturb import DEFAULT_MODE, PerturbSetting
from ..suite_files import SUITES_DIR, packaged_suites, read_suite_yaml, suite_definition  # noqa: F401 - re-exported

KNOWN_METRICS = ("rfid", "pfid", "kid", "usage", "psnr", "ssim")
GFID_KEYS = ("generators", "reference", "num", "seed")

DEFAULT_SUITE = "sample"


@dataclass
class PfidSpec:
    alpha: list[float] = field(default_factory=lambda: [0.5])
    delta: list[float] = field(default_factory=lambda: [100])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    mode: str = DEFAULT_MODE  # codebook neighbour rule: "feature" (RobustTok's) or "code"; LFQ/FSQ: natural neighbours
    exclude_self: bool = False  # True: draw among the candidates other than the current id (realised share α)
    beta: float = 1.0
    scales: list[int] | None = None

    def settings(self) -> list[PerturbSetting]:
        """Every (α, δ, seed) as a PerturbSetting, in a stable order (α, then δ, then seed)."""
        sc = tuple(self.scales) if self.scales is not None else None
        return [PerturbSetting(float(a), d, self.beta, int(s), self.mode, sc, bool(self.exclude_self))
                for a in self.alpha for d in self.delta for s in self.seeds]


@dataclass
class Suite:
    name: str
    description: str = ""
    data: str = "sample"
    num_images: int | None = None
    resolution: int | None = None  # None: each tokenizer at its native resolution
    crop: str = "adm"
    tokenizers: list[str] = field(default_factory=lambda: ["available"])
    metrics: list[str] = field(default_factory=lambda: list(KNOWN_METRICS))
    pfid: PfidSpec = field(default_factory=PfidSpec)
    fid: dict = field(default_factory=lambda: {"extractor": "inception-v3-compat", "weights": None})
    batch_size: int = 32
    chunk_size: int = 256
    usage_window: int = 256
    # gFID of generators trained on the tokenizers' tokens: {generators: 'shipped' | {tokenizer: ckpt}, reference:
    # data spec or .npz (None = the suite's data), num (None = the reference's size), seed}; None = no gFID
    gfid: dict | None = None
    file: str = "(embedded)"

    def __post_init__(self) -> None:
        bad = [m for m in self.metrics if m not in KNOWN_METRICS]
        if bad:
            raise ValueError(f"unknown metrics {bad}; known: {', '.join(KNOWN_METRICS)}")
        if self.batch_size < 1 or self.chunk_size < 1:
            raise ValueError("batch_size and chunk_size must be ≥ 1")
        self.pfid_settings()  # validate early

    def pfid_settings(self) -> list[PerturbSetting]:
        return self.pfid.settings() if "pfid" in self.metrics else []

    def extractor(self, device: str = "cpu"):
        """The suite's feature extractor (`fid`: extractor name, weights, optional feature layer such as "64")."""
        kw = {"feature": str(self.fid["feature"])} if self.fid.get("feature") else {}
        return get_extractor(self.fid.get("extractor", "inception-v3-compat"), self.fid.get("weights"), device=device,
                             **kw)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("file")
        return d

    @classmethod
    def from_dict(cls, d: dict, file: str = "(embedded)") -> "Suite":
        d = copy.deepcopy(d)
        unknown = set(d) - {f for f in cls.__dataclass_fields__} - {"file"}
        if unknown:
            raise ValueError(f"suite {file}: unknown keys {sorted(unknown)}")
        if "name" not in d:
            raise ValueError(f"suite {file}: a 'name' is required")
        pf = d.pop("pfid", None) or {}
        unknown = set(pf) - set(PfidSpec.__dataclass_fields__)
        if unknown:
            raise ValueError(f"suite {file}: unknown pfid keys {sorted(unknown)}")
        for k in ("alpha", "delta", "seeds"):
            if k in pf and not isinstance(pf[k], list):
                pf[k] = [pf[k]]
        if "exclude_self" in pf and not isinstance(pf["exclude_self"], bool):
            raise ValueError(f"suite {file}: pfid.exclude_self must be true or false, got {pf['exclude_self']!r}")
        d.pop("file", None)
        g = d.get("gfid")
        if g is not None:
            unknown = set(g) - set(GFID_KEYS) if isinstance(g, dict) else {"(not a mapping)"}
            if unknown or "generators" not in g:
                raise ValueError(f"suite {file}: gfid takes {', '.join(GFID_KEYS)} (generators required); got "
                                 f"{sorted(unknown) or sorted(g)}")
        try:
            return cls(pfid=PfidSpec(**pf), file=file, **d)
        except (TypeError, ValueError) as e:
            raise ValueError(f"suite {file}: {e}") from None


def load_suite(spec: str | None) -> Suite:
    """A YAML path (a path is a path), else the name of a packaged suite (`imagenet256`); None: `sample`."""
    spec = DEFAULT_SUITE if spec is None else spec
    p = Path(spec).expanduser()
    if p.is_file():
        return Suite.from_dict(read_suite_yaml(p), file=str(p))
    if p.suffix or len(p.parts) > 1:
        hint = f"; the packaged suite is `--suite {p.stem}`" if p.stem in packaged_suites() else ""
        raise FileNotFoundError(f"suite file {spec} does not exist{hint}")
    return Suite.from_dict(suite_definition(spec), file=f"tokbench/suites/{spec}.yaml")


def apply_overrides(suite: Suite, **kw: Any) -> Suite:
    """CLI overrides (None = keep the suite's value)."""
    s = copy.deepcopy(suite)
    for k in ("data", "num_images", "batch_size", "chunk_size", "resolution"):
        if kw.get(k) is not None:
            setattr(s, k, kw[k])
    if kw.get("metrics"):
        s.metrics = list(kw["metrics"])
    if kw.get("tokenizers"):
        s.tokenizers = list(kw["tokenizers"])
    if kw.get("pfid_alpha"):
        s.pfid.alpha = list(kw["pfid_alpha"])
    if kw.get("pfid_delta"):
        s.pfid.delta = list(kw["pfid_delta"])
    if kw.get("pfid_seeds"):
        s.pfid.seeds = list(kw["pfid_seeds"])
    if kw.get("pfid_mode"):
        s.pfid.mode = kw["pfid_mode"]
    if kw.get("pfid_exclude_self") is not None:
        s.pfid.exclude_self = bool(kw["pfid_exclude_self"])
    if kw.get("fid_weights"):
        s.fid = dict(s.fid, weights=str(kw["fid_weights"]))
    s.__post_init__()
    return s
