"""Image data sets delivered as uint8 3×H×W tensors at the tokenizer's resolution.

- `ImageFolderDataset`: a folder, recursive (symlinked folders followed, each real folder once: no loops), sorted by
  relative path, the first N with `num_images`; class labels are the first-level sub-folders (ImageNet layout).
  Folders or files that cannot be read (permissions, I/O errors) are an error naming them, or — with
  `skip_bad_images` — skipped, warned about and listed in `unreadable` (and so in the result).
- `SampleDataset` (`--data sample`): crops at several scales of the real photographs scikit-image ships. Offline
  smoke runs only: a few hundred crops of 14 photographs are NOT a research-grade reference, and FIDs on them are
  not comparable with published numbers.

Both have `content_hash` (bytes of every image plus the list order) and `describe()`, which go into every result's
protocol and every statistics cache key.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .base import ImageDataset, InMemoryCrops, SubsetDataset, check_num_images  # noqa: F401 - re-exported
from .images import IMAGE_EXTENSIONS, BadImageError, pil_to_uint8, prepare, read_image, to_rgb8
from .photos import PhotoDataset

log = logging.getLogger(__name__)


def _open_for_read(path: Path):
    return open(path, "rb")


def _reason(e: OSError) -> str:
    return f"{type(e).__name__}: {e.strerror or e}"


def list_images(root: Path) -> tuple[list[Path], list[dict]]:
    """(image files under root, unreadable entries [{path, reason}]). Symlinked folders are followed; a folder reached
    twice (a symlink loop, or two links to one folder) is listed once. Every file listed was opened once."""
    files: list[Path] = []
    bad: list[dict] = []
    seen: dict[tuple[int, int], Path] = {}

    def walk(d: Path) -> None:
        try:
            st = d.stat()
        except OSError as e:
            bad.append({"path": str(d), "reason": _reason(e)})
            return
        if (st.st_dev, st.st_ino) in seen:
            log.warning("not following %s: it is the folder %s, already listed (symlink loop or duplicate)", d,
                        seen[(st.st_dev, st.st_ino)])
            return
        seen[(st.st_dev, st.st_ino)] = d
        try:
            with os.scandir(d) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            bad.append({"path": str(d), "reason": _reason(e)})
            return
        for e in entries:
            p = Path(e.path)
            try:
                if e.is_dir(follow_symlinks=True):
                    walk(p)
                    continue
                if not (e.is_file(follow_symlinks=True) and p.suffix.lower() in IMAGE_EXTENSIONS):
                    continue
                _open_for_read(p).close()
            except OSError as err:
                bad.append({"path": str(p), "reason": _reason(err)})
                continue
            files.append(p)

    walk(root)
    return files, bad


class ImageFolderDataset(ImageDataset):
    def __init__(self, root: str | Path, resolution: int | None, *, crop: str = "adm", num_images: int | None = None,
                 skip_bad_images: bool = False):
        check_num_images(num_images)
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder {self.root} does not exist")
        files, unreadable = list_images(self.root)
        if unreadable and not skip_bad_images:
            first = unreadable[0]
            more = f" (and {len(unreadable) - 1} more unreadable entries)" if len(unreadable) > 1 else ""
            raise BadImageError(first["path"], f"{first['reason']}{more}; fix the permissions or pass "
                                               "--skip-bad-images to skip unreadable files")
        for u in unreadable:
            log.warning("skipping unreadable %s: %s", u["path"], u["reason"])
        self.unreadable = unreadable
        files.sort(key=lambda p: p.relative_to(self.root).as_posix())
        if not files:
            raise FileNotFoundError(f"no readable images ({', '.join(IMAGE_EXTENSIONS)}) under {self.root}")
        self.total_available = len(files)
        if num_images is not None:
            if num_images > len(files):
                log.warning("asked for %d images, %s has %d", num_images, self.root, len(files))
            files = files[:num_images]
        self.files = files
        self.resolution = resolution
        self.crop = crop
        self.bad_images = []
        rel = [p.relative_to(self.root).parts for p in files]
        self.classes = sorted({r[0] for r in rel if len(r) > 1})
        cls_index = {c: i for i, c in enumerate(self.classes)}
        self.labels = [cls_index[r[0]] if len(r) > 1 else -1 for r in rel]
        self.sources = [p.relative_to(self.root).as_posix() for p in files]
        self._hash: str | None = None

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        path = self.files[i]
        im = read_image(path)
        try:
            return prepare(im, self.resolution, self.crop)
        except (OSError, ValueError) as e:
            raise BadImageError(path, str(e)) from e

    @property
    def content_hash(self) -> str:
        """sha256 over (relative path, sha256 of the file bytes) of every file, in order."""
        if self._hash is None:
            h = hashlib.sha256()
            for p in self.files:
                try:
                    fh = hashlib.sha256(p.read_bytes()).hexdigest()
                except OSError as e:
                    raise BadImageError(p, f"{_reason(e)} (while hashing the data set)") from e
                h.update(f"{p.relative_to(self.root).as_posix()}\0{fh}\n".encode())
            self._hash = h.hexdigest()
        return self._hash

    def describe(self) -> dict:
        d = {"kind": "folder", "root": str(self.root), "num_images": len(self), "resolution": self.resolution,
             "crop": self.crop, "content_hash": self.content_hash, "uint8": "round-half-up"}
        if self.unreadable:  # what the measured set left out (only then: other results keep their protocol hash)
            d["unreadable_skipped"] = [u["path"] for u in self.unreadable]
        return d


# --- the embedded sample set ------------------------------------------------------------------------------------------
SAMPLE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
                 "motorcycle_left", "camera", "moon", "coins", "grass", "gravel", "brick")
# (relative side, relative centre) of the square crops taken from each photograph: the full centre square, four
# overlapping 0.7 crops, four 0.5 crops around the centre.
SAMPLE_CROPS = ((1.0, (0.5, 0.5)),
                (0.7, (0.35, 0.35)), (0.7, (0.35, 0.65)), (0.7, (0.65, 0.35)), (0.7, (0.65, 0.65)),
                (0.5, (0.3, 0.5)), (0.5, (0.7, 0.5)), (0.5, (0.5, 0.3)), (0.5, (0.5, 0.7)))


def _load_skimage_photo(name: str) -> np.ndarray:
    import skimage.data as skd
    from PIL import Image

    if name == "motorcycle_left":
        arr = np.asarray(Image.open(Path(skd.__file__).parent / "motorcycle_left.png"))
    else:
        arr = getattr(skd, name)()
    return np.asarray(to_rgb8(Image.fromarray(arr)))


class SampleDataset(InMemoryCrops):
    """Deterministic crops of scikit-image's photographs (126 images). Offline smoke tests and demos only."""

    def __init__(self, resolution: int | None = 64, *, num_images: int | None = None, crop: str = "adm",
                 photos: Sequence[str] = SAMPLE_PHOTOS):
        from PIL import Image

        check_num_images(num_images)
        self.resolution = resolution
        self.crop = crop
        self.bad_images = []
        items = [(p, j) for p in photos for j in range(len(SAMPLE_CROPS))]
        self.total_available = len(items)
        if num_images is not None:
            items = items[:num_images]
        self.items = items
        self.classes = list(photos)
        self.labels = [self.classes.index(p) for p, _ in items]
        self.sources = [p for p, _ in items]
        cache: dict[str, np.ndarray] = {}
        self._images: list[torch.Tensor] = []
        for photo, j in items:
            if photo not in cache:
                cache[photo] = _load_skimage_photo(photo)
            arr = cache[photo]
            h, w = arr.shape[:2]
            rel, (cy, cx) = SAMPLE_CROPS[j]
            side = int(round(rel * min(h, w)))
            top = int(np.clip(round(cy * h - side / 2), 0, h - side))
            left = int(np.clip(round(cx * w - side / 2), 0, w - side))
            im = Image.fromarray(arr[top : top + side, left : left + side])
            self._images.append(prepare(im, resolution, crop) if resolution else pil_to_uint8(im))
        self._hash: str | None = None

    def describe(self) -> dict:
        import skimage

        return {"kind": "sample", "note": "scikit-image photographs, crops at 3 scales; NOT a research-grade reference",
                "num_images": len(self), "num_photos": len(set(self.sources)), "resolution": self.resolution,
                "crop": self.crop, "content_hash": self.content_hash, "scikit_image": skimage.__version__,
                "uint8": "round-half-up"}


