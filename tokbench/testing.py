"""Helpers for tests: parity fixtures from ../shared, meta-device state dicts from manifests, a toy tokenizer and a toy
feature extractor (cheap, deterministic; also usable from the subprocesses of concurrency tests)."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Callable, Iterable

import torch

from .api import CodebookSpace, TokenLayout, Tokenizer, TokenizerInfo, Tokens
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


class ToyExtractor:
    """A fixed random projection of 4x4-pooled images: cheap, deterministic, FID exactness is not the point here."""

    dim = 12

    def __init__(self, seed: int = 0):
        self.w = torch.randn(48, self.dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        self.protocol = {"extractor": "toy-projection", "weights_sha256": f"seed{seed}", "random_weights": True}

    def to(self, device):
        return self

    def __call__(self, images):
        x = torch.nn.functional.adaptive_avg_pool2d(images.to(torch.float64) / 255.0, 4).flatten(1)
        return torch.tanh(x @ self.w * 3.0)


class ToyVQ(Tokenizer):
    """4x4 pixel-patch VQ with a seeded random codebook, 16 px images."""

    def __init__(self, k: int = 32, seed: int = 0, nan: bool = False):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("codebook", torch.rand(k, 48, generator=g))
        self.layout = TokenLayout.grid(4, 4)
        self.nan = nan
        self.info = TokenizerInfo(family="toy", preset=f"toy-vq-k{k}-s{seed}" + ("-nan" if nan else ""),
                                  resolution=16, value_range="[0,1]", vocab_size=k, tokens_per_image=16,
                                  quantizer="vq")

    @property
    def token_spaces(self):
        return [CodebookSpace(self.codebook.shape[0], codes=self.codebook, metric="l2")]

    def _encode(self, x):
        v = x.reshape(-1, 3, 4, 4, 4, 4).permute(0, 2, 4, 1, 3, 5).reshape(-1, 4, 4, 48)
        return [self.token_spaces[0].scores(v).argmax(-1)], [v]

    def decode_raw(self, tokens: Tokens):
        v = self.codebook[tokens.ids[0]]
        out = v.reshape(-1, 4, 4, 3, 4, 4).permute(0, 3, 1, 4, 2, 5).reshape(-1, 3, 16, 16)
        return out * float("nan") if self.nan else out


def run_processes(code: str, argv_per_process: list, timeout: float = 120) -> list[tuple[int, str]]:
    """Start one `python -c code` per argv at once (concurrency tests); wait, bounded, and return (rc, stderr) of
    each. A process still running at the timeout is killed and the test fails."""
    procs = [subprocess.Popen([sys.executable, "-c", code, *map(str, a)], stderr=subprocess.PIPE, text=True)
             for a in argv_per_process]
    out = []
    for p in procs:
        try:
            _, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        out.append((p.returncode, err))
    return out


class ImageList(torch.utils.data.Dataset):
    """A list of uint8 image tensors as a torch Dataset (for torch-fidelity's calculate_metrics in tests)."""

    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i]


def fork_ranks(worker: Callable, *args, world: int = 2, timeout: float = 120) -> list[str]:
    """Run `worker(rank, *args)` in `world` forked processes set up as torchrun sets up its ranks (RANK, LOCAL_RANK,
    WORLD_SIZE, a free loopback MASTER_PORT; one thread each). Returns the failures: a traceback per rank that raised,
    or a line per rank that did not exit cleanly within `timeout` — an empty list when every rank succeeded."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    errors = Path(tempfile.mkdtemp(prefix="tokbench-ranks-"))

    def child(rank: int) -> None:
        code = 0
        try:
            os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                              MASTER_PORT=str(port))
            torch.set_num_threads(1)
            worker(rank, *args)
        except BaseException:  # noqa: BLE001 - reported to the parent through a file
            (errors / f"rank{rank}.txt").write_text(traceback.format_exc())
            code = 1
        os._exit(code)

    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=child, args=(r,)) for r in range(world)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout)
    out = [f.read_text() for f in sorted(errors.glob("rank*.txt"))]
    for r, p in enumerate(procs):
        if p.is_alive():
            p.kill()
            out.append(f"rank {r} still running after {timeout} s")
        elif p.exitcode != 0 and not (errors / f"rank{r}.txt").exists():
            out.append(f"rank {r} exited with {p.exitcode}")
    return out
