"""Named presets and families, in the spirit of timm.

A *family* knows how to build a model from an `upstream_config` dict (the format of a parity fixture's
`config.json`: the upstream class's arguments under `constructor_kwargs`, plus documented overrides) and how to turn an
official checkpoint into our module's state dict (its checkpoint filter). A *preset* is a named full-size model: its
config, its weight source and its metadata. Adapters register themselves when `tokbench_adapters` is imported.
"""

from __future__ import annotations

import copy
import difflib
import fnmatch
import importlib
import json
import logging
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from .api import Tokenizer
from .published import published_rows
from .weight_files import local_file
from .weights import (
    FILTERED_KEY,
    ResolvedWeights,
    WeightsNotFoundError,
    load_strict,
    read_checkpoint,
    resolve_weights,
    safetensors_metadata,
    unwrap_state_dict,
)

log = logging.getLogger(__name__)

StateDict = dict[str, torch.Tensor]


def _default_filter(ckpt: Any, config: dict) -> StateDict:
    return unwrap_state_dict(ckpt)


@dataclass
class Family:
    """How to build one tokenizer family and map its official checkpoints onto our modules.

    build(config) → Tokenizer; config is an upstream_config dict.
    checkpoint_filter(raw_checkpoint, config) → state dict that loads strictly into build(config).
    read_weights(path, config, trust_checkpoint) → raw checkpoint; override for non-file weights (Cosmos' folder of
      TorchScript files). When it returns a Tokenizer-ready state dict, set `filter_read_weights=False`.
    """

    name: str
    build: Callable[[dict], Tokenizer]
    checkpoint_filter: Callable[[Any, dict], StateDict] = _default_filter
    read_weights: Callable[[Path, dict, bool], Any] | None = None
    description: str = ""
    needs_weights: bool = True  # False for families that fit themselves (pixel-patch k-means)


@dataclass
class Preset:
    """A named full-size model. `config` is an upstream_config dict (or a callable returning one)."""

    name: str
    family: str
    config: dict | Callable[[], dict]
    weights: str | None = None  # hf://org/repo/file@rev, an URL (manual download), or None
    manual_url: str | None = None  # human-facing page for files that cannot be downloaded automatically
    info: dict = field(default_factory=dict)  # TokenizerInfo overrides (paper, licences, notes …)
    description: str = ""
    generator: str | None = None  # weights spec / path of an AR generator shipped for this tokenizer (its gFID)

    def get_config(self) -> dict:
        cfg = self.config() if callable(self.config) else self.config
        return copy.deepcopy(cfg)

    @property
    def published(self) -> list[dict]:
        """The numbers this preset's paper / repository publishes, with protocol and source (results/published.csv;
        empty when the file is not installed)."""
        return published_rows(self.name)


_FAMILIES: dict[str, Family] = {}
_PRESETS: dict[str, Preset] = {}
_PLUGINS_LOADED = False
_PLUGIN_PACKAGES = ("tokbench.baselines", "tokbench.models", "tokbench_adapters")
PLUGIN_ERRORS: dict[str, str] = {}


def register_family(family: Family) -> Family:
    if family.name in _FAMILIES and _FAMILIES[family.name] is not family:
        raise ValueError(f"family {family.name!r} registered twice")
    _FAMILIES[family.name] = family
    return family


def register_preset(preset: Preset) -> Preset:
    if preset.name in _PRESETS:
        raise ValueError(f"preset {preset.name!r} registered twice")
    _PRESETS[preset.name] = preset
    return preset


def _load_plugins() -> None:
    """Import every module of the adapter / model packages once, so that they register themselves.
    A module that fails to import is reported (`tokbench list` shows it) instead of breaking everything."""
    global _PLUGINS_LOADED
    if _PLUGINS_LOADED:
        return
    _PLUGINS_LOADED = True
    for pkg_name in _PLUGIN_PACKAGES:
        try:
            pkg = importlib.import_module(pkg_name)
        except ModuleNotFoundError as e:
            if e.name != pkg_name:
                PLUGIN_ERRORS[pkg_name] = repr(e)
            continue
        for mod in pkgutil.iter_modules(pkg.__path__):
            if mod.name.startswith("_"):
                continue
            try:
                importlib.import_module(f"{pkg_name}.{mod.name}")
            except Exception as e:  # noqa: BLE001 - reported, not hidden
                PLUGIN_ERRORS[f"{pkg_name}.{mod.name}"] = f"{type(e).__name__}: {e}"
                log.warning("could not import %s.%s: %s", pkg_name, mod.name, e)


def families() -> dict[str, Family]:
    _load_plugins()
    return dict(_FAMILIES)


def presets() -> dict[str, Preset]:
    _load_plugins()
    return dict(_PRESETS)


def _did_you_mean(name: str) -> str:
    close = difflib.get_close_matches(name, sorted(presets()) + sorted(families()), n=3, cutoff=0.6)
    return f"; did you mean {', '.join(close)}?" if close else ""


def get_family(name: str) -> Family:
    fams = families()
    if name not in fams:
        raise KeyError(f"unknown tokenizer or family {name!r}{_did_you_mean(name)} (`tokbench list` shows every "
                       f"preset; families: {', '.join(sorted(fams))})")
    return fams[name]


