"""`tokbench train-robust`: train tokbench's own tokenizer with latent perturbation / Reg-VQ
(see tokbench.tokenizer_training)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

NAME = "train-robust"
HELP = "train the in-house tokenizer (ViT-VQGAN-style or conv) with RobustTok latent perturbation and Reg-VQ"
ORDER = 60
DESCRIPTION = HELP + """

examples:
  tokbench train-robust --config benchmarks/experiments/train_robust/smoke.yaml --data sample --out runs/smoke
  tokbench train-robust --config benchmarks/experiments/train_robust/smoke.yaml --data sample --out runs/smoke --resume
  torchrun --nproc_per_node 8 -m tokbench train-robust --config benchmarks/experiments/train_robust/experiment_conv32.yaml --data DIR

The EMA weights are exported to OUT/tokenizer.safetensors, which `tokbench.load_tokenizer(path)` and `tokbench run`
load like any tokenizer. OUT/log.jsonl has the losses, usage and perplexity; OUT/samples/ the reconstruction grids
(rows: originals, reconstructions, and with perturbation on, reconstructions from perturbed tokens)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="training YAML (see benchmarks/experiments/train_robust/)")
    p.add_argument("--data", default="sample", help="'sample' (embedded images) or an image folder (default: sample)")
    p.add_argument("--out", default=None, help="output folder (default: runs/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last.pt")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 … (default: cuda when available)")
    p.add_argument("--steps", type=int, default=None, help="override train.steps")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar")


def run(args: argparse.Namespace) -> int:
    import torch  # deferred on purpose: `tokbench --help` / `list` must not import torch

    from ..dist import init_from_env, shutdown
    from ..tokenizer_training import Trainer, load_config
    from ..tokenizer_training.data import open_training_data

    cfg = load_config(args.config)
    if args.steps is not None:
        cfg["train"]["steps"] = int(args.steps)
    out = Path(args.out or Path("runs") / Path(args.config).stem)
    device = args.device
    info = init_from_env(device)
    if info.active and torch.cuda.is_available():
        device = device or f"cuda:{info.local_rank}"
    ckpt = out / "checkpoints" / "last.pt"
    if ckpt.exists() and not args.resume:
        raise ValueError(f"{out} already has a checkpoint; pass --resume to continue or choose another --out")
    data = open_training_data(args.data, cfg["data"]["resolution"], cfg["data"]["num_images"])
    trainer = Trainer(cfg, data, out_dir=out, device=device, progress=not args.no_progress)
    if args.resume and not trainer.resume():
        print(f"no checkpoint at {ckpt}; starting from scratch")
    res = trainer.fit()
    if trainer.rank == 0:
        print(json.dumps({"tokenizer": res.get("tokenizer"), "step": res["step"], "eval": res.get("eval")},
                         indent=1, default=str))
    shutdown(info)
    return 0