def split_by_source(ds: ImageDataset, held_out_fraction: float = 0.25, seed: int = 0) -> tuple[SubsetDataset, SubsetDataset]:
    """(train, held_out) with no source photograph on both sides (no crop of a held-out photo is ever trained on)."""
    sources = sorted(set(ds.sources))
    rng = np.random.default_rng(seed)
    order = [sources[i] for i in rng.permutation(len(sources))]
    n_held = max(1, int(round(held_out_fraction * len(sources))))
    held = set(order[:n_held])
    train_idx = [i for i, s in enumerate(ds.sources) if s not in held]
    held_idx = [i for i, s in enumerate(ds.sources) if s in held]
    rule = {"by": "source", "held_out_fraction": held_out_fraction, "seed": seed}
    return (SubsetDataset(ds, train_idx, {"part": "train", **rule}),
            SubsetDataset(ds, held_idx, {"part": "heldout", **rule}))


SAMPLE_SPLIT = {"held_out_fraction": 0.25, "seed": 0}
"""The split of the embedded sample set that `sample:train` / `sample:heldout` name: the one the shipped zoo
tokenizers and generators were trained with (`benchmarks/experiments/zoo.yaml`), so `sample:heldout` is never trained
on."""
SAMPLE_PARTS = {"sample:train": 0, "sample:heldout": 1}


