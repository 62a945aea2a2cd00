"""Crash- and race-safe writes for the FID caches: a unique temporary name beside the target, fsync, rename.

Two first runs that build the same cache entry at once each write their own temporary file; the last rename wins and
both files are complete, so no reader ever sees a half-written entry.
"""

# TODO(io): use tokbench.io (atomic writes shared by the whole package) once it exists; this is the FID engine's copy.

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a unique temporary path next to `path`; on success fsync it and rename it onto `path`, on error remove it.

    `suffix` keeps writers that insist on an extension (np.savez appends `.npz`) writing to the yielded name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)
