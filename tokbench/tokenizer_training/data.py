"""Training data: a dataset of uint8 3×H×W tensors (as `tokbench.data.open_dataset` gives), a fixed held-out
split, and a batch order that is a pure function of (seed, step) — so the data position of a resumed run is just
its step count, and a resumed run sees exactly the batches the uninterrupted run would have seen."""

from __future__ import annotations

from typing import Sequence

import torch
from torch.utils.data import Dataset

from ..data import open_dataset

SPLIT_SEED = 20240917  # fixed: the held-out split does not move with the training seed


def open_training_data(spec: str, resolution: int, num_images: int | None = None) -> Dataset:
    """`tokbench.data.open_dataset` ("sample" or a folder path) for a training run."""
    return open_dataset(spec, resolution, num_images=num_images)


def split_indices(n: int, holdout: float | int, groups: Sequence | None = None) -> tuple[list[int], list[int]]:
    """(train, held-out) indices from a fixed-seed permutation: k = holdout·n (fraction < 1) or holdout images.
    With `groups` (e.g. the sample set's source photo per crop) whole groups are held out, in permuted order, until
    at least k images are held out, so that crops of one photo never straddle the split."""
    k = int(round(holdout * n)) if isinstance(holdout, float) and holdout < 1 else int(holdout)
    if k >= n:
        raise ValueError(f"holdout of {k} images leaves nothing to train on ({n} images)")
    g = torch.Generator().manual_seed(SPLIT_SEED)
    if groups is None or k == 0:
        perm = torch.randperm(n, generator=g).tolist()
        return sorted(perm[k:]), sorted(perm[:k])
    names = sorted(set(groups), key=str)
    held: list[int] = []
    for j in torch.randperm(len(names), generator=g).tolist():
        if len(held) >= k:
            break
        held += [i for i, s in enumerate(groups) if s == names[j]]
    if len(held) >= n:
        raise ValueError("holdout by source leaves nothing to train on")
    hs = set(held)
    return [i for i in range(n) if i not in hs], sorted(held)


def _image(item) -> torch.Tensor:
    t = item[0] if isinstance(item, (tuple, list)) else item
    if not isinstance(t, torch.Tensor) or t.dtype != torch.uint8 or t.ndim != 3 or t.shape[0] != 3:
        raise ValueError("training data items must be uint8 3xHxW tensors")
    return t


class BatchOrder:
    """Global batch k of epoch e = slice k of randperm(train, seed·1_000_003 + e); process r takes its contiguous
    share of it. Horizontal flips come from a generator seeded by (seed, step)."""

    def __init__(self, dataset: Dataset, indices: Sequence[int], batch_size: int, *, seed: int, world: int = 1,
                 rank: int = 0, hflip: bool = True, steps_per_epoch: int | None = None) -> None:
        self.dataset, self.indices = dataset, list(indices)
        self.batch_size, self.seed, self.world, self.rank, self.hflip = batch_size, seed, world, rank, hflip
        full = len(self.indices) // (batch_size * world)
        if full < 1:
            raise ValueError(f"{len(self.indices)} training images are fewer than one global batch "
                             f"({batch_size} x {world} processes)")
        self.steps_per_epoch = int(steps_per_epoch or full)
        self._perm_epoch, self._perm = -1, None

    def epoch_of(self, step: int) -> int:
        return step // self.steps_per_epoch

    def indices_for(self, step: int) -> list[int]:
        epoch, k = divmod(step, self.steps_per_epoch)
        if epoch != self._perm_epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm, self._perm_epoch = torch.randperm(len(self.indices), generator=g).tolist(), epoch
        gb = self.batch_size * self.world
        n = len(self.indices)
        start = (k * gb) % max(n - gb + 1, 1)  # steps_per_epoch set beyond one pass wraps within the permutation
        chunk = self._perm[start: start + gb]
        mine = chunk[self.rank * self.batch_size: (self.rank + 1) * self.batch_size]
        return [self.indices[i] for i in mine]

    def batch(self, step: int) -> torch.Tensor:
        """uint8 B x 3 x H x W for this process at `step`."""
        x = torch.stack([_image(self.dataset[i]) for i in self.indices_for(step)])
        if self.hflip:
            g = torch.Generator().manual_seed(self.seed * 7_919 + step)
            flip = torch.rand(self.batch_size * self.world, generator=g)[self.rank * self.batch_size:][: x.shape[0]] < 0.5
            x[flip] = x[flip].flip(-1)
        return x


def to_native(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 → [−1, 1] float32 (float64 intermediate, as Tokenizer.to_model_input does)."""
    return (x.to(device, torch.float64) / 127.5 - 1.0).float()
