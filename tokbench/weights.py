"""Finding, reading and strictly loading checkpoints.

Weight specs: a local file or folder, `hf://org/repo/path/in/repo@revision` (Hugging Face Hub, cached, honours
HF_HUB_OFFLINE), `hf://org/repo@revision` (a whole snapshot), or an http(s) URL for files that only live on Google
Drive / heibox (never downloaded automatically: the user puts the file in the weights folder).
Pickles are read with `torch.load(weights_only=True)`; a file that needs full unpickling is refused unless the user
says they trust it (`trust_checkpoint=True`, `--trust-checkpoint`), and `tokbench convert` turns it into safetensors.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from .io import atomic_path
from .weight_files import (destination, fetch_command, local_file, offline_env, parse_hf_spec,  # noqa: F401
                           url_filename, weights_dir)

log = logging.getLogger(__name__)

FILTERED_KEY = "tokbench.filtered_for"  # safetensors metadata: the family whose filter was already applied


class WeightsNotFoundError(FileNotFoundError):
    """A weights file is absent or unreachable; the message says where to put it."""


class UnsafeCheckpointError(RuntimeError):
    """A pickled checkpoint needs full unpickling and the user did not say they trust it."""


class CheckpointMismatchError(RuntimeError):
    """A state dict does not fit the model; the message names every missing/unexpected/mismatched key."""


@dataclass
class ResolvedWeights:
    path: Path
    source: str  # the spec as given
    revision: str | None = None

    def to_dict(self) -> dict:
        return {"path": str(self.path), "source": self.source, "revision": self.revision}


def missing_message(spec: str, what: str, manual_url: str | None = None, why: str = "") -> str:
    """The one message for absent weights: where the file goes and the command that puts it there."""
    dest = destination(spec)
    return (f"{what}: weights {spec} are not on this machine{' (' + why + ')' if why else ''}.\n"
            f"  They go to {dest}{' (or the Hugging Face cache)' if spec.startswith('hf://') else ''} "
            f"(TOKBENCH_WEIGHTS_DIR moves the folder): "
            f"{fetch_command(spec, manual_url)}; from Python, load_tokenizer(..., weights=PATH) takes any file.")


def resolve_weights(spec: str | os.PathLike, *, what: str = "weights", manual_url: str | None = None) -> ResolvedWeights:
    """Turn a weights spec into a local path: the destination under the weights folder, the Hub cache, or a Hub
    download when allowed. Every failure is one `WeightsNotFoundError` that says where the file goes."""
    spec = str(spec)
    found = local_file(spec)
    revision = parse_hf_spec(spec)[2] if spec.startswith("hf://") else None
    if found is not None:
        return ResolvedWeights(found, spec, revision)
    if spec.startswith("hf://"):
        if offline_env():
            raise WeightsNotFoundError(missing_message(spec, what, manual_url, "offline: HF_HUB_OFFLINE/TOKBENCH_OFFLINE"))
        repo_id, filename, revision = parse_hf_spec(spec)
        try:
            import huggingface_hub as hf

            if filename:
                path = hf.hf_hub_download(repo_id=repo_id, filename=filename, revision=revision)
            else:
                path = hf.snapshot_download(repo_id=repo_id, revision=revision)
        except Exception as e:  # offline, gated, missing: one clear message
            first = str(e).splitlines()[0] if str(e) else ""
            raise WeightsNotFoundError(missing_message(spec, what, manual_url,
                                                       f"the Hub download failed: {type(e).__name__}: {first}")) from e
        return ResolvedWeights(Path(path), spec, revision)
    if spec.startswith(("http://", "https://")):
        raise WeightsNotFoundError(missing_message(spec, what, manual_url, "never downloaded automatically"))
    path = Path(spec).expanduser()
    hint = f" The official file: {manual_url}." if manual_url else ""
    raise WeightsNotFoundError(f"{what}: no file or folder at {path}.{hint} Pass an existing path (weights=PATH).")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_checkpoint(path: str | os.PathLike, *, trust_checkpoint: bool = False) -> Any:
    """Read a checkpoint file: safetensors directly; pickles with `weights_only=True` unless trusted.
    A folder is read through its `model.safetensors` (Hugging Face layout)."""
    path = Path(path)
    if path.is_dir():
        for name in ("model.safetensors", "pytorch_model.bin", "model.pt"):
            if (path / name).exists():
                return read_checkpoint(path / name, trust_checkpoint=trust_checkpoint)
        raise WeightsNotFoundError(f"folder {path} holds no model.safetensors / pytorch_model.bin")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:
            raise CheckpointMismatchError(f"{path} is not a readable safetensors file: {e}") from e
    try:
        return torch.load(str(path), map_location="cpu", weights_only=not trust_checkpoint)
    except pickle.UnpicklingError as e:
        if trust_checkpoint:
            raise
        raise UnsafeCheckpointError(
            f"{path} is a pickle that needs full unpickling (it holds objects other than tensors: {str(e).splitlines()[0][:200]}).\n"
            "  Unpickling can run arbitrary code. If you trust the file, pass trust_checkpoint=True (CLI: --trust-checkpoint), "
            "or convert it once: tokbench convert FILE OUT.safetensors --trust-checkpoint [--family FAMILY]"
        ) from e
    except Exception as e:  # noqa: BLE001 - not a checkpoint at all (text, truncated, garbage): name the file
        raise CheckpointMismatchError(f"{path} could not be read as a torch checkpoint ({type(e).__name__}: "
                                      f"{str(e).splitlines()[0][:200] if str(e) else 'malformed'})") from e


def safetensors_metadata(path: str | os.PathLike) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def flatten_tensors(obj: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """Nested dicts of tensors → one flat dict with dotted keys (non-tensor leaves dropped)."""
    out: dict[str, torch.Tensor] = {}
    if isinstance(obj, torch.Tensor):
        out[prefix.rstrip(".")] = obj
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            out.update(flatten_tensors(v, f"{prefix}{k}."))
    return out


def unwrap_state_dict(obj: Any, prefer: tuple[str, ...] = ("state_dict", "model")) -> dict[str, torch.Tensor]:
    """Pick the state dict inside a training checkpoint: the first of `prefer` found, either as a nested dict
    (`ckpt["ema"]`) or as a flattened prefix (`ema.encoder...` after `tokbench convert`)."""
    if not isinstance(obj, Mapping):
        raise CheckpointMismatchError(f"checkpoint is a {type(obj).__name__}, not a state dict")
    for key in prefer:
        if key in obj and isinstance(obj[key], Mapping):
            return flatten_tensors(obj[key])
        pref = key + "."
        sub = {k[len(pref) :]: v for k, v in obj.items() if isinstance(k, str) and k.startswith(pref)}
        if sub and isinstance(next(iter(sub.values())), torch.Tensor):
            return sub
    return flatten_tensors(obj)


def drop_prefixes(sd: Mapping[str, torch.Tensor], prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in sd.items() if not k.startswith(prefixes)}


def mismatch_report(expected: Mapping[str, tuple], given: Mapping[str, tuple], limit: int = 20) -> str:
    """'' when the key → shape maps agree, else a report naming missing, unexpected and mismatched keys."""
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    wrong = [k for k in expected if k in given and tuple(expected[k]) != tuple(given[k])]
    lines = []
    if missing:
        lines.append(f"missing keys ({len(missing)}): " + ", ".join(missing[:limit]) + (" …" if len(missing) > limit else ""))
    if unexpected:
        lines.append(
            f"unexpected keys ({len(unexpected)}): " + ", ".join(unexpected[:limit]) + (" …" if len(unexpected) > limit else "")
        )
    for k in wrong[:limit]:
        lines.append(f"shape mismatch for '{k}': checkpoint has {tuple(given[k])}, model expects {tuple(expected[k])}")
    if len(wrong) > limit:
        lines.append(f"… and {len(wrong) - limit} more shape mismatches")
    return "\n".join(lines)


def shapes_of(sd: Mapping[str, Any]) -> dict[str, tuple]:
    return {k: tuple(v.shape) if hasattr(v, "shape") else tuple(v) for k, v in sd.items()}


def load_strict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], *, what: str = "checkpoint") -> None:
    """`load_state_dict(strict=True)` with an error that names every missing, unexpected and mismatched key."""
    report = mismatch_report(shapes_of(module.state_dict()), shapes_of(state_dict))
    if report:
        raise CheckpointMismatchError(f"{what} does not fit {type(module).__name__}:\n" + report)
    bad = [k for k, v in state_dict.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointMismatchError(f"{what} has non-finite values in: {', '.join(bad[:10])}")
    module.load_state_dict(dict(state_dict), strict=True)


def save_safetensors(state_dict: Mapping[str, torch.Tensor], path: str | os.PathLike, metadata: dict | None = None) -> None:
    """Atomic safetensors write (contiguous, de-aliased copies)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:  # also gives the normal file mode (safetensors creates files owner-only)
        save_file({k: v.detach().contiguous().clone() for k, v in state_dict.items()}, str(tmp),
                  metadata={k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()})
