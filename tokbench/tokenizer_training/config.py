"""Training configuration: a YAML file merged onto `DEFAULTS`; unknown keys are an error (a typo must not silently
train the wrong model). Every value ends up in the run's `config.json` and the checkpoint metadata."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "model": {
        "family": "tokbench_vitvq",
        "name": "tokbench-vitvq-custom",  # recorded as `tokbench.preset` in the checkpoint
        "constructor_kwargs": {},
    },
    "data": {
        "resolution": 32,
        "num_images": None,
        "holdout": 0.1,  # fraction (< 1) or number of held-out images, chosen by a fixed seed
        "hflip": True,
    },
    "train": {
        "batch_size": 16,  # per process
        "steps": 1000,
        "steps_per_epoch": None,  # default: train images // global batch (drop last)
        "lr": 1e-4,
        "min_lr_ratio": 0.5,  # ViT-VQGAN: cosine from 1e-4 to 5e-5
        "warmup_steps": 100,
        "betas": [0.9, 0.99],
        "weight_decay": 1e-4,
        "grad_clip": 1.0,
        "ema_decay": 0.999,
        "bf16": "auto",  # autocast on CUDA; never on CPU
        "log_every": 10,
        "ckpt_every": 500,
        "sample_every": 500,
        "sample_images": 8,
    },
    "loss": {
        "rec": "l2",  # l2 | l1
        "rec_weight": 1.0,
        "perceptual_weight": 0.1,  # used only when local VGG-16 weights exist
        "codebook_weight": 1.0,
        "commit_beta": 0.25,
        "entropy_weight": 0.0,  # soft usage regulariser: mean per-token entropy − entropy of the mean
        "entropy_temperature": 0.01,
        "adv_weight": 0.1,
        "adv_start": 0,  # step at which the discriminator and the generator's GAN loss start
        "adaptive_weight": True,
        "lecam_weight": 0.0,
        "lecam_decay": 0.999,
        "disc_ch": 64,
        "disc_layers": 3,
        "disc_lr": None,  # default: train.lr
    },
    "perturb": {  # RobustTok latent perturbation
        "enabled": False,
        "alpha": 1.0,  # per-token rate
        "beta": 0.1,  # share of images per (per-process) batch
        "delta": 100,  # candidate set size
        "start_epoch": 0,
        "end_epoch": 0,
        "end_ratio": 1.0,  # level r reached at end_epoch and kept after it (upstream c ↔ 1 − c); 1 = constant α, δ
    },
    "codebook": {  # remedy for codebook collapse
        "dead_after": 0,  # steps: a code unused by the clean assignment for this long is restarted (0 = off)
        "check_every": 10,  # steps between checks for dead codes
    },
    "regvq": {  # Reg-VQ (re-implementation; see tokbench.tokenizer_training.regularizers)
        "prior_weight": 0.0,
        "mask_ratio": 0.0,  # the paper's 0.4 when enabled
        # logits −‖ẑ − ê‖²/τ; 0.1: P(draw = argmax) ≈ 0.5 (benchmarks/experiments/train_robust/regvq_temperature.py)
        "temperature": 0.1,
        "gumbel_tau": 1.0,  # Gumbel-softmax relaxation temperature τ_g of the stochastic positions (taming's default)
        "relaxation": "soft",  # soft (Σ y_n e_n forward) | straight_through (e_draw forward, Gumbel-softmax gradient)
        "pcl_weight": 0.0,
        "pcl_tau": 0.07,
        "pcl_features": "pixels",  # pixels | vgg19 (needs local torchvision VGG-19 weights)
    },
    "eval": {
        "every": 0,  # steps; 0 = only at the end
        "max_images": 256,
        "batch_size": 32,
        "perturb_alphas": [0.1, 0.3, 0.5],
        "perturb_delta": None,  # default: the training delta, capped at the codebook size
        "seed": 0,
        "runner": True,  # rFID/pFID/usage/PSNR through tokbench.runner.evaluate on the held-out split
        "fid_extractor": "inception-v3-compat",  # tokbench.fid.get_extractor name
        "fid_weights": None,  # extractor weights file (None: local Inception, else the flagged random-weight one)
    },
}


def _merge(base: dict, over: dict, path: str = "") -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        where = f"{path}{k}"
        if k not in base:
            raise ValueError(f"unknown config key {where!r}; known: {', '.join(sorted(base))}")
        if isinstance(base[k], dict) and k != "constructor_kwargs":
            if not isinstance(v, dict):
                raise ValueError(f"config key {where!r} must be a mapping")
            out[k] = _merge(base[k], v, where + ".")
        else:
            out[k] = copy.deepcopy(v)
    return out


def make_config(overrides: dict | None = None) -> dict:
    cfg = _merge(DEFAULTS, overrides or {})
    validate(cfg)
    return cfg


def load_config(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"training config {path} does not exist")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a training config is a YAML mapping")
    return make_config(raw)


def validate(cfg: dict) -> None:
    p, r, t = cfg["perturb"], cfg["regvq"], cfg["train"]
    if not 0 <= p["alpha"] <= 1 or not 0 <= p["beta"] <= 1:
        raise ValueError("perturb.alpha and perturb.beta must lie in [0, 1]")
    if p["delta"] < 1 or p["end_epoch"] < p["start_epoch"]:
        raise ValueError("perturb.delta must be >= 1 and perturb.end_epoch >= perturb.start_epoch")
    if not 0 <= p["end_ratio"] <= 1:
        raise ValueError("perturb.end_ratio must lie in [0, 1] (the level reached at perturb.end_epoch)")
    if p["enabled"] and p["end_ratio"] != 1 and p["end_epoch"] == 0:
        raise ValueError(f"perturb.end_ratio {p['end_ratio']:g} with perturb.end_epoch 0 would run α and δ at "
                         f"{p['end_ratio']:g}× from step 0: set an annealing window (start_epoch < end_epoch) or "
                         "end_ratio 1")
    c = cfg["codebook"]
    if c["dead_after"] < 0 or c["check_every"] < 1:
        raise ValueError("codebook.dead_after must be >= 0 and codebook.check_every >= 1")
    if not 0 <= r["mask_ratio"] <= 1:
        raise ValueError("regvq.mask_ratio must lie in [0, 1]")
    if r["pcl_weight"] > 0 and r["mask_ratio"] <= 0:
        raise ValueError("regvq.pcl_weight needs regvq.mask_ratio > 0 (PCL lives on the stochastic positions)")
    if r["temperature"] <= 0 or r["gumbel_tau"] <= 0:
        raise ValueError("regvq.temperature and regvq.gumbel_tau must be > 0")
    if r["relaxation"] not in ("soft", "straight_through"):
        raise ValueError("regvq.relaxation must be 'soft' or 'straight_through'")
    if r["pcl_features"] not in ("pixels", "vgg19"):
        raise ValueError("regvq.pcl_features must be 'pixels' or 'vgg19'")
    if t["batch_size"] < 1 or t["steps"] < 1:
        raise ValueError("train.batch_size and train.steps must be >= 1")
    if cfg["loss"]["rec"] not in ("l1", "l2"):
        raise ValueError("loss.rec must be 'l1' or 'l2'")
