"""The generator architectures tokbench trains, by the `arch` key of a generator config's `model` section
(`gpt`: LlamaGen-style, the default; `rar`: randomized autoregressive). Checkpoints record the arch, so `sample`,
gFID and the zoo load either."""

from __future__ import annotations

from ..models.gen_layout import SequenceSpec
from ..models.generator import ARGenerator, GeneratorConfig, SequenceHeads
from ..models.rar import RARConfig, RARGenerator

ARCHS = {"gpt": (GeneratorConfig, ARGenerator), "rar": (RARConfig, RARGenerator)}


def arch_of(model: dict) -> str:
    arch = str(model.get("arch", "gpt"))
    if arch not in ARCHS:
        raise ValueError(f"unknown generator arch {arch!r} (model.arch); known: {sorted(ARCHS)}")
    return arch


def generator_config(model: dict) -> GeneratorConfig | RARConfig:
    """A config section (`model:` of benchmarks/experiments/gen/*.yaml, or a checkpoint's stored config) → its config
    object."""
    return ARCHS[arch_of(model)][0].from_dict(model)


def build_generator(cfg: GeneratorConfig | RARConfig, spec: SequenceSpec) -> SequenceHeads:
    return ARCHS[cfg.arch][1](cfg, spec)
