"""The `train-robust` trainer: one tokenizer, VQ + commitment losses on the clean codes, then (each switchable)
Reg-VQ stochastic assignment, RobustTok latent perturbation, reconstruction / perceptual / adversarial losses.

Order inside a generator step (the part the issue pins down):
  1. encoder → projected features z; ẑ = normalise(z) for cosine codebooks; clean ids = nearest codes;
  2. VQ codebook + commitment losses on the **clean** ids;
  3. Reg-VQ stochastic mask: masked positions take a Gumbel-max draw, relaxed by the Gumbel-softmax; Reg-VQ prior KL
     on these actual results (argmax and draws);
  4. RobustTok latent perturbation of the first ⌊B·β⌋ images (α, δ annealed per epoch);
  5. straight-through latent ẑ + sg(e_ids − ẑ) (the Gumbel-softmax relaxation at Reg-VQ's stochastic positions that
     the perturbation left alone) → decoder → L2/L1, perceptual, PCL, GAN.
Random draws (mask, Gumbel, perturbation) come from a trainer generator re-seeded from (seed, rank, step) at every
step, and the batch order is a function of (seed, step); so a resumed run is bit-identical to an uninterrupted one
(on CPU; on GPU up to the non-determinism of its kernels).

Data parallel: launched by torchrun, each process trains on its share of the global batch and gradients are
all-reduced (summed then divided by the world size) before clipping and the optimiser step — the arithmetic of DDP,
done explicitly so that the adaptive GAN weight (which takes gradients inside the step) needs no special casing.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..dist import all_reduce_, broadcast_, current
from ..io import torch_save_atomic, trim_jsonl_log, write_text_atomic
from ..nn.schedule import warmup_cosine
from ..perturb import PerturbSetting, Perturber
from ..registry import get_family
from ..weights import CheckpointMismatchError, save_safetensors
from . import regularizers as R
from .data import BatchOrder, _image, split_indices, to_native
from .eval_during_training import FidContext, HeldoutImages, heldout_metrics, runner_metrics
from .losses import (LeCam, PatchDiscriminator, VGGPerceptual, adaptive_weight, hinge_d_loss, hinge_g_loss,
                     local_vgg16_weights, reconstruction_loss)
from .perturb_hook import NEIGHBOUR_RULE, perturb_ids

log = logging.getLogger(__name__)


class ModelEMA:
    """EMA copy of the model's state (floating tensors lerped, the rest copied); decay warms up as
    min(decay, (1 + step) / (10 + step)) so that short runs are not dominated by the random init."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = float(decay)
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for e, v in zip(self.module.state_dict().values(), model.state_dict().values()):
            if e.is_floating_point():
                e.lerp_(v.detach(), 1.0 - d)
            else:
                e.copy_(v)


