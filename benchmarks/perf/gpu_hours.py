"""GPU-hours of the paper experiment (benchmarks/experiments/papers/robusttok-11x2.yaml) per tokenizer on one H100, estimated
from FLOPs (no GPU was lent when this was written: an ESTIMATE, not a measurement). Prints the arithmetic.

Training FLOPs = 3 (forward + backward) x forward FLOPs per position x positions; forward FLOPs per position =
2 x parameters (every weight one multiply-add; embeddings counted too, a slight over-estimate) + 2 x depth x width x
sequence length (causal attention scores and values, average context L/2). Positions = epochs x images x sequence
length (GPT: 1 class + L−1 tokens; RAR: cls + class + L−1 tokens). Sampling 50k with CFG: 2 x 50k sequences (the
null-class half) x L steps x forward FLOPs per position (KV cache; sampling is memory-bound, so this is a floor). Throughput: 40 % MFU of the H100 SXM's 989 dense
bf16 TFLOP/s. Tokenizer-side work (ten-crop encoding, rFID/pFID decoding) is not included.

    python benchmarks/perf/gpu_hours.py [--config benchmarks/experiments/papers/robusttok-11x2.yaml] [--mfu 0.4]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

IMAGENET_TRAIN = 1_281_167
PEAK = 989e12  # H100 SXM dense bf16 FLOP/s


def main() -> int:
    from tokbench.api import TokenLayout
    from tokbench.gen.archs import build_generator, generator_config
    from tokbench.models.gen_layout import SequenceSpec
    from tokbench.experiments.paper import load

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(Path(__file__).parents[1] / "experiments" / "papers" / "robusttok-11x2.yaml"))
    p.add_argument("--mfu", type=float, default=0.4)
    a = p.parse_args()
    cfg = load(a.config)
    eff = a.mfu * PEAK
    num = int(cfg["gfid"]["num"])
    print(f"throughput {a.mfu:.0%} x {PEAK / 1e12:.0f} TFLOP/s = {eff / 1e12:.0f} TFLOP/s; ImageNet train "
          f"{IMAGENET_TRAIN} images; gFID {num} samples with CFG")
    print("| tokenizer | L | vocab | arch | params | epochs | train FLOPs | train h | sample h | total h |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    grand = 0.0
    for t in cfg["tokenizers"]:
        L, V = _tokens_vocab(t["preset"])
        spec = SequenceSpec.from_layout(TokenLayout.grid(1, L), [V])
        row_total = 0.0
        for arch, rc in cfg["generators"].items():
            with torch.device("meta"):
                m = build_generator(generator_config({**rc["model"], "num_classes": 1000}), spec)
            n, depth, width = m.num_params(), m.cfg.depth, m.cfg.dim
            seq = L + (1 if arch == "rar" else 0)
            fwd = 2 * n + 2 * depth * width * seq
            epochs = float(rc["train"]["epochs"])
            train = 3 * fwd * epochs * IMAGENET_TRAIN * seq
            sample = fwd * 2 * num * L
            th, sh = train / eff / 3600, sample / eff / 3600
            row_total += th + sh
            print(f"| {t['name']} | {L} | {V} | {arch}:{rc['model'].get('size')} | {n / 1e6:.0f}M | {epochs:g} | "
                  f"{train:.2e} | {th:.0f} | {sh:.2f} | {th + sh:.0f} |")
        grand += row_total
    print(f"all {len(cfg['tokenizers'])} tokenizers x {len(cfg['generators'])} generators: {grand:.0f} H100-hours "
          f"(≈ {grand / 24:.0f} GPU-days; ESTIMATE from FLOPs at {a.mfu:.0%} MFU)")
    return 0


def _tokens_vocab(preset: str) -> tuple[int, int]:
    """Tokens per image and vocabulary of a preset: its metadata, else its model built on the meta device."""
    from tokbench.registry import get_family, get_preset

    pre = get_preset(preset)
    if pre.info.get("tokens_per_image") and pre.info.get("vocab_size"):
        return int(pre.info["tokens_per_image"]), int(pre.info["vocab_size"])
    with torch.device("meta"):
        m = get_family(pre.family).build(pre.get_config())
    return int(m.info.tokens_per_image), int(m.info.vocab_size)


if __name__ == "__main__":
    sys.exit(main())
