"""Pre-tokenised data sets: a folder of memory-mapped id shards with class labels.

Layout of a token folder:
  meta.json                    format, tokenizer reference, sequence spec, augmentation, shard size, classes, …
  shard_00000.labels.npy       n int64 class labels (−1 when the data set has no classes)
  shard_00000.index.npy        n int64 indices of the images in the source data set (unreadable ones skipped)
  shard_00000.ids.npy          n x A x L x K ids (A augmentation variants per image; uint16 when every vocabulary
                               fits, else int32); written last, atomically: its presence marks the shard complete

Encoding is the expensive part of generator training, so it happens once; a crashed or interrupted run resumes at
the first incomplete shard.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..data import iter_batches
from ..io import atomic_write
from ..models.gen_layout import SequenceSpec

log = logging.getLogger(__name__)
FORMAT = "tokbench.tokens/1"
AUGS = ("none", "flip", "tencrop")
TENCROP_RANGE = 1.1  # LlamaGen: centre-crop to 1.1 x resolution, then ten-crop (5 crops x horizontal flip)


def num_variants(aug: str) -> int:
    return {"none": 1, "flip": 2, "tencrop": 10}[aug]


def source_resolution(aug: str, resolution: int) -> int:
    """The side the data set is cropped to before augmentation."""
    return int(resolution * TENCROP_RANGE) if aug == "tencrop" else resolution


def augment(images: torch.Tensor, aug: str, resolution: int) -> torch.Tensor:
    """uint8 B x 3 x S x S → B x A x 3 x R x R variants: none (A = 1), flip (original, mirrored) or LlamaGen's
    ten-crop (centre, four corners, then the same five mirrored)."""
    if aug == "none":
        return images[:, None]
    if aug == "flip":
        return torch.stack([images, images.flip(-1)], 1)
    if aug != "tencrop":
        raise ValueError(f"unknown augmentation {aug!r}; choose one of {AUGS}")
    s, r = images.shape[-1], resolution
    if images.shape[-2] < r or s < r:
        raise ValueError(f"ten-crop needs images of at least {r} px, got {tuple(images.shape[-2:])}")
    h = images.shape[-2]
    ci, cj = int(round((h - r) / 2.0)), int(round((s - r) / 2.0))
    crops = [images[..., ci : ci + r, cj : cj + r], images[..., :r, :r], images[..., :r, s - r :],
             images[..., h - r :, :r], images[..., h - r :, s - r :]]
    return torch.stack(crops + [c.flip(-1) for c in crops], 1)


def _atomic_save(path: Path, arr: np.ndarray) -> None:
    atomic_write(path, lambda f: np.save(f, arr))


def _write_json(path: Path, obj: dict) -> None:
    atomic_write(path, json.dumps(obj, indent=1))


def id_dtype(spec: SequenceSpec) -> np.dtype:
    return np.dtype(np.uint16) if max(spec.vocab_sizes) <= 65536 else np.dtype(np.int32)


def pretokenize(tokenizer, dataset, out_dir: str | Path, *, meta: dict, labels: Sequence[int] | None = None,
                classes: Sequence[str] | None = None, aug: str = "none", shard_size: int = 4096, batch_size: int = 64,
                num_workers: int = 0, skip_bad_images: bool = False, progress: bool = True) -> Path:
    """Encode `dataset` (a `tokbench.data` data set of uint8 3 x S x S images) with `tokenizer` into `out_dir`,
    resuming completed shards. Labels default to the data set's own (class = first-level sub-folder). `meta` (the
    tokenizer reference and a description of the data) is recorded and must match an existing folder's."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    spec = SequenceSpec.from_tokenizer(tokenizer)
    n = len(dataset)
    if labels is None:
        labels, classes = labels_from_dataset(dataset)
    if len(labels) != n:
        raise ValueError(f"{len(labels)} labels for {n} images")
    labels_arr = np.asarray(labels, dtype=np.int64)
    res = int(tokenizer.info.resolution)
    request = {"format": FORMAT, **meta, "aug": aug, "variants": num_variants(aug), "resolution": res,
               "source_images": n, "shard_size": int(shard_size), "sequence": spec.to_dict(),
               "id_dtype": id_dtype(spec).name, "classes": list(classes or [])}
    request = json.loads(json.dumps(request))
    meta_path = out / "meta.json"
    if meta_path.exists():
        old = json.loads(meta_path.read_text())
        diff = [k for k in request if old.get(k) != request[k]]
        if diff:
            raise ValueError(f"{out} already holds tokens made with different settings ({', '.join(diff)}); "
                             "use another --out or delete the folder")
    _write_json(meta_path, {**request, "complete": False})
    num_shards = (n + shard_size - 1) // shard_size
    todo = [s for s in range(num_shards) if not (out / f"shard_{s:05d}.ids.npy").exists()]
    if len(todo) < num_shards:
        log.info("resuming: %d of %d shards already done", num_shards - len(todo), num_shards)
    bar = _progress(progress, total=sum(min(shard_size, n - s * shard_size) for s in todo), desc="pretokenize",
                    unit="img")
    for s in todo:
        lo, hi = s * shard_size, min(n, (s + 1) * shard_size)
        chunks, kept = [], []
        for batch in iter_batches(dataset, batch_size, range(lo, hi), skip_bad_images=skip_bad_images,
                                  num_workers=num_workers):
            bar.update(len(batch.indices) + len(batch.bad))
            if not len(batch.indices):
                continue
            v = augment(batch.images, aug, res)  # B x A x 3 x R x R
            b, a = v.shape[:2]
            toks = tokenizer.encode(v.reshape(b * a, *v.shape[2:]).to(tokenizer.device))
            seq = spec.to_sequence(toks).cpu()
            chunks.append(seq.reshape(b, a, spec.length, spec.num_sub).numpy().astype(id_dtype(spec)))
            kept.append(batch.indices.numpy())
        idx = np.concatenate(kept) if kept else np.zeros(0, np.int64)
        ids = np.concatenate(chunks) if chunks else np.zeros((0, num_variants(aug), spec.length, spec.num_sub),
                                                              id_dtype(spec))
        _atomic_save(out / f"shard_{s:05d}.labels.npy", labels_arr[idx])
        _atomic_save(out / f"shard_{s:05d}.index.npy", idx.astype(np.int64))
        _atomic_save(out / f"shard_{s:05d}.ids.npy", ids)
    bar.close()
    written = sum(len(np.load(out / f"shard_{s:05d}.labels.npy")) for s in range(num_shards))
    _write_json(meta_path, {**request, "complete": True, "num_images": written,
                            "bad_images": [b["path"] for b in getattr(dataset, "bad_images", [])]})
    return out


