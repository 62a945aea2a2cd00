"""Presets for the in-house weights shipped in `tokbench/zoo_weights/` (written by `tokbench zoo --export-weights`):
`tokbench-zoo-<name>`, a trained in-house tokenizer whose `Preset.generator` is `<name>.generator.safetensors`, the AR
generator trained on its tokens (its tokenizer reference is the preset name). A plugin module of `tokbench.models`:
the registry imports it like every other model module, so neither the registry nor the runner names the zoo pipeline.
`register_all()` returns their names. Nothing here downloads: the files live in the package."""

from __future__ import annotations

import json
from pathlib import Path

from ..registry import Preset, presets, register_preset
from ..weights import safetensors_metadata

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "zoo_weights"


def manifest(folder: Path = WEIGHTS_DIR) -> list[dict]:
    p = folder / "manifest.json"
    if not p.is_file():
        return []
    return list(json.loads(p.read_text()).get("weights", []))


def generator_path(preset: str, folder: Path = WEIGHTS_DIR) -> Path:
    """The shipped generator trained on the tokens of zoo preset `preset`."""
    for r in manifest(folder):
        if r["preset"] == preset:
            return folder / r["generator"]
    raise KeyError(f"no shipped zoo generator for {preset!r}; shipped: {[r['preset'] for r in manifest(folder)]}")


def register_all(folder: Path = WEIGHTS_DIR) -> list[str]:
    names = []
    for r in manifest(folder):
        if r["preset"] in presets():
            names.append(r["preset"])
            continue
        path = folder / r["tokenizer"]
        if not path.is_file():
            continue
        meta = safetensors_metadata(path)
        a = r.get("axes", {})
        register_preset(Preset(
            r["preset"], meta["tokbench.family"], json.loads(meta["tokbench.config"]), weights=str(path),
            generator=str(folder / r["generator"]),
            info={"weight_source": f"tokbench/zoo_weights/{r['tokenizer']} (trained by `tokbench zoo`, zoo {r['zoo']})",
                  "weights_license": "same as tokbench's code (trained here on scikit-image sample photographs)",
                  "notes": (f"tiny in-house zoo tokenizer: {a.get('arch')}, {a.get('codebook')} codes, lookup "
                            f"{a.get('lookup_dim')}-d, latent perturbation {a.get('latent_perturbation')}, Reg-VQ "
                            f"{a.get('regvq')}; generator: {r['generator']}. A smoke-test model, not a good tokenizer.")},
            description=f"tokbench zoo tokenizer {r['name']} (32 px, trained offline on the sample set)"))
        names.append(r["preset"])
    return names


PRESETS = register_all()
