"""Generator checkpoints: one safetensors file whose metadata rebuilds everything `tokbench sample` needs
(architecture, sequence layout, the tokenizer it was trained on, default sampler settings, training provenance)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..models.gen_layout import SequenceSpec
from ..models.generator import GeneratorConfig, SequenceHeads
from ..models.rar import RARConfig
from ..registry import load_tokenizer
from ..weights import load_strict, safetensors_metadata, save_safetensors, sha256_file
from .archs import build_generator, generator_config

KIND = "tokbench.generator"


@dataclass
class TokenizerRef:
    """How to rebuild the tokenizer: a preset / family / tokbench checkpoint name for `load_tokenizer`, with optional
    weights and upstream_config (families need one); pretrained=False for self-fitting stand-ins."""

    name: str
    weights: str | None = None
    upstream_config: dict | None = None
    pretrained: bool = True

    def to_dict(self) -> dict:
        return {"name": self.name, "weights": self.weights, "upstream_config": self.upstream_config,
                "pretrained": self.pretrained}

    @classmethod
    def from_dict(cls, d: dict) -> "TokenizerRef":
        return cls(d["name"], d.get("weights"), d.get("upstream_config"), bool(d.get("pretrained", True)))

    def load(self, device: str | torch.device = "cpu"):
        return load_tokenizer(self.name, weights=self.weights, upstream_config=self.upstream_config, device=device,
                              pretrained=self.pretrained)


@dataclass
class GeneratorMeta:
    config: GeneratorConfig | RARConfig  # its `arch` says which generator
    spec: SequenceSpec
    tokenizer: TokenizerRef
    sampling: dict = field(default_factory=dict)  # default sampler settings (from the training config)
    train: dict = field(default_factory=dict)  # provenance: step, token set, config name, EMA flag

    def to_metadata(self) -> dict[str, str]:
        return {"tokbench.kind": KIND, "tokbench.gen.arch": self.config.arch,
                "tokbench.gen.config": json.dumps(self.config.to_dict()),
                "tokbench.gen.sequence": json.dumps(self.spec.to_dict()),
                "tokbench.gen.tokenizer": json.dumps(self.tokenizer.to_dict()),
                "tokbench.gen.sampling": json.dumps(self.sampling), "tokbench.gen.train": json.dumps(self.train)}

    @classmethod
    def from_metadata(cls, meta: dict[str, str], what: str = "checkpoint") -> "GeneratorMeta":
        if meta.get("tokbench.kind") != KIND:
            raise ValueError(f"{what} is not a tokbench generator checkpoint (metadata tokbench.kind is "
                             f"{meta.get('tokbench.kind')!r}); train one with `tokbench train-gen`")
        config = {**json.loads(meta["tokbench.gen.config"]), "arch": meta.get("tokbench.gen.arch", "gpt")}
        return cls(generator_config(config),
                   SequenceSpec.from_dict(json.loads(meta["tokbench.gen.sequence"])),
                   TokenizerRef.from_dict(json.loads(meta["tokbench.gen.tokenizer"])),
                   json.loads(meta.get("tokbench.gen.sampling", "{}")), json.loads(meta.get("tokbench.gen.train", "{}")))

    def build(self) -> SequenceHeads:
        return build_generator(self.config, self.spec)


def save_generator(path: str | Path, state_dict: dict[str, torch.Tensor], meta: GeneratorMeta) -> None:
    save_safetensors(state_dict, path, meta.to_metadata())


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> tuple[SequenceHeads, GeneratorMeta]:
    """Rebuild the generator from a checkpoint's metadata and load its weights strictly."""
    from safetensors.torch import load_file

    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"generator checkpoint {path} does not exist")
    meta = GeneratorMeta.from_metadata(safetensors_metadata(path), str(path))
    model = meta.build()
    load_strict(model, load_file(str(path)), what=str(path))
    model.meta = meta  # provenance for gFID protocols
    model.checkpoint = {"path": str(path), "sha256": sha256_file(path)}
    return model.to(device).eval(), meta