def _progress(enabled: bool, **kw):
    from tqdm.auto import tqdm

    return tqdm(disable=not enabled, **kw)


class TokenSet:
    """Read side: memory-mapped shards of a token folder, indexed as one array."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        meta_path = self.path / "meta.json"
        if not meta_path.exists():
            raise FileNotFoundError(f"{self.path} is not a token folder (no meta.json); make one with "
                                    "`tokbench pretokenize`")
        self.meta = json.loads(meta_path.read_text())
        if self.meta.get("format") != FORMAT:
            raise ValueError(f"{meta_path}: unknown format {self.meta.get('format')!r}, expected {FORMAT}")
        if not self.meta.get("complete"):
            raise ValueError(f"{self.path} is incomplete: re-run the same `tokbench pretokenize` command to finish it")
        self.spec = SequenceSpec.from_dict(self.meta["sequence"])
        n, size = int(self.meta["source_images"]), int(self.meta["shard_size"])
        self.ids, labels = [], []
        for s in range((n + size - 1) // size):
            self.ids.append(np.load(self.path / f"shard_{s:05d}.ids.npy", mmap_mode="r"))
            labels.append(np.load(self.path / f"shard_{s:05d}.labels.npy"))
            if len(labels[-1]) != len(self.ids[-1]):
                raise ValueError(f"{self.path}: shard {s} has {len(self.ids[-1])} id rows and {len(labels[-1])} labels")
        self.labels = np.concatenate(labels) if labels else np.zeros(0, np.int64)
        self.offsets = np.cumsum([0] + [len(a) for a in self.ids])
        if len(self.labels) != int(self.meta["num_images"]):
            raise ValueError(f"{self.path}: shards hold {len(self.labels)} images, meta.json says {self.meta['num_images']}")
        self.variants = int(self.meta["variants"])

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def classes(self) -> list[str]:
        return list(self.meta.get("classes") or [])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def get(self, indices: np.ndarray, variants: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B x L x K long ids, B long labels) for image `indices`, augmentation `variants` (default 0)."""
        indices = np.asarray(indices, dtype=np.int64)
        variants = np.zeros_like(indices) if variants is None else np.asarray(variants, dtype=np.int64)
        out = np.empty((len(indices), self.spec.length, self.spec.num_sub), dtype=np.int64)
        shard = np.searchsorted(self.offsets, indices, side="right") - 1
        for j, (i, sh, v) in enumerate(zip(indices, shard, variants)):
            out[j] = self.ids[sh][i - self.offsets[sh], v]
        return torch.from_numpy(out), torch.from_numpy(self.labels[indices].copy())


