"""Training a generator (GPT or RAR, `model.arch`) on a token folder: AdamW, linear warm-up + cosine decay, bf16 autocast on GPU, EMA,
torchrun/DDP, exact resume, JSON-lines log.

Exact resume by construction: the images of step s, their augmentation variants and the dropout randomness are all
functions of (seed, s, rank), never of a running random state, so a run stopped after any checkpoint and restarted
produces the same weights as one that never stopped (bit-exact on CPU). RAR's permutation orders are likewise drawn
from (seed, step) with the ratio r a pure function of the step (`tokbench.models.rar.rar_ratio`).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..dist import all_reduce_, init_from_env
from ..io import torch_save_atomic, trim_jsonl_log
from ..models.generator import SequenceHeads
from ..models.rar import rar_ratio
from ..nn.schedule import warmup_cosine
from .archs import build_generator, generator_config
from .checkpoint import GeneratorMeta, TokenizerRef, save_generator
from .sampling import SamplingConfig
from .tokenset import TokenSet

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    steps: int | None = None  # total optimiser steps (or give epochs)
    epochs: float | None = None
    batch_size: int = 256  # global, over all ranks
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.05
    warmup_steps: int = 0
    min_lr: float = 0.0  # cosine floor
    grad_clip: float = 1.0
    ema: float = 0.9999  # 0 = no EMA; the decay warms up as min(ema, (1 + step) / (10 + step))
    seed: int = 0
    bf16: bool = True  # autocast on CUDA only
    log_every: int = 50
    ckpt_every: int = 1000
    num_classes: int | None = None  # None: the token folder's class count (0 → unconditional)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown train config keys {sorted(unknown)}; known: {sorted(names)}")
        d = dict(d)
        if "betas" in d:
            d["betas"] = tuple(float(b) for b in d["betas"])
        for k in ("lr", "weight_decay", "min_lr", "grad_clip", "ema"):
            if k in d:
                d[k] = float(d[k])
        return cls(**d)

    def total_steps(self, num_images: int) -> int:
        if self.steps:
            return int(self.steps)
        if self.epochs:
            return max(1, math.ceil(self.epochs * num_images / self.batch_size))
        raise ValueError("the train config needs `steps` or `epochs`")


@dataclass
class RunConfig:
    """A whole `benchmarks/experiments/gen/<name>.yaml`: model architecture, training, default sampler settings."""

    model: dict = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    sampling: dict = field(default_factory=dict)
    name: str = "gen"

    @classmethod
    def load(cls, path: str | Path) -> "RunConfig":
        import yaml

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"generator config {path} does not exist (see benchmarks/experiments/gen/)")
        d = yaml.safe_load(path.read_text()) or {}
        return cls.from_dict(d, name=path.stem)

    @classmethod
    def from_dict(cls, d: dict, name: str = "gen") -> "RunConfig":
        unknown = set(d) - {"model", "train", "sampling", "name", "description"}
        if unknown:
            raise ValueError(f"unknown generator config sections {sorted(unknown)}")
        SamplingConfig.from_dict(d.get("sampling") or {})  # validate early
        return cls(dict(d.get("model") or {}), TrainConfig.from_dict(d.get("train") or {}), dict(d.get("sampling") or {}),
                   d.get("name", name))

    def to_dict(self) -> dict:
        t = asdict(self.train)
        t["betas"] = list(t["betas"])
        return {"name": self.name, "model": self.model, "train": t, "sampling": self.sampling}


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Linear warm-up to lr over warmup_steps, then cosine decay to min_lr at the last step."""
    return warmup_cosine(step, cfg.warmup_steps, total, cfg.lr, cfg.min_lr)


