"""Files that are never half-written and caches that verify themselves.

- `atomic_write` / `atomic_path`: write to a unique temporary name in the target's folder (so concurrent writers never
  share one), fsync the file, rename it over the target, fsync the folder. Readers see the old file or the new one,
  never a mix; on any error (disk full included) the temporary is removed and the target is untouched. The file gets
  the mode a plain `open(path, "w")` would give (0666 minus the umask), not mkstemp's owner-only 0600.
- Temporary names are `<name>.<host>.<pid>.<random>.tmp`: `clean_stale_temps` removes those left by a killed process
  of this host (and any older than a day), never a live writer's.
- `write_checked` / `read_checked`: a cache or state file that carries its own key and a sha256 of its payload. A file
  that is truncated, bit-flipped, of another format or for another key raises a `CorruptFileError` /
  `KeyMismatchError` naming the file; callers discard it and rebuild.
- `stable_hash`: sha256 of canonical JSON (sorted keys), the key of every protocol and cache entry.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import secrets
import socket
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

CHECKED_MAGIC = b"TOKBENCH-CHECKED/1\n"
STALE_AFTER_S = 24 * 3600.0
_umask_lock = threading.Lock()


class CorruptFileError(ValueError):
    """A cache/state file that cannot be trusted (truncated, bit-flipped, wrong format); `path` names it."""

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


class KeyMismatchError(CorruptFileError):
    """A valid checked file made for another key (another protocol, configuration or data)."""


def cache_dir() -> Path:
    """tokbench's cache folder: $TOKBENCH_CACHE, else ~/.cache/tokbench (Inception weights, reference statistics,
    k-means codebooks)."""
    return Path(os.environ.get("TOKBENCH_CACHE", Path.home() / ".cache" / "tokbench"))


def portable_path(path: str | os.PathLike) -> str:
    """A path as results record it, free of this machine's layout: inside the installed tokbench tree `tokbench/…`,
    under the working folder relative to it, elsewhere `…/<parent>/<parent>/<name>` (the sha256 beside it identifies
    the file); Hub specs and other non-paths unchanged."""
    p = Path(path)
    if not p.is_absolute():
        return str(path)
    for root in (Path(__file__).resolve().parents[1], Path.cwd().resolve()):
        try:
            return str(p.resolve().relative_to(root))
        except (ValueError, OSError):
            continue
    return "…/" + "/".join(p.parts[-3:])


def stable_hash(obj: Any) -> str:
    """sha256 hex of `obj` as canonical JSON (sorted keys; non-JSON values by `str`)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def default_mode() -> int:
    """The mode `open(path, "w")` gives a new file here: 0666 minus the process umask."""
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


