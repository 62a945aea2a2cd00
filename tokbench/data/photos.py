"""`photos`: every natural photograph the installed dependencies ship inside their packages, cut into many crops.

Why: the `sample` set (126 crops of 14 photographs) is too small for a zoo to rank tokenizers. This set takes every
bundled photograph of scikit-image (files in `skimage/data/`, not the pooch-downloaded ones) and matplotlib's
`sample_data`, and cuts each into 87 square crops on a grid at five scales. Nothing is downloaded.

Sources: the split unit is the *source* (a photographed scene): motorcycle_left/right are one stereo scene, so
they share a source and can never end up on both sides of a split. Not included (not natural photographs, or too
small for 32 px crops): chessboard, color, horse (silhouette), logo, phantom, page and text (scans), lfw_subset
(25 px faces), microaneurysms (102 px), matplotlib's logo and 128 px product shot. The `sample` spec and its split
are untouched (committed results depend on them).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .base import InMemoryCrops
from .images import pil_to_uint8, prepare, to_rgb8

# (source, package, file inside the package's data folder)
PHOTOS: tuple[tuple[str, str, str], ...] = (
    ("astronaut", "skimage", "astronaut.png"),
    ("brick", "skimage", "brick.png"),
    ("camera", "skimage", "camera.png"),
    ("cell", "skimage", "cell.png"),
    ("chelsea", "skimage", "chelsea.png"),
    ("clock_motion", "skimage", "clock_motion.png"),
    ("coffee", "skimage", "coffee.png"),
    ("coins", "skimage", "coins.png"),
    ("grass", "skimage", "grass.png"),
    ("gravel", "skimage", "gravel.png"),
    ("hubble_deep_field", "skimage", "hubble_deep_field.jpg"),
    ("immunohistochemistry", "skimage", "ihc.png"),
    ("moon", "skimage", "moon.png"),
    ("motorcycle", "skimage", "motorcycle_left.png"),
    ("motorcycle", "skimage", "motorcycle_right.png"),
    ("retina", "skimage", "retina.jpg"),
    ("rocket", "skimage", "rocket.jpg"),
    ("grace_hopper", "matplotlib", "grace_hopper.jpg"),
)
# (relative side, grid points per axis): centres on a k×k grid spanning the photograph, 1 + 9 + 16 + 25 + 36 = 87
PHOTO_SCALES: tuple[tuple[float, int], ...] = ((1.0, 1), (0.7, 3), (0.5, 4), (0.35, 5), (0.25, 6))


def photo_path(package: str, name: str) -> Path:
    if package == "skimage":
        import skimage.data as skd

        return Path(skd.__file__).parent / name
    if package == "matplotlib":
        import matplotlib

        return Path(matplotlib.get_data_path()) / "sample_data" / name
    raise ValueError(f"unknown photo package {package!r}")


def crop_boxes(h: int, w: int) -> list[tuple[int, int, int]]:
    """(top, left, side) of every crop of an h×w photograph: for each scale, side = rel·min(h, w), centres on an
    evenly spaced k×k grid whose outer crops touch the borders."""
    boxes = []
    for rel, k in PHOTO_SCALES:
        side = int(round(rel * min(h, w)))
        tops = np.linspace(0, h - side, k) if k > 1 else [(h - side) / 2]
        lefts = np.linspace(0, w - side, k) if k > 1 else [(w - side) / 2]
        boxes += [(int(round(t)), int(round(left)), side) for t in tops for left in lefts]
    return boxes


class PhotoDataset(InMemoryCrops):
    """All bundled photographs × `crop_boxes`: 18 files × 87 = 1,566 images from 17 sources (scikit-image 0.26,
    matplotlib 3.x); split with `split_by_source` (0.25, seed 0: 1,218 training / 348 held-out images)."""

    def __init__(self, resolution: int | None = 32, *, num_images: int | None = None, crop: str = "adm") -> None:
        from PIL import Image

        self.resolution, self.crop = resolution, crop
        self.bad_images = []
        self.files, self.items, self.sources = [], [], []
        self._images: list[torch.Tensor] = []
        for source, package, name in PHOTOS:
            if num_images is not None and len(self.items) >= num_images:
                break
            path = photo_path(package, name)
            if not path.is_file():
                raise FileNotFoundError(f"data spec 'photos': {path} is missing (is {package} installed in full?)")
            arr = np.asarray(to_rgb8(Image.open(path)))
            self.files.append(f"{package}/{name}")
            h, w = arr.shape[:2]
            for j, (top, left, side) in enumerate(crop_boxes(h, w)):
                if num_images is not None and len(self.items) >= num_images:
                    break
                im = Image.fromarray(arr[top: top + side, left: left + side])
                self._images.append(prepare(im, resolution, crop) if resolution else pil_to_uint8(im))
                self.items.append((f"{package}/{name}", j))
                self.sources.append(source)
        self.classes = sorted(set(self.sources))
        self.labels = [self.classes.index(s) for s in self.sources]
        self._hash: str | None = None

    def describe(self) -> dict:
        import matplotlib
        import skimage

        return {"kind": "photos", "note": "every bundled scikit-image / matplotlib photograph, 87 grid crops at 5 "
                "scales each; split by source scene; NOT a research-grade reference",
                "num_images": len(self), "num_sources": len(set(self.sources)), "files": self.files,
                "scales": [list(s) for s in PHOTO_SCALES], "resolution": self.resolution, "crop": self.crop,
                "content_hash": self.content_hash, "scikit_image": skimage.__version__,
                "matplotlib": matplotlib.__version__, "uint8": "round-half-up"}