def open_dataset(spec: str | os.PathLike, resolution: int | None, *, num_images: int | None = None,
                 crop: str = "adm", skip_bad_images: bool = False) -> ImageDataset:
    """`"sample"` → the embedded sample set; `"sample:train"` / `"sample:heldout"` → its split by source photograph
    (`SAMPLE_SPLIT`; `num_images` = the first N of that part); `"photos"` → every bundled photograph in many crops
    (`tokbench.data.photos`); anything else → an image folder."""
    check_num_images(num_images)
    ds: ImageDataset
    if str(spec) == "sample":
        ds = SampleDataset(resolution, num_images=num_images, crop=crop)
    elif str(spec) == "photos":  # every bundled photograph, many crops (tokbench/data/photos.py)

        ds = PhotoDataset(resolution, num_images=num_images, crop=crop)
    elif str(spec) in SAMPLE_PARTS:
        part = split_by_source(SampleDataset(resolution, crop=crop), SAMPLE_SPLIT["held_out_fraction"],
                               SAMPLE_SPLIT["seed"])[SAMPLE_PARTS[str(spec)]]
        if num_images is not None and num_images < len(part):
            part = SubsetDataset(part.parent, part.indices[:num_images], part.split)
        ds = part
    else:
        ds = ImageFolderDataset(spec, resolution, crop=crop, num_images=num_images, skip_bad_images=skip_bad_images)
    ds.skip_bad_images = skip_bad_images  # type: ignore[attr-defined]
    print(f"data {spec}: {len(ds)} images" + found_text(ds), file=sys.stderr)
    return ds


def found_text(ds: ImageDataset) -> str:
    """`(of N found, k unreadable skipped)` where that says something."""
    parts = []
    total = getattr(ds, "total_available", None)
    if total is not None and total != len(ds):
        parts.append(f"of {total} found")
    if getattr(ds, "unreadable", None):
        parts.append(f"{len(ds.unreadable)} unreadable skipped")
    return f" ({', '.join(parts)})" if parts else ""


def data_record(ds: ImageDataset) -> dict:
    """What a result records about the data it read: images found, used, and the unreadable entries skipped."""
    return {"images_found": getattr(ds, "total_available", len(ds)), "images_used": len(ds),
            "unreadable_skipped": list(getattr(ds, "unreadable", []) or [])}


# --- batching ---------------------------------------------------------------------------------------------------------
@dataclass
class Batch:
    indices: torch.Tensor  # int64, dataset indices of the images (stable: perturbation seeds depend on them)
    images: torch.Tensor  # uint8 B×3×H×W
    bad: list[dict] = field(default_factory=list)


class _Indexed(Dataset):
    def __init__(self, ds: ImageDataset, indices: Sequence[int], skip_bad: bool):
        self.ds, self.indices, self.skip_bad = ds, list(indices), skip_bad

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int):
        i = self.indices[k]
        try:
            return i, self.ds[i], None
        except BadImageError as e:
            if not self.skip_bad:
                raise
            return i, None, {"index": i, "path": e.path, "reason": e.reason}


def _collate(items) -> Batch:
    good = [(i, x) for i, x, bad in items if x is not None]
    bad = [b for _, _, b in items if b is not None]
    if good:
        idx = torch.tensor([i for i, _ in good], dtype=torch.long)
        shapes = {tuple(x.shape) for _, x in good}
        if len(shapes) > 1:
            raise ValueError(f"images of different sizes in one batch: {sorted(shapes)}; give a resolution to crop to")
        imgs = torch.stack([x for _, x in good])
    else:
        idx, imgs = torch.empty(0, dtype=torch.long), torch.empty(0, 3, 0, 0, dtype=torch.uint8)
    return Batch(idx, imgs, bad)


def iter_batches(ds: ImageDataset, batch_size: int, indices: Sequence[int] | None = None, *,
                 skip_bad_images: bool | None = None, num_workers: int = 0) -> Iterator[Batch]:
    """Batches of (dataset indices, uint8 images) in index order. Unreadable images raise BadImageError naming the
    file, or — with `skip_bad_images` — are dropped and appended to `ds.bad_images`."""
    skip = getattr(ds, "skip_bad_images", False) if skip_bad_images is None else skip_bad_images
    indices = list(range(len(ds))) if indices is None else list(indices)
    loader = DataLoader(_Indexed(ds, indices, skip), batch_size=batch_size, shuffle=False,
                        num_workers=num_workers, collate_fn=_collate)
    for batch in loader:
        if batch.bad:
            for b in batch.bad:
                log.warning("skipping unreadable image %s: %s", b["path"], b["reason"])
            ds.bad_images.extend(batch.bad)
        yield batch
