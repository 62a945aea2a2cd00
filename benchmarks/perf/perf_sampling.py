"""Sampling speed of the AR generator: tokens/second with and without the KV cache.

CPU default: a tiny class-conditional model over a 16x16 grid (256 tokens), vocabulary 1024.
GPU (issue 8): `python benchmarks/perf/perf_sampling.py --device cuda --size gpt-b --vocab 16384 --batch 256 --no-nocache --bf16`
Random weights: speed does not depend on them (the sampler always runs all steps).
"""

from __future__ import annotations

import argparse
import time

import torch

from tokbench.api import TokenLayout
from tokbench.gen.sampling import SamplingConfig, generate, sample_noise, sample_seeds
from tokbench.models.gen_layout import SequenceSpec
from tokbench.gen.archs import build_generator, generator_config


def bench(model, batch: int, cfg: float, use_cache: bool, repeats: int, bf16: bool) -> float:
    labels = torch.arange(batch) % max(1, model.cfg.num_classes)
    noise = sample_noise(sample_seeds(0, range(batch)), model.seq_len, model.num_sub)
    s = SamplingConfig(cfg=cfg, use_cache=use_cache)
    ac = torch.bfloat16 if bf16 else None
    generate(model, labels[: min(batch, 2)], noise[: min(batch, 2)], s, autocast_dtype=ac)  # warm-up
    dev = model.device
    times = []
    for _ in range(repeats):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        generate(model, labels, noise, s, autocast_dtype=ac)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return batch * model.seq_len * model.num_sub / min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="gpt", choices=("gpt", "rar"))
    ap.add_argument("--size", default="tiny", help="gpt: tiny, gpt-b, …; rar: tiny, rar-b, …")
    ap.add_argument("--grid", type=int, default=16)
    ap.add_argument("--vocab", type=int, default=1024)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--cfg", type=float, nargs="+", default=[1.0, 2.0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--no-nocache", action="store_true", help="skip the (slow) runs without the KV cache")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    spec = SequenceSpec.from_layout(TokenLayout.grid(a.grid, a.grid), [a.vocab])
    model = build_generator(generator_config({"arch": a.arch, "size": a.size, "num_classes": a.classes}), spec)
    model = model.to(a.device).eval()
    for h in model.heads:
        torch.nn.init.normal_(h.weight, std=0.02)
    print(f"model {a.size}: {model.num_params() / 1e6:.1f}M params, {spec.length} tokens/image, vocab {a.vocab}, "
          f"device {a.device}, threads {a.threads}, bf16 {a.bf16}")
    print(f"{'batch':>6} {'cfg':>5} {'KV cache tok/s':>15} {'no cache tok/s':>15} {'speed-up':>9} {'images/s (KV)':>14}")
    for b in a.batch:
        for cfg in a.cfg:
            with_cache = bench(model, b, cfg, True, a.repeats, a.bf16)
            without = float("nan") if a.no_nocache else bench(model, b, cfg, False, 1, a.bf16)
            print(f"{b:>6} {cfg:>5.1f} {with_cache:>15.0f} {without:>15.0f} {with_cache / without:>8.1f}x "
                  f"{with_cache / spec.length:>14.2f}", flush=True)


if __name__ == "__main__":
    main()
