"""Checks `tokbench run` makes before any model loads: tokenizer names (with suggestions), the data, and which
presets' weights are on this machine. Offline is decided once here, so that a run over every preset without weights
answers in seconds with one table instead of retrying the Hub per preset and writing a failure file for each."""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..data.datasets import list_images
from ..errors import UsageError
from ..registry import families, get_family, presets
from ..weight_files import destination, fetch_command, hub_reachable, local_file, offline_env

SAMPLE_SPECS = ("sample", "sample:train", "sample:heldout", "photos")  # embedded sets (tokbench.data)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
CHECK_DECODE = 256  # images fully decoded up front (catches a truncated or corrupt file before any model loads)


def suggest(name: str, candidates: Sequence[str], n: int = 3) -> str:
    """' Did you mean a, b?' (difflib), or ''."""
    close = difflib.get_close_matches(name, list(candidates), n=n, cutoff=0.6)
    return f" did you mean {', '.join(close)}?" if close else ""


def expand_tokenizers(entries: Sequence[str]) -> list[str]:
    """Validate names before anything loads: presets, 'all', 'available', shell-style globs over preset names
    (`tokbench-zoo*`), or a `.safetensors` tokbench checkpoint. A family name or a typo is a usage error with
    suggestions."""
    names, fams = sorted(presets()), families()
    out: list[str] = []
    for e in entries:
        if e in ("all", "available") or e in names:
            out.append(e)
        elif any(c in e for c in "*?["):
            hits = fnmatch.filter(names, e)
            if not hits:
                raise UsageError(f"--tokenizer {e!r} matches no preset (see `tokbench list`)")
            out.extend(hits)
        elif e.endswith(".safetensors") and Path(e).expanduser().is_file():
            out.append(e)
        elif e in fams:
            mine = [n for n in names if presets()[n].family == e]
            raise UsageError(f"--tokenizer {e!r} is a family, not a preset; its presets: {', '.join(mine) or 'none'} "
                             f"(or the glob '{e.replace('_', '-')}*')")
        else:
            raise UsageError(f"--tokenizer {e!r}: unknown tokenizer.{suggest(e, names + sorted(fams))} "
                             f"`tokbench list` shows all {len(names)} presets")
    return out


def check_data(spec: str, num_images: int | None, skip_bad_images: bool = False) -> None:
    """The data exists, holds images, and the first images decode (unless bad images are to be skipped); nothing is
    loaded into a model. Lists files as the data layer does (symlinked folders followed, unreadable entries named)."""
    if num_images is not None and num_images < 1:
        raise UsageError(f"--num-images {num_images}: must be ≥ 1")
    s = str(spec)
    if s in SAMPLE_SPECS:
        return
    if s.startswith("sample:"):
        raise UsageError(f"--data {s!r}: unknown part of the sample set; use one of {', '.join(SAMPLE_SPECS)}")
    root = Path(s).expanduser()
    if not root.exists():
        raise UsageError(f"--data {s}: no such folder")
    if not root.is_dir():
        raise UsageError(f"--data {s}: not a folder (an image folder, or one of {', '.join(SAMPLE_SPECS)})")
    files, unreadable = list_images(root)
    if unreadable and not skip_bad_images:
        raise UsageError(f"--data {s}: {len(unreadable)} unreadable entr{'y' if len(unreadable) == 1 else 'ies'}, "
                         f"e.g. {unreadable[0]['path']} ({unreadable[0]['reason']}); fix them or pass --skip-bad-images")
    if not files:
        raise UsageError(f"--data {s}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder or below")
    if skip_bad_images:
        return
    from PIL import Image

    for p in files[: min(num_images or CHECK_DECODE, CHECK_DECODE)]:
        try:
            with Image.open(p) as im:
                im.load()
        except Exception as e:  # noqa: BLE001 - any decoder error is a bad file
            raise UsageError(f"--data {s}: {p} is not a readable image ({type(e).__name__}: {e}); fix or remove it, "
                             f"or pass --skip-bad-images") from None


@dataclass
class Missing:
    tokenizer: str
    destination: str
    command: str


def split_by_weights(names: Sequence[str]) -> tuple[list[str], list[Missing]]:
    """(names to run, presets whose weights are absent). Local files and the Hub cache are looked at first; a Hub
    download is only planned when not offline (HF_HUB_OFFLINE / TOKBENCH_OFFLINE) and the Hub answers — asked once."""
    ps = presets()
    run, missing = [], []
    reachable: bool | None = None
    for n in names:
        p = ps.get(n)
        if p is None or not get_family(p.family).needs_weights or (p.weights and local_file(p.weights)):
            run.append(n)
            continue
        if p.weights and p.weights.startswith("hf://") and not offline_env():
            if reachable is None:
                reachable = hub_reachable()
            if reachable:
                run.append(n)
                continue
        dest = destination(p.weights) if p.weights else None
        missing.append(Missing(n, str(dest) if dest else "(no published weights)",
                               fetch_command(p.weights, p.manual_url) if p.weights else
                               "train one (tokbench train-robust), then --tokenizer OUT/tokenizer.safetensors"))
    return run, missing


def missing_table(missing: Sequence[Missing], why: str) -> str:
    """One table: what is missing, where each file goes, the command that fetches it."""
    lines = [f"{len(missing)} tokenizer(s) skipped: weights not on this machine ({why}).",
             "Each file goes to the path shown (TOKBENCH_WEIGHTS_DIR moves the folder); fetch it with the command:"]
    w = max(len(m.tokenizer) for m in missing)
    for m in missing:
        cmd = m.command if m.command.startswith("hf download") else m.command.split(" and save it as ")[0]
        lines.append(f"  {m.tokenizer.ljust(w)}  {m.destination}\n  {' ' * w}    ← {cmd}")
    return "\n".join(lines)
