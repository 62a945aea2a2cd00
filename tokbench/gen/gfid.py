"""gFID: sample from a generator, decode with its tokenizer, stream the images straight into the FID engine.

Protocol (fid-protocol.md §5.3): N samples, class-balanced for class-conditional models (sample i has class
⌊i·C/N⌋, so 50 000 samples of ImageNet are 50 per class), each with its own fixed seed (see `sampling.sample_seeds`),
uint8 by floor(255·x + 0.5), compared against given reference statistics (an ADM .npz such as
VIRTUAL_imagenet256_labeled.npz, or a data set's cached statistics). The sampler settings, seeds rule, generator and
tokenizer provenance go into the returned protocol dict.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from ..data import to_uint8
from ..dist import current
from ..fid import StatsAccumulator, frechet_distance, kernel_inception_distance
from ..io import portable_path
from ..models.generator import SequenceHeads
from ..progress import progress_bar
from .checkpoint import GeneratorMeta, load_generator
from .reference import fd_reference
from .sampling import SamplingConfig, generate, sample_noise, sample_seeds

log = logging.getLogger(__name__)

SEED_RULE = "sample i uses a CPU torch.Generator seeded (seed*1000003 + i*7919 + 12345) mod (2**63-1); inverse-CDF picks"


def class_labels(num: int, num_classes: int) -> torch.Tensor:
    """Class of each sample: balanced, class-major (i·C // N); all zeros for unconditional models."""
    if num_classes <= 0:
        return torch.zeros(num, dtype=torch.long)
    return torch.arange(num, dtype=torch.long) * num_classes // num


def _to_uint8(x01: torch.Tensor) -> torch.Tensor:
    return to_uint8(x01)


@torch.no_grad()
def sample_images(model: SequenceHeads, tokenizer, *, num: int, settings: SamplingConfig, seed: int = 0,
                  batch_size: int = 64, indices: list[int] | None = None, autocast_dtype: torch.dtype | None = None,
                  progress: bool = True) -> Iterator[tuple[list[int], torch.Tensor, torch.Tensor]]:
    """Yield (sample indices, labels, uint8 B x 3 x H x W images) for samples `indices` (default all of 0…num−1)."""
    labels_all = class_labels(num, model.cfg.num_classes)
    indices = list(range(num)) if indices is None else list(indices)
    name = getattr(getattr(tokenizer, "info", None), "preset", None) or ""
    bar = progress_bar(total=len(indices), desc=f"gfid sampling {name}".strip(), enabled=progress, unit="img")
    try:
        for lo in range(0, len(indices), batch_size):
            idx = indices[lo : lo + batch_size]
            labels = labels_all[idx]
            noise = sample_noise(sample_seeds(seed, idx), model.seq_len, model.num_sub)
            seq = generate(model, labels, noise, settings, autocast_dtype=autocast_dtype)
            tokens = model.spec.to_tokens(seq).to(tokenizer.device)
            images = _to_uint8(tokenizer.decode(tokens).float().cpu())
            bar.update(len(idx))
            yield idx, labels, images
    finally:
        bar.close()


def gfid(generator: SequenceHeads | str | Path, tokenizer, reference: Any, extractor: Callable, *,
         settings: SamplingConfig | dict | None = None, num: int = 50_000, seed: int = 0, batch_size: int = 64,
         device: str | torch.device | None = None, save_dir: str | Path | None = None, progress: bool = True,
         bf16: bool = True, extra_references: dict[str, Any] | None = None, kid: bool = False) -> tuple[float, dict]:
    """gFID of `generator` (a model or a checkpoint path) decoded by `tokenizer`, against `reference` (a
    `tokbench.fid` accumulator, (mu, sigma), or an .npz path), features from `extractor` (uint8 → float64 B x D with a
    `.protocol` dict). Returns (value, protocol). Under torch.distributed every rank samples its share and the
    statistics are all-reduced. save_dir: also write every sample as PNG (never JPEG). extra_references: {name:
    reference} — the same samples' FD against each is added to the protocol under `extra_references` (one sampling
    pass for, e.g., gFID against the training and the held-out images). kid: also KID of the same samples against
    each reference (which must hold its feature rows: `reference_stats(..., keep="all")`), under `kid` in the
    protocol and in each extra reference's entry."""
    if isinstance(generator, (str, Path)):
        generator, _ = load_generator(generator, device or "cpu")
    meta: GeneratorMeta | None = getattr(generator, "meta", None)
    ckpt_desc: dict = dict(getattr(generator, "checkpoint", {}) or {})
    if ckpt_desc.get("path"):  # recorded (and hashed) without this machine's folder layout
        ckpt_desc["path"] = portable_path(ckpt_desc["path"])
    if device is not None:
        generator = generator.to(device)
    dev = generator.device
    if settings is None:
        settings = SamplingConfig.from_dict(meta.sampling if meta else {})
    elif isinstance(settings, dict):
        settings = SamplingConfig.from_dict(settings)
    ref, ref_desc = fd_reference(reference)

    if generator.conditional and num % generator.cfg.num_classes:
        log.warning("%d samples for %d classes: classes get %d or %d samples (gFID protocol: 50 per class)", num,
                    generator.cfg.num_classes, num // generator.cfg.num_classes, num // generator.cfg.num_classes + 1)
    info = current()  # the process group the caller joined (torchrun), or one process
    rank, world = info.rank, info.world
    indices = list(range(rank, num, world))
    acc = None
    ac = torch.bfloat16 if (bf16 and dev.type == "cuda") else None
    for idx, labels, images in sample_images(generator, tokenizer, num=num, settings=settings, seed=seed,
                                             batch_size=batch_size, indices=indices, autocast_dtype=ac,
                                             progress=progress and rank == 0):
        feats = extractor(images)
        if acc is None:
            acc = StatsAccumulator(int(feats.shape[1]), keep="all" if kid else "auto")
        acc.update(feats)
        if save_dir is not None:
            _save_pngs(Path(save_dir), idx, labels, images)
    if acc is None:
        raise ValueError("gFID needs at least one sample")
    if world > 1:
        acc.all_reduce()
    value = float(frechet_distance(acc, ref))
    extra = {}
    for key, other in (extra_references or {}).items():
        o_ref, o_desc = fd_reference(other)
        extra[key] = {"value": float(frechet_distance(acc, o_ref)), "reference": o_desc}
        if kid:
            extra[key]["kid"] = _kid(acc, o_ref, key)
    protocol = {
        "metric": "gfid",
        "num_samples": num,
        "per_class": (num // generator.cfg.num_classes) if generator.conditional else None,
        "class_rule": "class of sample i = i*C // N" if generator.conditional else "unconditional",
        "seed": seed,
        "seed_rule": SEED_RULE,
        "sampling": settings.to_dict(),
        "uint8": "floor(255*x+0.5)",
        "generator": {"arch": generator.arch, "config": generator.cfg.to_dict(), "checkpoint": ckpt_desc,
                      "train": {k: v for k, v in (meta.train if meta else {}).items() if k in ("step", "total_steps", "ema", "aug", "num_images")},
                      "params": generator.num_params()},
        "tokenizer": {"family": tokenizer.info.family, "preset": tokenizer.info.preset,
                      "weight_source": portable_path(tokenizer.info.weight_source) if tokenizer.info.weight_source
                      else tokenizer.info.weight_source,
                      "ref": meta.tokenizer.to_dict() if meta else None},
        "extractor": dict(getattr(extractor, "protocol", {}) or {}),
        "reference": ref_desc,
    }
    if kid:
        protocol["kid"] = _kid(acc, ref, "the reference")
    if extra:
        protocol["extra_references"] = extra
    hashed = {k: v for k, v in protocol.items() if k != "generator"} | {"generator": protocol["generator"]["checkpoint"]}
    if isinstance(hashed.get("reference"), dict):  # whether the reference statistics came from the cache is no protocol
        hashed["reference"] = {k: v for k, v in hashed["reference"].items() if k != "cache"}
    protocol["protocol_hash"] = hashlib.sha256(json.dumps(hashed, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return value, protocol


def _kid(samples, reference, what: str) -> dict:
    """KID of the samples' feature rows against a reference accumulator's (torch-fidelity's estimator)."""
    if not isinstance(reference, StatsAccumulator) or not reference.has_features:
        raise ValueError(f"KID against {what} needs its feature rows (reference statistics computed with keep='all'; "
                         "an .npz of mean and covariance has none)")
    r = kernel_inception_distance(samples.features(), reference.features())
    return {"value": r["kid"], "std": r["kid_std"], "protocol": r["protocol"]}


def _save_pngs(folder: Path, idx: list[int], labels: torch.Tensor, images: torch.Tensor) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    arr = images.permute(0, 2, 3, 1).contiguous().numpy()
    for i, lab, a in zip(idx, labels.tolist(), arr):
        Image.fromarray(a).save(folder / f"{i:06d}_c{lab:04d}.png")
