"""Held-out evaluation during and after training.

`heldout_metrics` is self-contained and cheap: through the public Tokenizer API (encode → ids, decode), the clean
reconstruction MSE/PSNR, codebook usage and perplexity of the clean ids (algorithms.md §6, dataset level over the
held-out split, T stated), and the reconstruction PSNR from perturbed tokens (β = 1, each α of `perturb_alphas`,
δ nearest codes to the encoder feature, drawn by the perturbation engine exactly as pFID draws them) — the
pixel-space counterpart of pFID.

`runner_metrics` runs rFID/pFID/usage/PSNR through the benchmark runner (`tokbench.runner.evaluate`) on the held-out
images, as an in-memory data set (`HeldoutImages`) with its own content hash, so the numbers, the protocol record and
the result file are the runner's own. pFID uses the engine's feature rule (RobustTok's, as in training), β = 1.
"""

from __future__ import annotations

import hashlib
import logging
import math
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import torch

from ..api import Tokenizer
from ..data.datasets import ImageDataset
from ..fid import get_extractor, reference_stats
from ..perturb import PerturbSetting, Perturber
from ..results.result import Result
from ..runner import RunOptions, Suite, evaluate
from ..runner.schema import result_file

log = logging.getLogger(__name__)


def _psnr(mse: float) -> float:
    return float("inf") if mse <= 0 else 10 * math.log10(1.0 / mse)


@torch.no_grad()
def heldout_metrics(model: Tokenizer, images: torch.Tensor, *, alphas: Sequence[float] = (0.1, 0.3, 0.5),
                    delta: int = 8, batch_size: int = 32, seed: int = 0) -> dict:
    """images: uint8 N x 3 x H x W. Errors are in [0, 1] pixel units (PSNR with peak 1)."""
    was_training, keep = model.training, model.keep_features
    model.eval()
    model.keep_features = True
    space = model.token_space
    n_codes = space.vocab_size
    counts = torch.zeros(n_codes, dtype=torch.float64)
    se = {"clean": 0.0, **{f"a{a:g}": 0.0 for a in alphas}}
    changed = {f"a{a:g}": 0 for a in alphas}
    perturber = Perturber.for_tokenizer(model)
    settings = {a: PerturbSetting(float(a), int(min(delta, n_codes)), 1.0, int(seed), "feature") for a in alphas}
    npx = 0
    for s in range(0, images.shape[0], batch_size):
        x = images[s: s + batch_size]
        ref = x.to(model.device).float() / 255.0
        toks = model.encode(x)
        feats = model.last_features
        ids = toks.ids[0]
        index = torch.arange(s, s + x.shape[0])
        counts += torch.bincount(ids.flatten().cpu(), minlength=n_codes).double()
        se["clean"] += float(((model.decode(toks) - ref) ** 2).sum())
        npx += ref.numel()
        for a in alphas:
            pr = perturber(toks, settings[a], index, feats)
            changed[f"a{a:g}"] += int(pr.changed.sum())
            se[f"a{a:g}"] += float(((model.decode(pr.tokens) - ref) ** 2).sum())
    model.train(was_training)
    model.keep_features = keep
    total = float(counts.sum())
    p = counts / total
    h = float(-(p[p > 0] * p[p > 0].log()).sum())
    out = {"images": int(images.shape[0]), "tokens": int(total), "usage": float((counts > 0).sum()) / n_codes,
           "perplexity": math.exp(h), "entropy_norm": h / math.log(n_codes), "perturb_delta": int(delta)}
    for k, v in se.items():
        mse = v / npx
        out[f"mse_{k}"] = mse
        out[f"psnr_{k}"] = _psnr(mse)
        if k != "clean":
            out[f"changed_{k}"] = changed[k] / total
    return out


