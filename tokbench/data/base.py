"""The data-set interface every image set implements, and the two generic kinds: crops held in memory (the sample
and photo sets build on it) and a subset view (splits). Below `datasets` and `photos`, which both build on it."""

from __future__ import annotations

import hashlib
from typing import Sequence

import torch
from torch.utils.data import Dataset


class ImageDataset(Dataset):
    """Common interface: `__getitem__(i)` → uint8 3×H×W (raises BadImageError), `labels`, `sources`,
    `content_hash`, `describe()`, `bad_images` (filled by `iter_batches` when skipping)."""

    resolution: int | None
    crop: str
    bad_images: list[dict]
    labels: list[int]
    classes: list[str]
    sources: list[str]  # the source photograph / file of each image (train/held-out splits are made by source)

    def describe(self) -> dict:
        raise NotImplementedError

    @property
    def content_hash(self) -> str:
        raise NotImplementedError

    def subset(self, indices: Sequence[int]) -> "SubsetDataset":
        return SubsetDataset(self, list(indices))


def check_num_images(num_images) -> None:
    """`num_images` is None (all) or a whole number ≥ 1: a negative or zero count never silently drops images."""
    if num_images is not None and (isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1):
        raise ValueError(f"num_images must be a whole number ≥ 1 (or absent for all images), got {num_images!r}")


class InMemoryCrops(ImageDataset):
    """Crops of bundled photographs held in memory as uint8 tensors: `items` = (photo name, crop index) per image;
    the content hash covers names, crop indices, shapes and pixels."""

    items: list
    _images: list[torch.Tensor]
    _hash: str | None = None

    def __len__(self) -> int:
        return len(self._images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self._images[i].clone()

    @property
    def content_hash(self) -> str:
        if self._hash is None:
            h = hashlib.sha256()
            for (photo, j), t in zip(self.items, self._images):
                h.update(f"{photo}:{j}:{tuple(t.shape)}\0".encode())
                h.update(t.numpy().tobytes())
            self._hash = h.hexdigest()
        return self._hash


class SubsetDataset(ImageDataset):
    """A view of another data set (e.g. a held-out split); indices refer to the parent."""

    def __init__(self, parent: ImageDataset, indices: list[int], split: dict | None = None):
        self.parent, self.indices, self.split = parent, indices, split
        self.resolution, self.crop = parent.resolution, parent.crop
        self.bad_images = []
        self.classes = parent.classes
        self.labels = [parent.labels[i] for i in indices]
        self.sources = [parent.sources[i] for i in indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.parent[self.indices[i]]

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(f"{self.parent.content_hash}:{self.indices}".encode()).hexdigest()

    def describe(self) -> dict:
        d = dict(self.parent.describe())
        d.update(num_images=len(self), content_hash=self.content_hash, subset_of=self.parent.content_hash)
        if self.split is not None:
            d.update(split=self.split, num_photos=len(set(self.sources)))
        return d
