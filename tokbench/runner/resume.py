"""Resume and sharding of one evaluation: which chunks are this process's, and the checked state file that lets a
killed run continue exactly where it stopped.

After every chunk of `chunk_size` images the process saves all its sums and counts to
`<out>/state/<tokenizer>__<suite>__<result key>/rank<r>of<W>.pt` atomically. The state is a checked file
(`tokbench.io`): it carries the run hash (protocol + tokenizer + batching + world size) and a sha256 of its contents; a
changed protocol, a damaged file or one missing a field is named in a warning and discarded (the run restarts from
scratch instead of mixing or trusting it).
"""

from __future__ import annotations

import logging
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..io import CorruptFileError, KeyMismatchError, read_checked_torch, write_checked_torch
from ..dist import DistInfo
from .schema import safe_name

log = logging.getLogger(__name__)

STATE_KIND = "tokbench.resume-state/1"
STATE_FIELDS = ("run_hash", "done", "sums", "rates", "codebook", "timings", "bad_images")


def state_dir(out_dir: Path, name: str, suite_name: str, rkey: str) -> Path:
    """The folder of one run's per-process state files (removed once its result is written)."""
    return out_dir / "state" / f"{safe_name(name)}__{safe_name(suite_name)}__{rkey}"


def state_path(folder: Path, info: DistInfo) -> Path:
    return folder / f"rank{info.rank}of{info.world}.pt"


def remove_state(folder: Path) -> None:
    """Remove a finished run's state folder, and the `state/` folder above it once no other run's state is left."""
    shutil.rmtree(folder, ignore_errors=True)
    try:
        folder.parent.rmdir()
    except OSError:
        pass


def save_state(path: Path, state: dict) -> None:
    try:
        write_checked_torch(path, state, state["run_hash"], kind=STATE_KIND)
    except FileNotFoundError:  # a concurrent identical run finished and removed the folder meanwhile
        write_checked_torch(path, state, state["run_hash"], kind=STATE_KIND)


def load_state(path: Path, run_hash: str) -> dict | None:
    """The verified state of this exact run, or None (absent; or named in a warning and discarded: damaged, of another
    run, or missing a field)."""
    try:
        st = read_checked_torch(path, run_hash, kind=STATE_KIND)
    except FileNotFoundError:
        return None
    except KeyMismatchError:
        log.warning("resume state %s belongs to a different protocol/configuration: starting afresh", path)
        return None
    except CorruptFileError as e:
        log.warning("discarding damaged resume state (%s): this run restarts from scratch", e)
        return None
    missing = [k for k in STATE_FIELDS if not isinstance(st, dict) or k not in st]
    if missing:
        log.warning("discarding resume state %s (missing %s): this run restarts from scratch", path, ", ".join(missing))
        return None
    return st


@dataclass(frozen=True)
class ChunkPlan:
    """Chunks of `chunk` images over `n` images; chunk c belongs to process c mod W and is done in round c // W."""
    n: int
    chunk: int
    info: DistInfo

    @property
    def nchunks(self) -> int:
        return math.ceil(self.n / self.chunk)

    @property
    def rounds(self) -> int:
        return math.ceil(self.nchunks / self.info.world)

    def mine(self) -> list[int]:
        return [c for c in range(self.nchunks) if c % self.info.world == self.info.rank]

    def chunk_of_round(self, r: int) -> int:
        """This process's chunk in round r (≥ nchunks: none, it only joins the fold)."""
        return r * self.info.world + self.info.rank

    def images(self, c: int) -> range:
        return range(c * self.chunk, min(self.n, (c + 1) * self.chunk))

    def windows_done(self, c: int, done: list[int], window: int) -> list[int]:
        """Usage windows touched by chunk c whose every chunk is this process's and finished."""
        r = self.images(c)
        out = []
        for w in range(r.start // window, (r.stop - 1) // window + 1):
            cs = range((w * window) // self.chunk, (min(self.n, (w + 1) * window) - 1) // self.chunk + 1)
            if all(x % self.info.world == self.info.rank and x in done for x in cs):
                out.append(w)
        return out


def resume_or_fresh(path: Path | None, run_hash: str, fresh: Callable[[], Any], timings: dict, name: str
                    ) -> tuple[Any, list[int], list]:
    """(metrics, finished chunks, skipped images): restored from this process's state file when it is sound and fits
    the other processes' states, else fresh ones (`fresh()` also clears `timings`). `path` None: start afresh."""
    metrics, done, bad = fresh(), [], []
    st = load_state(path, run_hash) if path is not None else None
    if st is not None:
        try:
            done = list(st["done"])
            metrics.load_state_dict(st)
            timings.update(st["timings"])
            bad = list(st["bad_images"])
            log.info("%s: resuming after %d finished chunks", name, len(done))
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
            log.warning("discarding resume state %s (%s: %s): this run restarts from scratch", path,
                        type(e).__name__, e)
            st = None
            metrics, done, bad = fresh(), [], []
    if not metrics.sums.agree_on_resume(st is not None):
        log.warning("%s: the processes' resume states do not fit together: every process restarts from scratch", name)
        metrics, done, bad = fresh(), [], []
    return metrics, done, bad
