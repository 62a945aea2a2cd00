"""The benchmark's metrics as objects: each takes every batch (`update`), saves and restores its state for resume
(`state_dict` / `load_state_dict`), combines the processes (`all_reduce`) and writes its part of the result's
`metrics` (`summary`). `MetricSet` holds the metrics of one run and the chunk-ordered sums they share.

FID and PSNR/SSIM sums are not kept by the metric: each chunk gets fresh sums (`MetricSet.begin_chunk`) that
`ChunkOrderedSums` folds into the totals in chunk order, so that N processes give bit-identical numbers to one; their
state is that of the `ChunkOrderedSums` (state field "sums"). Replacement counts and codebook statistics are exact
integer counts, kept by their metric and all-reduced at the end (state fields "rates" and "codebook").
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image

from ..api import Tokenizer, Tokens
from ..fid import frechet_details, frechet_distance, kernel_inception_distance
from ..metrics import CodebookStats, ImageQuality
from ..perturb import PerturbSetting, neighbour_rules, rule_summary
from ..dist import DistInfo, all_reduce_
from .ordered import ChunkOrderedSums


class ChunkSlot:
    """The sums of the chunk being computed: one FID accumulator per label and one `ImageQuality`."""

    def __init__(self) -> None:
        self.accs: dict = {}
        self.quality: ImageQuality | None = None


class EvalBatch:
    """One batch as the metrics see it: images, indices, tokens, the clean reconstruction, and each perturbation
    setting's perturbed result and reconstruction (made by `perturb` when asked; kept for a second reader only when
    `keep_perturbed`, so that a run with many settings holds one perturbed batch at a time)."""

    def __init__(self, images: torch.Tensor, indices: torch.Tensor, tokens: Tokens, reconstruction: torch.Tensor,
                 perturb: Callable[[PerturbSetting], tuple[Any, torch.Tensor]], keep_perturbed: bool = False):
        self.images, self.indices, self.tokens, self.reconstruction = images, indices, tokens, reconstruction
        self._perturb, self._keep = perturb, keep_perturbed
        self._perturbed: dict[str, tuple[Any, torch.Tensor]] = {}

    def perturbed(self, s: PerturbSetting) -> tuple[Any, torch.Tensor]:
        """(the perturber's result, its decoded uint8 images) of setting s."""
        if s.label in self._perturbed:
            return self._perturbed[s.label]
        out = self._perturb(s)
        if self._keep:
            self._perturbed[s.label] = out
        return out


class Metric:
    """One metric of a run. `state_key`: its field in the resume state (None: its sums live in the chunk-ordered
    sums, or it has no state)."""
    state_key: str | None = None

    def update(self, batch: EvalBatch) -> None:
        pass

    def state_dict(self) -> Any:
        return None

    def load_state_dict(self, sd: Any) -> None:
        pass

    def all_reduce(self, info: DistInfo) -> None:
        pass

    def summary(self) -> dict:
        return {}


class CleanFid(Metric):
    """rFID of the clean reconstructions (and rKID when the suite asks for KID)."""

    def __init__(self, sums: ChunkOrderedSums, slot: ChunkSlot, extractor, ref_acc, timer, kid: bool):
        self.sums, self.slot, self.extractor, self.ref_acc, self.timer, self.kid = \
            sums, slot, extractor, ref_acc, timer, kid

    def update(self, batch: EvalBatch) -> None:
        with self.timer("features"):
            self.slot.accs["rfid"].update(self.extractor(batch.reconstruction))

    def summary(self) -> dict:
        acc = self.sums.total["rfid"]
        fd = frechet_details(acc, self.ref_acc)
        out = {"rfid": fd["value"], "frechet": {k: fd[k] for k in ("method", "n1", "n2", "dim", "small_sample")}}
        if self.kid:
            k = kernel_inception_distance(acc.features(), self.ref_acc.features())
            out.update(rkid=k["kid"], rkid_std=k["kid_std"], kid_subsets=k["protocol"])
        return out


class PerturbedFid(Metric):
    """pFID per perturbation setting (and pKID when asked), with each setting's replacement counts (changed,
    eligible tokens); the summary groups the settings that differ only in seed."""
    state_key = "rates"

    def __init__(self, settings: Sequence[PerturbSetting], sums: ChunkOrderedSums, slot: ChunkSlot, extractor,
                 ref_acc, timer, tok: Tokenizer, kid: bool):
        self.settings, self.sums, self.slot, self.extractor, self.ref_acc, self.timer, self.tok, self.kid = \
            list(settings), sums, slot, extractor, ref_acc, timer, tok, kid
        self.rates = {s.label: torch.zeros(2, dtype=torch.int64) for s in self.settings}

    def update(self, batch: EvalBatch) -> None:
        for s in self.settings:
            pr, prec = batch.perturbed(s)
            self.rates[s.label] += torch.stack([pr.changed.sum(), pr.eligible.sum()]).cpu()
            with self.timer("features"):
                self.slot.accs[s.label].update(self.extractor(prec))

    def state_dict(self) -> dict:
        return self.rates

    def load_state_dict(self, sd: dict) -> None:
        for k in self.rates:
            self.rates[k] = sd[k].clone()

    def all_reduce(self, info: DistInfo) -> None:
        if info.active:
            for k in self.rates:
                self.rates[k] = all_reduce_(self.rates[k], info)

    def summary(self) -> dict:
        if not self.settings:
            return {}
        rows, curve = pfid_summary(self.settings, self.sums.total, self.ref_acc, self.rates, self.tok, self.kid)
        return {"pfid": rows, "pfid_curve": curve}


class Quality(Metric):
    """PSNR and/or SSIM of the clean reconstructions against the inputs."""

    def __init__(self, sums: ChunkOrderedSums, slot: ChunkSlot, timer, want_psnr: bool, want_ssim: bool):
        self.sums, self.slot, self.timer, self.want_psnr, self.want_ssim = sums, slot, timer, want_psnr, want_ssim

    def update(self, batch: EvalBatch) -> None:
        with self.timer("metrics"):
            self.slot.quality.update(batch.images, batch.reconstruction, self.want_psnr, self.want_ssim)

    def summary(self) -> dict:
        q = self.sums.quality.summary()
        return {"psnr": q["psnr"] if self.want_psnr else None, "ssim": q["ssim"] if self.want_ssim else None,
                "image_quality": q}


class Codebook(Metric):
    """Codebook usage, perplexity, entropy and per-window usage (`CodebookStats`)."""
    state_key = "codebook"

    def __init__(self, tok: Tokenizer, window: int, timer):
        self.stats, self.timer = CodebookStats(tok.token_spaces, tok.layout, window=window), timer

    def update(self, batch: EvalBatch) -> None:
        with self.timer("metrics"):
            self.stats.update(batch.tokens, batch.indices)

    def close_windows(self, windows: list[int]) -> None:
        self.stats.close_windows(windows)

    def state_dict(self) -> dict:
        return self.stats.state_dict()

    def load_state_dict(self, sd: dict) -> None:
        self.stats.load_state_dict(sd)

    def all_reduce(self, info: DistInfo) -> None:
        self.stats.all_reduce()

    def summary(self) -> dict:
        return {"codebook": self.stats.summary()}


class ImageWriter(Metric):
    """Not a metric: writes every clean and perturbed reconstruction as `<folder>/<label>/<index>.png` (the batch
    must keep its perturbed images: `EvalBatch(keep_perturbed=True)`)."""

    def __init__(self, folder, settings: Sequence[PerturbSetting]):
        self.folder, self.settings = folder, list(settings)

    def update(self, batch: EvalBatch) -> None:
        self._save("clean", batch.reconstruction, batch.indices)
        for s in self.settings:
            self._save(s.label, batch.perturbed(s)[1], batch.indices)

    def _save(self, label: str, imgs: torch.Tensor, idx: torch.Tensor) -> None:
        d = self.folder / label
        d.mkdir(parents=True, exist_ok=True)
        for im, i in zip(imgs.cpu(), idx.tolist()):
            Image.fromarray(im.permute(1, 2, 0).numpy()).save(d / f"{i:06d}.png")


class MetricSet:
    """The metrics one suite asks for, in the order their summaries appear in the result, and the chunk-ordered sums
    (FID per label, PSNR/SSIM) they share."""

    def __init__(self, want: set, settings: Sequence[PerturbSetting], tok: Tokenizer, extractor, ref_acc,
                 info: DistInfo, timer, usage_window: int, image_dir=None):
        labels = (["rfid"] if "rfid" in want else []) + [s.label for s in settings]
        keep = "all" if "kid" in want else "auto"  # KID needs every feature row; the exact small-n FID those while n ≤ d
        self.sums = ChunkOrderedSums(labels, extractor.dim, info, keep=keep)
        self.slot = ChunkSlot()
        self.labels = labels
        kid = "kid" in want
        self.codebook = Codebook(tok, usage_window, timer) if "usage" in want else None
        self.metrics: list[Metric] = []
        if "rfid" in want:
            self.metrics.append(CleanFid(self.sums, self.slot, extractor, ref_acc, timer, kid=kid))
        self.perturbed = PerturbedFid(settings, self.sums, self.slot, extractor, ref_acc, timer, tok, kid=kid)
        self.metrics.append(self.perturbed)
        if want & {"psnr", "ssim"}:
            self.metrics.append(Quality(self.sums, self.slot, timer, "psnr" in want, "ssim" in want))
        if self.codebook is not None:
            self.metrics.append(self.codebook)
        self.keep_perturbed = image_dir is not None  # the image writer reads the perturbed images a second time
        if image_dir is not None:
            self.metrics.append(ImageWriter(image_dir, settings))

    # --- one chunk ----------------------------------------------------------------------------------------------------
    def begin_chunk(self) -> None:
        self.slot.accs, self.slot.quality = self.sums.new_chunk()

    def update(self, batch: EvalBatch) -> None:
        for m in self.metrics:
            m.update(batch)

    def end_chunk(self) -> tuple[dict, ImageQuality]:
        """This chunk's sums, to be folded in chunk order."""
        chunk = (self.slot.accs, self.slot.quality)
        self.slot.accs, self.slot.quality = {}, None
        return chunk

    def close_windows(self, windows: list[int]) -> None:
        """Usage windows this process has seen whole (their distinct-code counts are final)."""
        if self.codebook is not None:
            self.codebook.close_windows(windows)

    # --- state --------------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The resume state's metric fields: "sums" (chunk-ordered FID/quality sums), "rates", "codebook"."""
        sd = {"sums": self.sums.state_dict(), "rates": self.perturbed.state_dict(), "codebook": None}
        for m in self.metrics:
            if m.state_key is not None:
                sd[m.state_key] = m.state_dict()
        return sd

    def load_state_dict(self, st: dict) -> None:
        self.sums.load_state_dict(st["sums"])
        for m in self.metrics:
            if m.state_key is not None:
                m.load_state_dict(st[m.state_key])

    def all_reduce(self, info: DistInfo) -> None:
        """Combine the processes' counts (the chunk-ordered sums are already folded on every process)."""
        for m in self.metrics:
            m.all_reduce(info)

    @property
    def num_images(self) -> int:
        return self.sums.total[self.labels[0]].n if self.labels else self.sums.quality.n

    def summary(self) -> dict:
        out: dict = {}
        for m in self.metrics:
            out.update(m.summary())
        return out


def pfid_summary(settings, accs, ref_acc, rates, tok, kid: bool = False) -> tuple[list[dict], dict]:
    """pFID rows (one per setting group: mean/std over seeds, replacement rates, rules) and the α curves."""
    groups: dict = {}
    for s in settings:
        groups.setdefault((s.alpha, s.delta, s.beta, s.mode, s.scales, s.exclude_self), []).append(s)
    rows = []
    for (a, d, b, m, sc, x), ss in groups.items():
        vals = [frechet_distance(accs[s.label], ref_acc) for s in ss]
        # undefined (None) when no token was eligible (β = 0): never 0/0 written as 0
        rr = [float(rates[s.label][0]) / float(rates[s.label][1]) if int(rates[s.label][1]) else None for s in ss]
        deltas = {f"space{i}": ss[0].delta_for(sp) for i, sp in enumerate(tok.token_spaces)}
        rules = neighbour_rules(tok.token_spaces, m)
        rows.append({"alpha": a, "delta": d, "delta_abs": deltas,
                     "delta_fraction": {k: v / tok.token_spaces[int(k[5:])].vocab_size for k, v in deltas.items()},
                     "beta": b, "mode": m, "rule": rule_summary(rules), "rules": rules, "exclude_self": x,
                     "scales": list(sc) if sc else None, "seeds": [s.seed for s in ss],
                     "values": vals, "mean": float(np.mean(vals)),
                     "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0,
                     "replacement_rate": rr,
                     "replacement_rate_mean": float(np.mean(rr)) if all(v is not None for v in rr) else None})
        if kid:
            kv = [kernel_inception_distance(accs[s.label].features(), ref_acc.features())["kid"] for s in ss]
            rows[-1].update(kid_values=kv, kid_mean=float(np.mean(kv)),
                            kid_std=float(np.std(kv, ddof=1)) if len(kv) > 1 else 0.0)
    curve: dict = {}
    for r in rows:
        key = (f"delta={r['delta']},mode={r['mode']}" + (",exclude_self" if r["exclude_self"] else "")
               + (f",scales={r['scales']}" if r["scales"] else ""))
        curve.setdefault(key, []).append([r["alpha"], r["mean"], r["std"]])
    curve = {k: sorted(v) for k, v in curve.items() if len(v) > 1}
    return rows, curve