class BatchPlan:
    """Which images (and augmentation variants) form global step s: epoch-wise permutations seeded by (seed, epoch)."""

    def __init__(self, num_images: int, batch_size: int, variants: int, seed: int) -> None:
        self.n, self.b, self.a, self.seed = num_images, batch_size, variants, seed
        self._perm: tuple[int, np.ndarray] | None = None

    def _perm_of(self, epoch: int) -> np.ndarray:
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng([self.seed, epoch]).permutation(self.n))
        return self._perm[1]

    def step(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        pos = np.arange(step * self.b, (step + 1) * self.b, dtype=np.int64)
        idx = np.empty_like(pos)
        for e in np.unique(pos // self.n):
            sel = pos // self.n == e
            idx[sel] = self._perm_of(int(e))[pos[sel] % self.n]
        var = np.random.default_rng([self.seed, step, 1]).integers(0, self.a, size=self.b)
        return idx, var


class _LossModule(nn.Module):
    """DDP hooks `forward`; the loss lives in the generator's `loss` (RAR also takes this step's orders)."""

    def __init__(self, model: SequenceHeads) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor, labels: torch.Tensor, orders: torch.Tensor | None = None) -> torch.Tensor:
        kw = {} if orders is None else {"orders": orders}
        return self.model.loss(ids, self.model.drop_labels(labels), **kw)


def train(tokens: str | Path | TokenSet, config: RunConfig, out_dir: str | Path, *, device: str | None = None,
          stop_at: int | None = None, resume: bool = True, progress: bool = True) -> Path:
    """Train (or resume) and return the path of `generator.safetensors` (EMA weights when EMA is on).
    stop_at: stop after that many steps (saving a checkpoint), as an interrupted run would."""
    ts = tokens if isinstance(tokens, TokenSet) else TokenSet(tokens)
    tc = config.train
    info = init_from_env()
    rank, world, local = info.rank, info.world, info.local_rank
    if device is None:
        device = f"cuda:{local}" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if tc.batch_size % world:
        raise ValueError(f"batch size {tc.batch_size} is not divisible by {world} processes")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    num_classes = ts.num_classes if tc.num_classes is None else int(tc.num_classes)
    if num_classes and (ts.labels < 0).any():
        raise ValueError(f"{ts.path} has unlabelled images; set train.num_classes: 0 for unconditional training")
    if num_classes and len(ts) and int(ts.labels.max()) >= num_classes:
        raise ValueError(f"labels reach {int(ts.labels.max())} but num_classes is {num_classes}")
    gcfg = generator_config({**config.model, "num_classes": num_classes})
    torch.manual_seed(tc.seed)
    model = build_generator(gcfg, ts.spec).to(dev)
    skip = model.no_weight_decay()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and n not in skip]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2 or n in skip]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": tc.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=tc.lr, betas=tc.betas)
    ema = [p.detach().float().clone() for p in model.parameters()] if tc.ema > 0 else None
    total = tc.total_steps(len(ts))

    step = 0
    state_path = out / "state.pt"
    if resume and state_path.exists():
        try:
            st = torch.load(state_path, map_location=dev, weights_only=True)
        except Exception as e:  # noqa: BLE001 - a damaged state: name it (never silently restart a training)
            raise ValueError(f"{state_path}: unreadable generator training state ({type(e).__name__}: {e}); restore "
                             "it, or use another --out / --no-resume") from e
        if st.get("config") != config.to_dict():
            raise ValueError(f"{out} holds a run with another config; use another --out or --no-resume")
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optim"])
        if ema is not None:
            for e, v in zip(ema, st["ema"]):
                e.copy_(v)
        step = int(st["step"])
        log.info("resumed %s at step %d of %d", out, step, total)
        if rank == 0:
            trim_jsonl_log(out / "log.jsonl", step)

    wrapped: nn.Module = _LossModule(model)
    if world > 1:
        wrapped = nn.parallel.DistributedDataParallel(wrapped, device_ids=[dev.index] if dev.type == "cuda" else None)
    plan = BatchPlan(len(ts), tc.batch_size, ts.variants, tc.seed)
    use_bf16 = tc.bf16 and dev.type == "cuda"
    end = total if stop_at is None else min(total, int(stop_at))

    def save(final: bool) -> None:
        if rank != 0:
            return
        torch_save_atomic({"step": step, "model": model.state_dict(), "optim": opt.state_dict(),
                            "ema": ema if ema is not None else [], "config": config.to_dict()}, state_path)
        weights = model.state_dict()
        if ema is not None:
            names = [n for n, _ in model.named_parameters()]
            weights = {**weights, **dict(zip(names, ema))}
        meta = GeneratorMeta(gcfg, ts.spec, TokenizerRef.from_dict(ts.meta["tokenizer"]), config.sampling,
                             {"step": step, "total_steps": total, "config": config.to_dict(), "tokens": str(ts.path),
                              "num_images": len(ts), "aug": ts.meta.get("aug"), "ema": ema is not None,
                              "classes": ts.classes[:2000], "data": ts.meta.get("data")})
        save_generator(out / "generator.safetensors", weights, meta)

    from tqdm.auto import tqdm

    bar = tqdm(total=end, initial=step, desc="train-gen", disable=not progress or rank != 0)
    logf = open(out / "log.jsonl", "a") if rank == 0 else None
    losses, t0, tokens_seen = [], time.time(), 0
    model.train()
    try:
        while step < end:
            idx, var = plan.step(step)
            ids, labels = ts.get(idx[rank::world], var[rank::world])
            ids, labels = ids.to(dev), labels.to(dev)
            torch.manual_seed(tc.seed * 1_000_003 + step * 997 + rank)  # dropout / class dropout of this step
            lr = lr_at(step, total, tc)
            for g in opt.param_groups:
                g["lr"] = lr
            orders, ratio = None, None
            if gcfg.arch == "rar":
                ratio = rar_ratio(step, total, gcfg.anneal_start, gcfg.anneal_end)
                orders = model.sample_orders(tc.batch_size, ratio, tc.seed, step)
                orders = None if orders is None else orders[rank::world]
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_bf16):
                loss = wrapped(ids, labels, orders)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gn = nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip) if tc.grad_clip > 0 else torch.zeros(())
            opt.step()
            if ema is not None:
                d = min(tc.ema, (1 + step) / (10 + step))
                with torch.no_grad():
                    torch._foreach_lerp_(ema, [p.detach().float() for p in model.parameters()], 1.0 - d)
            step += 1
            losses.append(loss.detach().float())  # no per-step device sync
            tokens_seen += ids.shape[0] * ids.shape[1] * world
            bar.update(1)
            if step % tc.log_every == 0 or step == end:
                mean_loss = float(torch.stack(losses).mean())
                if world > 1:  # every rank reaches this line at the same steps
                    t = torch.tensor([mean_loss], dtype=torch.float64, device=dev)
                    all_reduce_(t, info)
                    mean_loss = float(t) / world
            if logf and (step % tc.log_every == 0 or step == end):
                el = time.time() - t0
                rec = {"step": step, "loss": mean_loss, "lr": lr, "grad_norm": float(gn),
                       "elapsed_s": round(el, 3), "tokens_per_s": round(tokens_seen / max(el, 1e-9), 1)}
                if ratio is not None:
                    rec["rar_ratio"] = ratio
                logf.write(json.dumps(rec) + "\n")
                logf.flush()
                bar.set_postfix(loss=f"{rec['loss']:.4f}")
            if step % tc.log_every == 0 or step == end:
                losses, t0, tokens_seen = [], time.time(), 0
            if tc.ckpt_every and step % tc.ckpt_every == 0 and step < end:
                save(final=False)
        save(final=True)
    finally:
        bar.close()
        if logf:
            logf.close()
    return out / "generator.safetensors"
