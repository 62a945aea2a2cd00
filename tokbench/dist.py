"""The one torch.distributed helper (benchmark runner, generator trainer, tokenizer trainer): join the process group
`torchrun` describes, agree on failures, sum statistics, broadcast, leave. A single process when WORLD_SIZE <= 1."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    started_here: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def current() -> DistInfo:
    """The process group already joined (by the caller or `init_from_env`), or a single process; joins nothing."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return DistInfo()


def init_from_env(device: str | torch.device | None = None) -> DistInfo:
    """Join the process group torchrun describes (WORLD_SIZE/RANK/LOCAL_RANK); a single process otherwise.
    device None: CUDA when available (the trainers pick `cuda:<local rank>` after joining)."""
    if dist.is_available() and dist.is_initialized():
        return current()
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    # on GPUs: NCCL for CUDA tensors and gloo for the CPU-side counters (replacement counts, bad-image lists)
    backend = "cpu:gloo,cuda:nccl" if torch.device(device).type == "cuda" else "gloo"
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.device(device).type == "cuda":
        torch.cuda.set_device(local)
    dist.init_process_group(backend=backend)
    return DistInfo(dist.get_rank(), dist.get_world_size(), local, started_here=True)


class PeerFailed(RuntimeError):
    """Another process failed on the same work item; this one stops it too instead of waiting forever."""


def agree(info: DistInfo, err: BaseException | None, what: str) -> None:
    """A checkpoint every process reaches, failed or not: all learn whether any failed, so that no process waits at a
    collective the failed one will never join. Re-raises the local error; the others raise PeerFailed."""
    if not info.active:
        if err is not None:
            raise err
        return
    reasons: list = [None] * info.world
    dist.all_gather_object(reasons, None if err is None else f"{type(err).__name__}: {err}"[:2000])
    if err is not None:
        raise err
    failed = {r: m for r, m in enumerate(reasons) if m is not None}
    if failed:
        raise PeerFailed(f"{what}: " + "; ".join(f"process {r} of {info.world} failed: {m}" for r, m in failed.items()))


def all_reduce_(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.active:
        dist.all_reduce(t)
    return t


def broadcast_(t: torch.Tensor, info: DistInfo, src: int = 0) -> torch.Tensor:
    if info.active:
        dist.broadcast(t, src)
    return t


def broadcast_object(obj, info: DistInfo):
    if not info.active:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shutdown(info: DistInfo) -> None:
    if info.started_here and dist.is_initialized():
        dist.destroy_process_group()