def get_preset(name: str) -> Preset:
    ps = presets()
    if name not in ps:
        raise KeyError(f"unknown tokenizer {name!r}{_did_you_mean(name)} (`tokbench list` shows all {len(ps)} presets)")
    return ps[name]


def list_tokenizers(pattern: str | None = None, *, family: str | None = None) -> list[str]:
    """Names of registered presets, sorted: all, those of a family (`"titok"`), or those matching a shell-style
    pattern (`"tokbench-zoo*"`). A pattern that matches nothing raises KeyError with suggestions, never `[]`."""
    ps = presets()
    if family is not None:
        get_family(family)  # an unknown family is an error with suggestions, not []
        pattern = family
    if pattern is None:
        return sorted(ps)
    if pattern in families():
        return sorted(n for n, p in ps.items() if p.family == pattern)
    hits = sorted(fnmatch.filter(ps, pattern))
    if not hits:
        raise KeyError(f"no preset or family matches {pattern!r}{_did_you_mean(pattern)}")
    return hits


def build_tokenizer(family: str, upstream_config: dict, *, device: torch.device | str = "cpu") -> Tokenizer:
    """Build a family's model from an upstream_config with its own (random) init, without weights."""
    return get_family(family).build(copy.deepcopy(upstream_config)).to(device).eval()


def load_tokenizer(
    name: str,
    weights: str | Path | None = None,
    upstream_config: Mapping | None = None,
    device: torch.device | str = "cpu",
    *,
    pretrained: bool = True,
    trust_checkpoint: bool = False,
) -> Tokenizer:
    """Build a tokenizer and load its weights strictly.

    name: a preset (`llamagen-vq16`), a family (`llamagen_vq`, then `upstream_config` is required), or the path of a
      tokbench checkpoint (a `.safetensors` file with tokbench metadata, as `train-robust` writes).
    weights: a local file or folder, or `hf://org/repo/path@revision`; defaults to the preset's official weights.
    pretrained: False builds the model with random weights (benchmarks, layout checks).
    """
    p = Path(str(name)).expanduser()
    if name not in presets() and name not in families() and p.suffix == ".safetensors" and p.exists():
        return _load_tokbench_checkpoint(p, device)

    preset = presets().get(name)
    if preset is not None:
        family = get_family(preset.family)
        config = dict(upstream_config) if upstream_config is not None else preset.get_config()
        spec = weights if weights is not None else preset.weights
    else:
        family = get_family(name)
        if upstream_config is None:
            raise ValueError(f"{name!r} is a family: pass upstream_config (e.g. a fixture's config.json) or use a preset")
        config, spec = copy.deepcopy(dict(upstream_config)), weights

    model = family.build(copy.deepcopy(config))
    model.info.preset = preset.name if preset else model.info.preset
    if preset is not None:
        for k, v in preset.info.items():
            setattr(model.info, k, v)
    resolved: ResolvedWeights | None = None
    if pretrained and family.needs_weights:
        if spec is None:
            raise WeightsNotFoundError(f"{name}: no weights given and the preset names none; pass weights=PATH")
        resolved = resolve_weights(spec, what=name, manual_url=preset.manual_url if preset else None)
        load_weights_into(model, family, resolved.path, config, trust_checkpoint=trust_checkpoint, what=str(spec))
        model.info.weight_source = str(spec)
    model.weights = resolved  # type: ignore[attr-defined]
    return model.to(device).eval()


def load_weights_into(model: Tokenizer, family: Family, path: Path, config: dict, *, trust_checkpoint: bool = False,
                      what: str = "checkpoint") -> None:
    """Read a checkpoint, apply the family's filter (unless `tokbench convert` already did), load strictly."""
    if family.read_weights is not None:
        raw = family.read_weights(path, config, trust_checkpoint)
    else:
        raw = read_checkpoint(path, trust_checkpoint=trust_checkpoint)
    already = path.is_file() and path.suffix == ".safetensors" and safetensors_metadata(path).get(FILTERED_KEY) == family.name
    sd = raw if already else family.checkpoint_filter(raw, config)
    load_strict(model, sd, what=what)


def _load_tokbench_checkpoint(path: Path, device) -> Tokenizer:
    meta = safetensors_metadata(path)
    if "tokbench.family" not in meta or "tokbench.config" not in meta:
        raise ValueError(f"{path} is not a tokbench checkpoint (no tokbench.family / tokbench.config metadata); "
                         "pass a preset or family name and weights=PATH")
    family = get_family(meta["tokbench.family"])
    config = json.loads(meta["tokbench.config"])
    model = family.build(copy.deepcopy(config))
    load_weights_into(model, family, path, config, what=str(path))
    model.info.weight_source = str(path)
    if "tokbench.preset" in meta:
        model.info.preset = meta["tokbench.preset"]
    model.weights = ResolvedWeights(path, str(path))  # type: ignore[attr-defined]
    return model.to(device).eval()


def weights_available_locally(preset: Preset) -> bool:
    """True when the preset's weights can be had without network (weights folder, Hub cache, local path)."""
    if not get_family(preset.family).needs_weights:
        return True
    return preset.weights is not None and local_file(preset.weights) is not None