def labels_from_dataset(dataset) -> tuple[list[int], list[str]]:
    """Class labels (class = the image's sub-folder, sorted names as ImageNet's synset order) when the data set can
    tell where its images come from; otherwise all −1 and no classes (unconditional training)."""
    for attr in ("labels", "targets"):
        if hasattr(dataset, attr) and hasattr(dataset, "classes"):
            return [int(x) for x in getattr(dataset, attr)], list(dataset.classes)
    paths = None
    for attr in ("files", "paths", "image_paths"):
        if hasattr(dataset, attr):
            paths = [Path(p) for p in getattr(dataset, attr)]
            break
    root = Path(getattr(dataset, "root", "")) if getattr(dataset, "root", None) else None
    if not paths:
        return [-1] * len(dataset), []
    def cls_of(p: Path) -> str:
        rel = p.relative_to(root) if root is not None and p.is_relative_to(root) else p
        return rel.parts[0] if len(rel.parts) > 1 else ""
    names = [cls_of(p) for p in paths]
    classes = sorted({c for c in names if c})
    if not classes or "" in names:
        return [-1] * len(dataset), []
    index = {c: i for i, c in enumerate(classes)}
    return [index[c] for c in names], classes



def write_token_folder(out_dir: str | Path, ids: np.ndarray | torch.Tensor, labels, spec: SequenceSpec, *,
                       meta: dict, classes: Sequence[str] = (), shard_size: int = 4096) -> Path:
    """Write ids that already exist (N x A x L x K, e.g. codes extracted elsewhere, or a synthetic set for tests) as
    a complete token folder that `TokenSet` and `train-gen` read."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ids = np.asarray(ids)
    if ids.ndim == 3:
        ids = ids[:, None]
    n = ids.shape[0]
    if ids.shape[2:] != (spec.length, spec.num_sub):
        raise ValueError(f"ids of shape {ids.shape}, expected N x A x {spec.length} x {spec.num_sub}")
    spec.check(torch.from_numpy(ids.reshape(-1, spec.length, spec.num_sub).astype(np.int64)))
    labels = np.asarray(labels, dtype=np.int64)
    for s in range((n + shard_size - 1) // shard_size):
        lo, hi = s * shard_size, min(n, (s + 1) * shard_size)
        _atomic_save(out / f"shard_{s:05d}.labels.npy", labels[lo:hi])
        _atomic_save(out / f"shard_{s:05d}.index.npy", np.arange(lo, hi, dtype=np.int64))
        _atomic_save(out / f"shard_{s:05d}.ids.npy", ids[lo:hi].astype(id_dtype(spec)))
    _write_json(out / "meta.json", json.loads(json.dumps(
        {"format": FORMAT, **meta, "aug": meta.get("aug", "none"), "variants": int(ids.shape[1]),
         "source_images": n, "num_images": n, "shard_size": shard_size, "sequence": spec.to_dict(),
         "id_dtype": id_dtype(spec).name, "classes": list(classes), "complete": True})))
    return out