class Trainer:
    def __init__(self, cfg: dict, dataset, *, out_dir: str | Path | None = None, device: str | torch.device | None = None,
                 progress: bool = True) -> None:
        self.cfg = cfg
        self.dist = current()
        self.rank, self.world = self.dist.rank, self.dist.world
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.out_dir = Path(out_dir) if out_dir else None
        self.progress = progress and self.rank == 0
        t, lc = cfg["train"], cfg["loss"]
        self.bf16 = self.device.type == "cuda" and t["bf16"] in ("auto", True)

        # data: fixed held-out split, step-addressed batch order
        self.dataset = dataset
        train_idx, self.holdout_idx = split_indices(len(dataset), cfg["data"]["holdout"],
                                                    getattr(dataset, "sources", None))
        self.data = BatchOrder(dataset, train_idx, t["batch_size"], seed=cfg["seed"], world=self.world,
                               rank=self.rank, hflip=cfg["data"]["hflip"], steps_per_epoch=t["steps_per_epoch"])

        # model (same init on every process), EMA, discriminator
        torch.manual_seed(cfg["seed"])
        fam = get_family(cfg["model"]["family"])
        self.model_config = {"constructor_kwargs": dict(cfg["model"]["constructor_kwargs"])}
        self.model = fam.build(copy.deepcopy(self.model_config)).to(self.device).train()
        if not hasattr(self.model, "encode_features"):
            raise ValueError(f"family {fam.name!r} is not an in-house trainable tokenizer")
        self.ema = ModelEMA(self.model, t["ema_decay"])
        self.disc = None
        if lc["adv_weight"] > 0:
            self.disc = PatchDiscriminator(lc["disc_ch"], lc["disc_layers"]).to(self.device).train()
            self.lecam = LeCam(lc["lecam_decay"]).to(self.device)

        self.opt = torch.optim.AdamW(self._param_groups(self.model, t["weight_decay"]), lr=t["lr"],
                                     betas=tuple(t["betas"]))
        sched = lambda s: warmup_cosine(s, t["warmup_steps"], t["steps"], 1.0, t["min_lr_ratio"])  # noqa: E731
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, sched)
        if self.disc is not None:
            self.opt_d = torch.optim.AdamW(self.disc.parameters(), lr=lc["disc_lr"] or t["lr"],
                                           betas=tuple(t["betas"]), weight_decay=t["weight_decay"])
            # the discriminator's schedule starts when it starts training (loss.adv_start)
            self.sched_d = torch.optim.lr_scheduler.LambdaLR(self.opt_d, lambda s: warmup_cosine(
                s, t["warmup_steps"], max(t["steps"] - lc["adv_start"], 1), 1.0, t["min_lr_ratio"]))

        # randomness of the regularisers: one generator per process, checkpointed
        self.gen = torch.Generator(device=self.device).manual_seed(cfg["seed"] * 1000 + self.rank + 1)
        self.step = 0
        self.last_used = torch.zeros(self.model.info.vocab_size, dtype=torch.int64)  # dead-code restarts (CPU)
        self.restarts_total = 0

        # choices that depend on what is available here, recorded in the log and the checkpoint
        self.choices: dict = {"neighbour_rule": NEIGHBOUR_RULE, "bf16": self.bf16, "world_size": self.world,
                              "steps_per_epoch": self.data.steps_per_epoch,
                              "train_images": len(train_idx), "heldout_images": len(self.holdout_idx)}
        self.perceptual = None
        vgg = local_vgg16_weights()
        if lc["perceptual_weight"] > 0 and vgg is not None:
            self.perceptual = VGGPerceptual(vgg).to(self.device)
            self.choices["perceptual"] = f"on: VGG-16 feature distance ({vgg})"
        else:
            self.choices["perceptual"] = ("off: perceptual_weight is 0" if lc["perceptual_weight"] <= 0 else
                                          "off: no local VGG-16/LPIPS weights (torch hub cache); never downloaded")
        if cfg["regvq"]["pcl_weight"] > 0 and cfg["regvq"]["pcl_features"] == "vgg19":
            raise ValueError("regvq.pcl_features 'vgg19' needs torchvision VGG-19 weights, which are not wired in "
                             "this version; use 'pixels'")
        self.choices["pcl_features"] = cfg["regvq"]["pcl_features"]
        self._log_file = None
        self._fid = None  # extractor + held-out reference statistics, built at the first runner evaluation

    # ------------------------------------------------------------------------------------------------------------
    @staticmethod
    def _param_groups(model: nn.Module, wd: float) -> list[dict]:
        decay, no_decay = [], []
        for n, p in model.named_parameters():
            if not p.requires_grad:
                continue
            (decay if p.ndim >= 2 and "pos_embed" not in n and "embedding" not in n else no_decay).append(p)
        return [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def perturbation_now(self, epoch: int) -> tuple[float, int]:
        p = self.cfg["perturb"]
        if not p["enabled"]:
            return 0.0, 0
        return R.annealed_perturbation(epoch, p["alpha"], p["delta"], p["start_epoch"], p["end_epoch"],
                                       p["end_ratio"])

    # ------------------------------------------------------------------------------------------------------------
    def generator_losses(self, x: torch.Tensor, epoch: int) -> dict:
        """All generator-side terms for a batch x in [−1, 1]. Returns tensors (loss, terms) and the pieces the step
        needs afterwards (rec, zp, ids_clean)."""
        cfg, lc, rv = self.cfg, self.cfg["loss"], self.cfg["regvq"]
        m, q = self.model, self.model.quantize
        out: dict = {}
        with self._autocast():
            h = m.encode_features(x)
        with torch.autocast(self.device.type, enabled=False):
            z = h.float()
            zp = q.prep(z)
            codes = q.codes().float()
            logits = q.neg_sqdist(zp, codes) / rv["temperature"]
            ids_clean = logits.detach().argmax(-1)
            # (2) VQ losses on the clean codes, before any stochastic or perturbed assignment
            l_cb, l_commit = q.vq_losses(zp, ids_clean)
            total = lc["codebook_weight"] * l_cb + lc["commit_beta"] * l_commit
            out.update(codebook=l_cb, commit=l_commit)
            if lc["entropy_weight"] > 0:
                soft = (logits * rv["temperature"] / lc["entropy_temperature"]).reshape(-1, codes.shape[0]).softmax(-1)
                out["entropy_reg"] = R.entropy(soft).mean() - R.entropy(soft.mean(0))
                total = total + lc["entropy_weight"] * out["entropy_reg"]
            # (3) Reg-VQ stochastic mask (Gumbel draws) and the prior KL on the actual quantisation results
            draw = R.gumbel_mask(logits, ids_clean, rv["mask_ratio"], rv["gumbel_tau"], generator=self.gen)
            ids_mixed, mask = draw.ids, draw.mask
            if rv["prior_weight"] > 0:
                out["prior_kl"] = R.prior_kl(R.straight_through_usage(logits, ids_mixed, draw.relaxed, mask))
                total = total + rv["prior_weight"] * out["prior_kl"]
            # (4) latent perturbation, after the VQ losses
            alpha, delta = self.perturbation_now(epoch)
            ids, redrawn = perturb_ids(z, codes, q.metric, ids_mixed, alpha=alpha, beta=cfg["perturb"]["beta"],
                                       delta=delta, generator=self.gen)
            e = F.embedding(ids, codes)
            q_st = zp + (e - zp).detach()  # straight-through to the encoder; no codebook gradient on this path
            if draw.relaxed is not None:  # Reg-VQ positions that still hold their Gumbel draw: the relaxed sample
                keep = (mask & ~redrawn)[..., None]
                q_st = torch.where(keep, R.relaxed_codes(draw, codes, rv["relaxation"]), q_st)
        with self._autocast():
            rec = m.decode_codes(q_st)
        rec_loss = reconstruction_loss(x, rec, lc["rec"])
        nll = lc["rec_weight"] * rec_loss
        out["rec"] = rec_loss
        if self.perceptual is not None:
            out["perceptual"] = self.perceptual(x, rec)
            nll = nll + lc["perceptual_weight"] * out["perceptual"]
        total = total + nll
        if rv["pcl_weight"] > 0:
            w = R.pcl_weights(F.embedding(ids_mixed, codes), F.embedding(ids_clean, codes), mask)
            grid = ids.shape[-1]
            out["pcl"] = R.pcl_loss(R.patch_features(x, grid), R.patch_features(rec, grid), w, rv["pcl_tau"])
            total = total + rv["pcl_weight"] * out["pcl"]
        if self.disc is not None and self.step >= lc["adv_start"]:
            with self._autocast():
                g = hinge_g_loss(self.disc(rec).float())
            lam = adaptive_weight(nll, g, m.last_layer()) if lc["adaptive_weight"] else torch.ones((), device=x.device)
            out.update(g_adv=g, adv_lambda=lam)
            total = total + lc["adv_weight"] * lam * g
        out.update(loss=total, rec_images=rec, zp=zp.detach(), ids_clean=ids_clean, ids=ids,
                   mask_share=mask.float().mean(), redrawn_share=redrawn.float().mean(), alpha=alpha, delta=delta)
        return out

    def _sync_grads(self, params) -> None:
        if self.world == 1:
            return
        grads = [p.grad for p in params if p.grad is not None]
        flat = torch.cat([g.reshape(-1) for g in grads])
        all_reduce_(flat, self.dist)
        flat /= self.world
        i = 0
        for g in grads:
            g.copy_(flat[i: i + g.numel()].view_as(g))
            i += g.numel()

    def train_step(self, x_uint8: torch.Tensor) -> dict:
        t, lc = self.cfg["train"], self.cfg["loss"]
        self.model.train()
        x = to_native(x_uint8, self.device)
        epoch = self.data.epoch_of(self.step)
        # the regularisers' draws are a function of (seed, rank, step): resume is exact for any number of processes
        self.gen.manual_seed((self.cfg["seed"] * 1_000_003 + self.step) * 1_009 + self.rank)
        out = self.generator_losses(x, epoch)
        self.opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        params = [p for p in self.model.parameters() if p.requires_grad]
        self._sync_grads(params)
        gnorm = torch.nn.utils.clip_grad_norm_(params, t["grad_clip"]) if t["grad_clip"] else torch.zeros(())
        self.opt.step()
        self.sched.step()
        self.model.quantize.ema_update(out["zp"], out["ids_clean"])
        restarted = self.restart_dead_codes(out["zp"], out["ids_clean"])
        logs = {k: float(v.detach()) for k, v in out.items() if isinstance(v, torch.Tensor) and v.ndim == 0}
        logs.update(alpha=out["alpha"], delta=out["delta"], grad_norm=float(gnorm))
        if self.disc is not None:
            self.opt_d.zero_grad(set_to_none=True)
            if self.step >= lc["adv_start"]:
                with self._autocast():
                    real, fake = self.disc(x).float(), self.disc(out["rec_images"].detach()).float()
                d_loss = hinge_d_loss(real, fake)
                if lc["lecam_weight"] > 0:
                    d_loss = d_loss + lc["lecam_weight"] * self.lecam(real, fake)
                d_loss.backward()
                dparams = list(self.disc.parameters())
                self._sync_grads(dparams)
                if t["grad_clip"]:
                    torch.nn.utils.clip_grad_norm_(dparams, t["grad_clip"])
                self.opt_d.step()
                self.sched_d.step()
                logs["d_loss"] = float(d_loss.detach())
        self.ema.update(self.model, self.step)
        if restarted is not None:  # a restart is a jump, not a trend: the EMA copy takes the new codes as they are
            with torch.no_grad():
                self.ema.module.quantize.embedding.weight[restarted] = self.model.quantize.embedding.weight[restarted]
            logs["restarted"] = int(restarted.numel())
            self.restarts_total += int(restarted.numel())
        if self.cfg["codebook"]["dead_after"]:
            logs["restarts_total"] = self.restarts_total
        # usage / perplexity of the clean ids of this (local) batch
        n = self.model.info.vocab_size
        counts = torch.bincount(out["ids_clean"].flatten(), minlength=n).double()
        p = counts / counts.sum()
        logs.update(usage=float((counts > 0).sum()) / n,
                    perplexity=math.exp(float(-(p[p > 0] * p[p > 0].log()).sum())),
                    lr=self.sched.get_last_lr()[0], epoch=epoch)
        self.step += 1
        logs["step"] = self.step
        return logs

    @torch.no_grad()
    def restart_dead_codes(self, zp: torch.Tensor, ids: torch.Tensor) -> torch.Tensor | None:
        """Dead-code restarts (codebook.dead_after = K > 0): every `check_every` steps, each code that the clean
        assignment has not used for K steps (summed over processes) is re-initialised to a random prepared encoder
        feature of the current batch (distinct features, drawn with the step-seeded trainer generator after the
        regularisers' draws, from rank 0's batch and broadcast: exact resume and identical codebooks across ranks).
        Its AdamW moments are zeroed (EMA codebook: its cluster size set to 1 and sum to the feature) and it gets a
        fresh K-step grace period. Returns the restarted code ids, or None."""
        c = self.cfg["codebook"]
        if not c["dead_after"]:
            return None
        q = self.model.quantize
        n = q.codebook_size
        used = torch.bincount(ids.reshape(-1), minlength=n)
        if self.world > 1:
            all_reduce_(used, self.dist)
        now = self.step + 1
        self.last_used[used.to(self.last_used.device) > 0] = now
        if now % c["check_every"]:
            return None
        dead = ((now - self.last_used) >= c["dead_after"]).nonzero().flatten().to(self.device)
        if dead.numel() == 0:
            return None
        feats = zp.reshape(-1, zp.shape[-1]).float()
        m = feats.shape[0]
        pick = (torch.randperm(m, generator=self.gen, device=self.device)[: dead.numel()] if dead.numel() <= m else
                torch.randint(0, m, (dead.numel(),), generator=self.gen, device=self.device))
        new = feats[pick].contiguous()
        if self.world > 1:
            broadcast_(new, self.dist)
        w = q.embedding.weight
        w[dead] = new.to(w.dtype)
        st = self.opt.state.get(w, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in st:
                st[key][dead] = 0
        if q.ema:
            q.ema_cluster_size[dead] = 1.0
            q.ema_embed_sum[dead] = new.to(q.ema_embed_sum.dtype)
        self.last_used[dead.cpu()] = now
        return dead

    # ------------------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        sd = {"step": self.step, "codebook_last_used": self.last_used.clone(), "restarts_total": self.restarts_total, "model": self.model.state_dict(), "ema": self.ema.module.state_dict(),
              "opt": self.opt.state_dict(), "sched": self.sched.state_dict(),
              "rng": {"torch": torch.get_rng_state(), "gen": self.gen.get_state()},
              "model_config": self.model_config, "config": json.dumps(self.cfg, sort_keys=True)}
        if self.device.type == "cuda":
            sd["rng"]["cuda"] = torch.cuda.get_rng_state(self.device)
        if self.disc is not None:
            sd.update(disc=self.disc.state_dict(), lecam=self.lecam.state_dict(), opt_d=self.opt_d.state_dict(),
                      sched_d=self.sched_d.state_dict())
        return sd

    def load_state_dict(self, sd: dict) -> None:
        if sd["model_config"] != self.model_config:
            raise ValueError("checkpoint was trained with a different model config; cannot resume")
        old = json.loads(sd["config"])
        for key in ("seed", "data"):
            if old[key] != self.cfg[key]:
                raise ValueError(f"checkpoint was trained with a different {key!r} config; resuming would not be exact")
        self.model.load_state_dict(sd["model"])
        self.ema.module.load_state_dict(sd["ema"])
        self.opt.load_state_dict(sd["opt"])
        self.sched.load_state_dict(sd["sched"])
        torch.set_rng_state(sd["rng"]["torch"])
        self.gen.set_state(sd["rng"]["gen"])
        if "cuda" in sd["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(sd["rng"]["cuda"], self.device)
        if self.disc is not None:
            if "disc" not in sd:
                raise ValueError("checkpoint has no discriminator but the config uses one")
            self.disc.load_state_dict(sd["disc"])
            self.lecam.load_state_dict(sd["lecam"])
            self.opt_d.load_state_dict(sd["opt_d"])
            self.sched_d.load_state_dict(sd["sched_d"])
        if "codebook_last_used" in sd:
            self.last_used.copy_(sd["codebook_last_used"].cpu())
            self.restarts_total = int(sd.get("restarts_total", 0))
        self.step = int(sd["step"])

    def checkpoint_path(self) -> Path:
        assert self.out_dir is not None
        return self.out_dir / "checkpoints" / "last.pt"

    def save_checkpoint(self, path: str | Path | None = None) -> Path:
        path = Path(path) if path else self.checkpoint_path()
        if self.rank == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch_save_atomic(self.state_dict(), path)
        return path

    def resume(self, path: str | Path | None = None) -> bool:
        path = Path(path) if path else self.checkpoint_path()
        if not path.exists():
            return False
        try:
            sd = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as e:  # noqa: BLE001 - a damaged checkpoint: name it (never silently restart a training)
            raise CheckpointMismatchError(f"{path}: unreadable training checkpoint ({type(e).__name__}: {e}); "
                                          "restore it or start in another --out") from e
        self.load_state_dict(sd)
        if self.rank == 0 and self.out_dir is not None:  # steps after the checkpoint are run (and logged) again
            trim_jsonl_log(self.out_dir / "log.jsonl", self.step)
        log.info("resumed from %s at step %d", path, self.step)
        return True

    def export(self, path: str | Path | None = None) -> Path:
        """EMA weights as a tokbench checkpoint: loads with `tokbench.load_tokenizer(path)`."""
        path = Path(path) if path else self.out_dir / "tokenizer.safetensors"
        meta = {"tokbench.family": self.cfg["model"]["family"], "tokbench.config": json.dumps(self.model_config),
                "tokbench.preset": self.cfg["model"]["name"],
                "tokbench.train": json.dumps({"step": self.step, "weights": "ema", "choices": self.choices,
                                              "config": self.cfg})}
        if self.rank == 0:
            save_safetensors(self.ema.module.state_dict(), path, meta)
        return path

    # ------------------------------------------------------------------------------------------------------------
    def heldout_images(self, limit: int | None = None) -> torch.Tensor:
        idx = self.holdout_idx[:limit] if limit else self.holdout_idx
        if not idx:
            raise ValueError("no held-out images (data.holdout is 0)")

        return torch.stack([_image(self.dataset[i]) for i in idx])

    def evaluate(self) -> dict:
        ev, p = self.cfg["eval"], self.cfg["perturb"]
        images = self.heldout_images(ev["max_images"])
        delta = ev["perturb_delta"] or min(p["delta"], self.model.info.vocab_size)
        model = self.ema.module
        res = heldout_metrics(model, images, alphas=ev["perturb_alphas"], delta=delta, batch_size=ev["batch_size"],
                              seed=ev["seed"])
        if not ev["runner"]:
            res["fid"] = "skipped: eval.runner is false"
            return res
        if self.rank != 0:  # one process evaluates the (small) held-out split; the others would race on its files
            res["fid"] = "computed on rank 0"
            return res
        if self._fid is None:
            idx = self.holdout_idx[: ev["max_images"]] if ev["max_images"] else self.holdout_idx
            cache = self.out_dir / "eval" / "reference_stats" if self.out_dir is not None else None
            self._fid = FidContext(HeldoutImages(images, self.dataset, idx), ev["fid_extractor"], ev["fid_weights"],
                                   self.device, ev["batch_size"], cache)
        res["fid"] = runner_metrics(model, images, alphas=ev["perturb_alphas"], delta=delta,
                                    name=f"{self.cfg['model']['name']}-step{self.step:07d}",
                                    extractor=ev["fid_extractor"], fid_weights=ev["fid_weights"], seed=ev["seed"],
                                    batch_size=ev["batch_size"], context=self._fid,
                                    out_dir=self.out_dir / "eval" if self.out_dir is not None else None)
        return res

    def save_grid(self) -> Path | None:
        if self.rank != 0 or self.out_dir is None or not self.holdout_idx:
            return None
        from PIL import Image

        x = self.heldout_images(self.cfg["train"]["sample_images"])
        model = self.ema.module
        model.keep_features = True
        toks = model.encode(x)
        rows = [x.float() / 255.0, model.decode(toks).cpu()]
        if self.cfg["perturb"]["enabled"]:
            setting = PerturbSetting(0.5, min(self.cfg["perturb"]["delta"], model.info.vocab_size), 1.0, 0, "feature")
            pr = Perturber.for_tokenizer(model)(toks, setting, torch.arange(x.shape[0]), model.last_features)
            rows.append(model.decode(pr.tokens).cpu())
        model.keep_features = False
        grid = torch.cat([torch.cat(list(r), dim=-1) for r in rows], dim=-2)  # rows of images side by side
        arr = (grid.clamp(0, 1) * 255 + 0.5).floor().to(torch.uint8).permute(1, 2, 0).numpy()
        path = self.out_dir / "samples" / f"step{self.step:07d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(path)
        return path

    def _log(self, rec: dict) -> None:
        if self.rank != 0 or self.out_dir is None:
            return
        if self._log_file is None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._log_file = open(self.out_dir / "log.jsonl", "a")
        self._log_file.write(json.dumps(rec, default=str) + "\n")
        self._log_file.flush()

    def fit(self, until: int | None = None, *, final: bool = True) -> dict:
        """Train to step `until` (default: train.steps), with periodic logs, checkpoints, grids and evaluations.
        At train.steps (when `final`): checkpoint, exported EMA tokenizer, final held-out evaluation."""
        t, ev = self.cfg["train"], self.cfg["eval"]
        total = t["steps"]
        until = min(until or total, total)
        if self.step == 0:
            self._log({"event": "start", "choices": self.choices, "config": self.cfg,
                       "params": sum(p.numel() for p in self.model.parameters())})
        from tqdm.auto import tqdm

        bar = tqdm(total=until, initial=self.step, disable=not self.progress, desc="train-robust", unit="step")
        last: dict = {}
        t0 = time.time()
        while self.step < until:
            logs = self.train_step(self.data.batch(self.step))
            last = logs
            s = self.step
            if s % t["log_every"] == 0 or s == until:
                logs["time"] = round(time.time() - t0, 3)
                self._log(logs)
                bar.set_postfix(loss=f"{logs['loss']:.4f}", rec=f"{logs['rec']:.4f}", ppl=f"{logs['perplexity']:.1f}")
            if self.out_dir is not None:
                if t["ckpt_every"] and s % t["ckpt_every"] == 0 and s < total:
                    self.save_checkpoint()
                if t["sample_every"] and s % t["sample_every"] == 0:
                    self.save_grid()
                if ev["every"] and s % ev["every"] == 0 and s < total and self.holdout_idx:
                    self._log({"event": "eval", "step": s, **self.evaluate()})
            bar.update(1)
        bar.close()
        result: dict = {"step": self.step, "last": last}
        if final and self.step >= total and self.out_dir is not None:
            self.save_checkpoint()
            result["tokenizer"] = str(self.export())
            self.save_grid()
            if self.holdout_idx:
                result["eval"] = self.evaluate()
                self._log({"event": "eval", "step": self.step, **result["eval"]})
                if self.rank == 0:
                    write_text_atomic(self.out_dir / "eval.json", json.dumps(result["eval"], indent=1, default=str))
        return result