def _temp_name(path: Path) -> str:
    host = "".join(c if c.isalnum() or c in "-_" else "_" for c in socket.gethostname())[:32] or "host"
    return f"{path.name}.{host}.{os.getpid()}.{secrets.token_hex(4)}.tmp"


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on a folder
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a unique temporary path next to `path`; when the block ends, fsync it, give it the normal file mode and
    rename it to `path`. For writers that want a file name (torch.save, np.save, safetensors, savefig); `suffix` keeps
    writers that insist on an extension (np.savez appends `.npz`) writing to the yielded name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / (_temp_name(path) + suffix)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, default_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def atomic_write(path: str | os.PathLike, data: bytes | str | Callable[[BinaryIO], None]) -> Path:
    """Write bytes, text (UTF-8) or whatever `data(f)` writes to a binary file, atomically (see the module doc)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
    return path


def write_text_atomic(path: str | os.PathLike, text: str | bytes) -> None:
    atomic_write(path, text)


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)


def write_json_atomic(path: str | os.PathLike, obj: Any, *, indent: int | None = 1) -> None:
    """JSON (numpy/torch values as lists, paths as strings) plus a final newline, atomically."""
    atomic_write(path, json.dumps(obj, indent=indent, default=_json_default) + "\n")


def torch_save_atomic(obj: Any, path: str | os.PathLike) -> None:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write(path, buf.getvalue())



def trim_jsonl_log(path: str | os.PathLike, step: int) -> None:
    """Drop the lines of a JSON-lines log written after `step` (the checkpoint a run resumes from: those steps are
    logged again) and any torn last line; atomically. Lines without a step are kept."""
    path = Path(path)
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(rec, dict) or rec.get("step", 0) <= step:
            keep.append(line)
    write_text_atomic(path, "".join(k + "\n" for k in keep))


# --- checked files ----------------------------------------------------------------------------------------------------
def write_checked(path: str | os.PathLike, payload: bytes, key: Any, *, kind: str) -> None:
    """`payload` with a one-line JSON header {kind, key, sha256, length}, atomically. `key` is what the entry is for
    (a protocol/run hash or a dict); `kind` names the content (e.g. "resume-state")."""
    header = {"kind": kind, "key": key, "sha256": hashlib.sha256(payload).hexdigest(), "length": len(payload)}
    atomic_write(path, CHECKED_MAGIC + json.dumps(header, sort_keys=True, default=str).encode() + b"\n" + payload)


def read_checked(path: str | os.PathLike, key: Any = None, *, kind: str) -> bytes:
    """The payload of a checked file, verified. Raises FileNotFoundError when absent, `CorruptFileError` when it is
    not an intact checked file of `kind`, `KeyMismatchError` when it was made for another key (unless key is None)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as e:
        raise CorruptFileError(path, f"unreadable: {e.strerror or e}") from e
    if not raw.startswith(CHECKED_MAGIC):
        raise CorruptFileError(path, f"not a checked {kind} file (no {CHECKED_MAGIC.strip().decode()} header)")
    end = raw.find(b"\n", len(CHECKED_MAGIC))
    try:
        header = json.loads(raw[len(CHECKED_MAGIC):end])
        want_len, want_sha = int(header["length"]), str(header["sha256"])
    except (ValueError, KeyError, TypeError) as e:
        raise CorruptFileError(path, f"damaged header ({type(e).__name__})") from e
    payload = raw[end + 1:] if end >= 0 else b""
    if header.get("kind") != kind:
        raise CorruptFileError(path, f"a {header.get('kind')!r} file, expected {kind!r}")
    if len(payload) != want_len:
        raise CorruptFileError(path, f"truncated or extended: {len(payload)} payload bytes, header says {want_len}")
    if hashlib.sha256(payload).hexdigest() != want_sha:
        raise CorruptFileError(path, "checksum mismatch (the file was altered or damaged)")
    if key is not None and json.loads(json.dumps(key, default=str)) != header.get("key"):
        raise KeyMismatchError(path, f"made for another key ({str(header.get('key'))[:16]}…, "
                                     f"expected {str(key)[:16]}…)")
    return payload


def write_checked_torch(path: str | os.PathLike, obj: Any, key: Any, *, kind: str) -> None:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    write_checked(path, buf.getvalue(), key, kind=kind)


def read_checked_torch(path: str | os.PathLike, key: Any = None, *, kind: str) -> Any:
    """Verified payload loaded with `weights_only=True` (tensors and plain containers; never arbitrary pickles)."""
    import torch

    payload = read_checked(path, key, kind=kind)
    try:
        return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - intact bytes that still do not load: name the file
        raise CorruptFileError(path, f"payload does not load: {type(e).__name__}: {e}") from e


# --- stale temporaries ------------------------------------------------------------------------------------------------
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_temps(folder: str | os.PathLike, stem: str | None = None) -> list[Path]:
    """Remove temporaries in `folder` (of files named `stem`, or all) whose writer is gone: written by a process of
    this host that no longer runs, or older than a day. Returns what was removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    host = _temp_name(Path("x")).split(".")[1]
    removed = []
    for p in folder.glob(f"{stem or '*'}.*.tmp*"):
        base, sep, ext = p.name.rpartition(".tmp")
        if not sep or (ext and not ext.startswith(".")):  # `.tmp` or `.tmp<suffix>` (atomic_path's suffix)
            continue
        parts = base.rsplit(".", 3)
        if len(parts) != 4 or (stem is not None and parts[0] != stem):
            continue
        _, h, pid, _ = parts
        try:
            old = time.time() - p.stat().st_mtime > STALE_AFTER_S
            dead = h == host and pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid))
            if old or dead:
                p.unlink()
                removed.append(p)
        except OSError:
            continue
    return removed