class HeldoutImages(ImageDataset):
    """The held-out split as an in-memory data set the runner (and `reference_stats`) accept: uint8 N x 3 x H x W,
    described by its parent's description (when it has one) plus the split's content hash."""

    def __init__(self, images: torch.Tensor, parent=None, indices: Sequence[int] | None = None) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError("held-out images must be uint8 N x 3 x H x W")
        self.images = images.cpu()
        self.resolution, self.crop = int(images.shape[-1]), getattr(parent, "crop", "adm")
        self.bad_images: list[dict] = []
        self.indices = list(indices) if indices is not None else list(range(images.shape[0]))
        self.labels, self.classes, self.sources = [0] * len(self), ["heldout"], ["heldout"] * len(self)
        self._parent = parent.describe() if hasattr(parent, "describe") else None
        self._hash: str | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i].clone()

    @property
    def content_hash(self) -> str:
        if self._hash is None:
            self._hash = hashlib.sha256(self.images.contiguous().numpy().tobytes()).hexdigest()
        return self._hash

    def describe(self) -> dict:
        return {"kind": "train-heldout", "num_images": len(self), "resolution": self.resolution, "crop": self.crop,
                "content_hash": self.content_hash, "parent_indices": self.indices, "parent": self._parent}


class FidContext:
    """The extractor and the held-out reference statistics, built once per training run and reused at each eval."""

    def __init__(self, dataset: HeldoutImages, extractor: str = "inception-v3-compat", weights: str | None = None,
                 device: str | torch.device = "cpu", batch_size: int = 32, cache: str | Path | None = None) -> None:
        self.dataset = dataset
        self.extractor = get_extractor(extractor, weights, device=device)
        self.ref_acc, self.ref_proto = reference_stats(dataset, self.extractor, batch_size=batch_size, cache=cache,
                                                       use_cache=cache is not None, keep="all")  # rows for KID


def runner_metrics(model: Tokenizer, images: torch.Tensor, *, alphas: Sequence[float], delta: int,
                   name: str | None = None, extractor: str = "inception-v3-compat", fid_weights: str | None = None,
                   seed: int = 0, batch_size: int = 32, out_dir: str | Path | None = None,
                   context: FidContext | None = None, parent=None, indices: Sequence[int] | None = None) -> dict:
    """rFID, pFID (β = 1, each α, δ nearest codes to the encoder feature), usage/perplexity and PSNR of `model` on
    the held-out `images` (uint8 N x 3 x H x W) through `tokbench.runner.evaluate`. The runner's result file goes to
    `out_dir` (a temporary folder, removed, when None). Returns a compact summary plus the result's protocol."""
    if context is None:
        context = FidContext(HeldoutImages(images, parent, indices), extractor, fid_weights, model.device, batch_size)
    ds = context.dataset
    d = int(min(delta, model.info.vocab_size))
    suite = Suite(name="train-heldout", description="held-out split of a train-robust run", data="(in memory)",
                  num_images=len(ds), resolution=ds.resolution, crop=ds.crop, tokenizers=[],
                  metrics=["rfid", "pfid", "kid", "usage", "psnr"], batch_size=batch_size, chunk_size=max(len(ds), 1),
                  usage_window=max(len(ds), 1),
                  fid={"extractor": extractor, "weights": fid_weights})
    suite.pfid.alpha, suite.pfid.delta, suite.pfid.seeds = [float(a) for a in alphas], [d], [int(seed)]
    suite.pfid.mode, suite.pfid.beta = "feature", 1.0
    tmp = None
    if out_dir is None:
        tmp = out_dir = tempfile.mkdtemp(prefix="tokbench-train-eval-")
    opts = RunOptions(out_dir=Path(out_dir), device=str(model.device), force=True, progress=False)
    was_training, keep = model.training, model.keep_features
    model.eval()
    try:
        res = evaluate(model, name or (model.info.preset or model.info.family), suite, ds, context.extractor,
                       context.ref_acc, context.ref_proto, opts)
    finally:
        model.train(was_training)
        model.keep_features = keep
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    r = Result(res)
    v = r.metric_values()
    out = {"rfid": v["rfid"], "rkid": v["rkid"], "psnr": v["psnr"], "usage": v["usage"], "perplexity": v["perplexity"],
           "images": r.protocol["num_images"], "delta": d, "mode": "feature", "seed": int(seed),
           "extractor": {k: context.extractor.protocol.get(k) for k in ("extractor", "weights", "weights_source",
                                                                        "random_weights")}}
    for p in r.pfid:  # history keys by α (one δ and rule per evaluation)
        out[f"pfid_a{p.alpha:g}"] = p.mean
        out[f"changed_a{p.alpha:g}"] = p.raw["replacement_rate_mean"]
        if p.kid_mean is not None:
            out[f"pkid_a{p.alpha:g}"] = p.kid_mean
    if tmp is None:
        out["result_file"] = str(result_file(Path(out_dir), res))
    return out
