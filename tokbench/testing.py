"""Helpers for tests: parity fixtures from ../shared, meta-device state dicts from manifests."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

import torch

from .weights import mismatch_report, shapes_of

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64,
           "int64": torch.int64, "int32": torch.int32, "uint8": torch.uint8, "bool": torch.bool, "int8": torch.int8}


def project_root() -> Path:
    return Path(__file__).resolve().parents[1]


def fixtures_root() -> Path:
    """`../shared/fixtures/parity` beside the project (TOKBENCH_FIXTURES overrides)."""
    env = os.environ.get("TOKBENCH_FIXTURES")
    return Path(env) if env else project_root().parent / "shared" / "fixtures" / "parity"


def fixture_dir(*parts: str) -> Path:
    """The fixture folder, or a loud pytest skip when ../shared is absent."""
    d = fixtures_root().joinpath(*parts)
    if not d.exists():
        import pytest

        pytest.skip(f"PARITY FIXTURE ABSENT: {d} does not exist (../shared/fixtures/parity is needed for parity tests)")
    return d


def load_fixture(*parts: str) -> tuple[dict, dict[str, torch.Tensor], Path]:
    """(config.json as dict, case tensors cloned, folder)."""
    from safetensors.torch import load_file

    d = fixture_dir(*parts)
    config = json.loads((d / "config.json").read_text())
    case = {k: v.clone() for k, v in load_file(str(d / "case.safetensors")).items()}
    return config, case, d


def manifest(*parts: str) -> dict:
    return json.loads((fixture_dir(*parts) / "manifest.json").read_text())


def meta_state_dict(keys: Iterable) -> dict[str, torch.Tensor]:
    """A manifest's `keys` list ([name, shape, dtype] rows) as meta tensors, to run checkpoint filters without weights."""
    out = {}
    for row in keys:
        name, shape = row[0], row[1]
        dtype = _DTYPES.get(row[2], torch.float32) if len(row) > 2 else torch.float32
        out[name] = torch.empty(tuple(shape), dtype=dtype, device="meta")
    return out


def layout_report(model: torch.nn.Module, state_dict: dict) -> str:
    """'' when the model's state-dict keys and shapes equal the given (filtered) state dict's."""
    return mismatch_report(shapes_of(model.state_dict()), shapes_of(state_dict))
