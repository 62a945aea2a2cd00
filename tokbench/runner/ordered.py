"""FID and image-quality sums that do not depend on the number of processes.

Float64 addition is not associative, so adding per-process totals (what an all-reduce does) gives other last bits
than one process adding batch after batch. Here every chunk of `chunk_size` images is summed on its own (a fresh
`StatsAccumulator` / `ImageQuality`), and the chunk sums are added to the running totals strictly in chunk order:
total = ((c0 + c1) + c2) + …. Chunk c belongs to process c mod W and is done in round c // W; after each round the
processes broadcast their chunk sums in rank (= chunk) order and every process folds them. One process folds after
every chunk. Same additions in the same order: bit-identical numbers for any W, at the memory of one extra
accumulator set.

Resume: a process saves its state after computing its chunk of round r and before that round's fold (totals of the
rounds before r + its pending chunk sums). A kill can leave processes at most one round apart; on resume those behind
adopt the totals of one ahead (which already hold their pending chunk) and the others fold their pending sums again.
Any other mix (a state missing on some processes only, gaps) makes every process start afresh.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from ..fid import StatsAccumulator
from ..metrics import ImageQuality
from ..dist import DistInfo

PROTOCOL = "float64 sums (n, Σx, Σxxᵀ) per chunk, added to the totals in chunk order (any number of processes)"


class ChunkOrderedSums:
    def __init__(self, labels: list[str], dim: int, info: DistInfo, keep: str = "auto"):
        self.labels, self.dim, self.info, self.keep = list(labels), int(dim), info, keep
        self.total = {k: self._acc() for k in self.labels}
        self.quality = ImageQuality()
        self.rounds = 0  # rounds folded into the totals
        self.ready = False  # this process's chunk of round `rounds` is computed: its sums are `pending`
        self.pending: tuple[dict, ImageQuality] | None = None  # (None when this process had no chunk that round)

    def _acc(self) -> StatsAccumulator:
        """An empty accumulator; `keep` says which feature rows it keeps (StatsAccumulator: auto = while n ≤ d)."""
        return StatsAccumulator(self.dim, keep=self.keep)

    def new_chunk(self) -> tuple[dict, ImageQuality]:
        return {k: self._acc() for k in self.labels}, ImageQuality()

    # --- folding --------------------------------------------------------------------------------------------------
    def fold(self, chunk: tuple[dict, ImageQuality] | None) -> None:
        """Fold this round's chunk sums of every process (None: this process had no chunk) in chunk order."""
        if not self.info.active:
            if chunk is not None:
                self._add(*chunk)
        else:
            for src in range(self.info.world):
                self._add(*self._broadcast(chunk if self.info.rank == src else None, src))
        self.rounds += 1
        self.pending, self.ready = None, False

    def _add(self, accs: dict, quality: ImageQuality) -> None:
        for k in self.labels:
            self.total[k].merge(accs[k])
        self.quality.load_tensor(self.quality.as_tensor() + quality.as_tensor())

    def _broadcast(self, chunk, src: int) -> tuple[dict, ImageQuality]:
        accs, quality = chunk if chunk is not None else self.new_chunk()
        out = {}
        for k in self.labels:
            a = accs[k]
            head = torch.tensor([float(a.n), float(a.has_features)], dtype=torch.float64)
            s, o = a.sum.cpu().clone(), a.outer.cpu().clone()
            for t in (head, s, o):
                dist.broadcast(t, src)
            n, rows = int(head[0].item()), None
            if head[1].item():  # the kept feature rows travel too (KID, the exact small-n FID)
                rows = a.features().clone() if self.info.rank == src else torch.zeros(n, self.dim, dtype=torch.float64)
                dist.broadcast(rows, src)
            out[k] = self._acc().load_state_dict({"dim": self.dim, "n": n, "sum": s, "outer": o, "keep": self.keep,
                                                  "features": rows})
        q = quality.as_tensor()
        dist.broadcast(q, src)
        return out, ImageQuality().load_tensor(q)

    # --- state ------------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        pend = None
        if self.pending is not None:
            pend = {"acc": {k: a.state_dict() for k, a in self.pending[0].items()},
                    "quality": self.pending[1].state_dict()}
        return {"rounds": self.rounds, "total": {k: a.state_dict() for k, a in self.total.items()},
                "quality": self.quality.state_dict(), "pending": pend}

    def load_state_dict(self, sd: dict) -> None:
        self.rounds = int(sd["rounds"])
        for k in self.labels:
            self.total[k].load_state_dict(sd["total"][k])
        self.quality.load_state_dict(sd["quality"])
        p = sd["pending"]
        self.ready = True
        self.pending = None if p is None else (
            {k: self._acc().load_state_dict(p["acc"][k]) for k in self.labels},
            ImageQuality().load_state_dict(p["quality"]))

    def agree_on_resume(self, has_state: bool) -> bool:
        """After loading: bring every process to the same folded rounds. False: the states do not fit together and
        every process must start afresh."""
        if not self.info.active:
            return True
        mine = (bool(has_state), self.rounds)
        views: list = [None] * self.info.world
        dist.all_gather_object(views, mine)
        if not any(v[0] for v in views):
            return True
        rounds = [v[1] for v in views]
        hi = max(rounds)
        if not all(v[0] for v in views) or hi - min(rounds) > 1:
            return False
        src = rounds.index(hi)
        if min(rounds) < hi:  # those behind take the totals of one ahead (their pending sums are folded in there)
            got = self._broadcast((self.total, self.quality) if self.info.rank == src else None, src)
            if self.rounds < hi:
                self.total, self.quality = got
                self.rounds, self.pending, self.ready = hi, None, False
        return True
