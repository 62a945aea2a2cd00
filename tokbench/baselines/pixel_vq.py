"""Pixel-patch VQ: the classical offline baseline tokenizer.

Each p×p RGB patch is replaced by the nearest of K centres found by k-means over patches of a data set (default: the
embedded sample set). No download, deterministic (seeded k-means++ init, fixed Lloyd iterations, float64), cached on
disk, so the whole pipeline (encode → ids → perturb → decode → FID) is real on any machine. It is a sanity floor, not a
competitive tokenizer.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..api import CodebookSpace, TokenLayout, Tokenizer, TokenizerInfo, Tokens
from ..data import open_dataset
from ..io import CorruptFileError, cache_dir, read_checked_torch, stable_hash, write_checked_torch
from ..registry import Family, Preset, register_family, register_preset

log = logging.getLogger(__name__)

FAMILY = "pixel_vq"
CACHE_KIND = "pixel-vq-codebook"


def patches_of(images01: torch.Tensor, p: int) -> torch.Tensor:
    """B×3×H×W → B×(H/p)×(W/p)×(3·p·p) patch vectors."""
    b, c, h, w = images01.shape
    x = images01.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, h // p, w // p, c * p * p)


def unpatch(vectors: torch.Tensor, p: int) -> torch.Tensor:
    b, gh, gw, d = vectors.shape
    c = d // (p * p)
    return vectors.reshape(b, gh, gw, c, p, p).permute(0, 3, 1, 4, 2, 5).reshape(b, c, gh * p, gw * p)


def kmeans(x: torch.Tensor, k: int, iters: int, seed: int) -> torch.Tensor:
    """Deterministic k-means (k-means++ init with a seeded generator, Lloyd iterations, float64). Empty clusters are
    re-seeded with the points farthest from their centre."""
    x = x.to(torch.float64)
    g = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    if n < k:
        raise ValueError(f"k-means: {n} patches for {k} centres; use more images or a smaller codebook")
    centres = x[torch.randint(n, (1,), generator=g)]
    d2 = torch.cdist(x, centres).squeeze(1) ** 2
    for _ in range(1, k):
        probs = d2 / d2.sum() if d2.sum() > 0 else torch.full_like(d2, 1.0 / n)
        nxt = x[torch.multinomial(probs, 1, generator=g)]
        centres = torch.cat([centres, nxt])
        d2 = torch.minimum(d2, (torch.cdist(x, nxt).squeeze(1)) ** 2)
    for _ in range(iters):
        dist = torch.cdist(x, centres)
        assign = dist.argmin(1)
        sums = torch.zeros_like(centres).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).to(x.dtype)
        empty = counts == 0
        centres = torch.where(empty[:, None], centres, sums / counts.clamp(min=1)[:, None])
        if empty.any():
            far = dist.gather(1, assign[:, None]).squeeze(1).argsort(descending=True)[: int(empty.sum())]
            centres[empty] = x[far]
    return centres


class PixelVQ(Tokenizer):
    """p×p patch k-means VQ over [0, 1] pixels; L2 assignment; grid layout."""

    def __init__(self, patch: int = 4, codebook_size: int = 256, resolution: int = 64, fit: dict | None = None):
        super().__init__()
        if resolution % patch:
            raise ValueError(f"resolution {resolution} is not a multiple of the patch size {patch}")
        self.patch, self.resolution = patch, resolution
        self.fit_config = dict(fit or {})
        self.register_buffer("codebook", torch.zeros(codebook_size, 3 * patch * patch))
        g = resolution // patch
        self.layout = TokenLayout.grid(g, g)
        self.info = TokenizerInfo(
            family=FAMILY, resolution=resolution, value_range="[0,1]", vocab_size=codebook_size,
            tokens_per_image=g * g, quantizer="pixel-kmeans", paper="(baseline) k-means vector quantisation of pixel patches",
            code_license="Apache-2.0 (tokbench)", weights_license="Apache-2.0 (fitted by tokbench)",
            weight_source="fitted locally", notes="offline sanity baseline; not a competitive tokenizer")

    @property
    def token_spaces(self) -> list:  # type: ignore[override]
        return [CodebookSpace(self.codebook.shape[0], codes=self.codebook, metric="l2")]

    def _encode(self, x):
        v = patches_of(x, self.patch)
        ids = self.token_spaces[0].scores(v).argmax(-1)
        return [ids], [v]

    def decode_raw(self, tokens: Tokens) -> torch.Tensor:
        (ids,) = tokens.as_list()
        return unpatch(self.codebook[ids], self.patch)

    def fit(self, dataset, num_patches: int = 20000, iters: int = 20, seed: int = 0) -> None:
        """Fit the codebook on patches of `dataset` (uint8 images), sampled deterministically."""
        imgs = torch.stack([dataset[i] for i in range(len(dataset))]).to(torch.float64) / 255.0
        vecs = patches_of(imgs, self.patch).reshape(-1, self.codebook.shape[1])
        g = torch.Generator().manual_seed(seed)
        if vecs.shape[0] > num_patches:
            vecs = vecs[torch.randperm(vecs.shape[0], generator=g)[:num_patches]]
        self.codebook.copy_(kmeans(vecs, self.codebook.shape[0], iters, seed).to(self.codebook.dtype))


def _cache_path(cfg: dict) -> Path:
    return cache_dir() / "pixel_vq" / f"{stable_hash(cfg)[:16]}.codebook"


def _cached_codebook(path: Path, cfg: dict) -> torch.Tensor | None:
    """The cached codebook made for exactly `cfg`, verified by its checksum; a damaged or foreign file is named,
    discarded and refitted."""
    try:
        return read_checked_torch(path, cfg, kind=CACHE_KIND)["codebook"]
    except FileNotFoundError:
        return None
    except (CorruptFileError, KeyError, TypeError) as e:
        log.warning("discarding k-means codebook cache %s (%s): refitting", path, e)
        return None


def build(config: dict) -> PixelVQ:
    """config = {"constructor_kwargs": {patch, codebook_size, resolution, fit: {data, num_images, num_patches, iters,
    seed}}}. The codebook is fitted on first use and cached; building on the meta device skips fitting."""
    kw = dict(config.get("constructor_kwargs", config))
    model = PixelVQ(**kw)
    if model.codebook.is_meta or config.get("fit") is False:
        return model
    fit = {"data": "sample", "num_images": None, "num_patches": 20000, "iters": 20, "seed": 0, **model.fit_config}
    cfg = {**kw, "fit": fit}
    path = _cache_path(cfg)
    cached = _cached_codebook(path, cfg)
    if cached is not None and cached.shape == model.codebook.shape:
        model.codebook.copy_(cached)
        return model

    log.info("fitting pixel-VQ codebook (k=%d, p=%d) on %s", model.codebook.shape[0], model.patch, fit["data"])
    ds = open_dataset(fit["data"], model.resolution, num_images=fit["num_images"])
    model.fit(ds, fit["num_patches"], fit["iters"], fit["seed"])
    write_checked_torch(path, {"codebook": model.codebook.detach().cpu().clone()}, cfg, kind=CACHE_KIND)
    return model


register_family(Family(FAMILY, build, needs_weights=False,
                       description="k-means pixel-patch VQ fitted on the data (offline baseline)"))
for _p, _k in ((4, 64), (4, 256), (8, 1024)):
    register_preset(Preset(
        f"pixel-vq-p{_p}-k{_k}", FAMILY,
        {"constructor_kwargs": {"patch": _p, "codebook_size": _k, "resolution": 64,
                                "fit": {"data": "sample", "num_patches": 20000, "iters": 20, "seed": 0}}},
        description=f"{_p}x{_p} pixel patches, {_k} k-means codes fitted on the embedded sample set (64 px)"))
