"""Held-out evaluation during and after training.

`heldout_metrics` is self-contained and cheap: through the public Tokenizer API (encode → ids, decode), the clean
reconstruction MSE/PSNR, codebook usage and perplexity of the clean ids (algorithms.md §6, dataset level over the
held-out split, T stated), and the reconstruction PSNR from perturbed tokens (β = 1, each α of `perturb_alphas`,
δ nearest codes to the encoder feature) — the pixel-space counterpart of pFID.

`runner_metrics` is the hook for rFID/pFID through `tokbench.runner` (written by the "runner" helper, not on main
yet). Until that module exists it is a no-op returning None; the trainer logs that it was skipped.
"""

from __future__ import annotations

import importlib.util
import logging
import math
from typing import Sequence

import torch

from ..api import Tokenizer
from .perturb_hook import perturb_ids

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
    g = torch.Generator(device=model.device).manual_seed(seed)
    npx = 0
    for s in range(0, images.shape[0], batch_size):
        x = images[s: s + batch_size]
        ref = x.to(model.device).float() / 255.0
        toks = model.encode(x)
        feats = model.last_features[0]
        ids = toks.ids[0]
        counts += torch.bincount(ids.flatten().cpu(), minlength=n_codes).double()
        se["clean"] += float(((model.decode(toks) - ref) ** 2).sum())
        npx += ref.numel()
        for a in alphas:
            pid, hit = perturb_ids(feats, space.codes, space.metric, ids, alpha=a, beta=1.0,
                                   delta=min(delta, n_codes), generator=g)
            changed[f"a{a:g}"] += int((pid != ids).sum())
            se[f"a{a:g}"] += float(((model.decode(toks.replace_ids([pid])) - ref) ** 2).sum())
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


def runner_metrics(model: Tokenizer, images: torch.Tensor, *, alphas: Sequence[float], delta: int) -> dict | None:
    """rFID/pFID via tokbench.runner on the held-out images. TODO(runner): wire to the runner's API when it lands
    on main; until then (no `tokbench.runner` module) this is a no-op returning None."""
    if importlib.util.find_spec("tokbench.runner") is None:
        return None
    runner = importlib.import_module("tokbench.runner")
    fn = getattr(runner, "evaluate_tokenizer", None)
    if fn is None:
        log.warning("tokbench.runner exists but has no evaluate_tokenizer(); rFID/pFID skipped (wire the hook)")
        return None
    return fn(model, images, metrics=("rfid", "pfid"), pfid_alphas=list(alphas), pfid_delta=delta)
