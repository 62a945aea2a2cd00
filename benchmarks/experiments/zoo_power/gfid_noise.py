"""gFID's own sampling noise: how much does a zoo gFID move when only the generator's samples change?

One shipped zoo generator (default: conv-k256, trained by `tokbench zoo`) draws M samples (sample i has its own fixed
seed, the gFID protocol's rule), each embedded once by the zoo's extractor (the committed zoo's random-weight
Inception, 64-d); the FD against the zoo's training split is then computed on disjoint subsets of n samples for
several n. The spread over subsets of equal n is the sampling noise at n; its n-dependence is what the power analysis
(`benchmarks/experiments/zoo_power/power.py`) extrapolates to ≥ 1,000 samples. Single-threaded: about 2 minutes.

    python benchmarks/experiments/zoo_power/gfid_noise.py --json results/zoo-power/gfid_sampling_noise.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

SIZES = (45, 90, 180, 360, 720)


def measure(preset: str, total: int, sizes=SIZES, feature: str = "64", seed: int = 0) -> dict:
    from tokbench.data import open_dataset, split_by_source
    from tokbench.fid import StatsAccumulator, frechet_distance, get_extractor, reference_stats
    from tokbench.gen import SamplingConfig, load_generator, sample_images
    from tokbench.registry import load_tokenizer
    from tokbench.models import shipped_zoo

    t0 = time.time()
    tok = load_tokenizer(preset).eval()
    gen, _ = load_generator(shipped_zoo.generator_path(preset))
    ext = get_extractor("inception-v3-compat", None, device="cpu", feature=feature)
    ds = open_dataset("sample", 32)
    train, _ = split_by_source(ds, 0.25, 0)  # the zoo's split (benchmarks/experiments/zoo.yaml data)
    ref, _ = reference_stats(train, ext, batch_size=64, use_cache=False)
    feats = []
    for _, _, images in sample_images(gen, tok, num=total, settings=SamplingConfig(), seed=seed, batch_size=90,
                                      progress=False):
        feats.append(ext(images).double())
    f = torch.cat(feats)
    rows = []
    for n in sizes:
        vals = []
        for k in range(total // n):
            acc = StatsAccumulator(f.shape[1])
            acc.update(f[k * n:(k + 1) * n])
            vals.append(float(frechet_distance(acc, ref)))
        rows.append({"n": n, "subsets": len(vals), "fd": vals, "mean": float(np.mean(vals)),
                     "sd": float(np.std(vals, ddof=1)) if len(vals) > 1 else None})
    return {"generator": f"shipped zoo generator of {preset}", "extractor": dict(getattr(ext, "protocol", {})),
            "reference": f"sample:train split at 32 px ({ref.n} images; zoo split by photograph, 0.25, seed 0)",
            "samples": total, "seed": seed, "sampling": SamplingConfig().to_dict(), "rows": rows,
            "seconds": round(time.time() - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tokbench-zoo-conv-k256")
    ap.add_argument("--samples", type=int, default=1440)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    res = measure(a.preset, a.samples)
    print(f"{res['generator']}, {res['samples']} samples, {res['seconds']} s")
    print("| n | subsets | mean FD | sd FD |\n|---|---|---|---|")
    for r in res["rows"]:
        sd = f"{r['sd']:.4f}" if r["sd"] is not None else "—"
        print(f"| {r['n']} | {r['subsets']} | {r['mean']:.4f} | {sd} |")
    if a.json:
        from tokbench.runner.schema import write_json_atomic

        write_json_atomic(a.json, res)


if __name__ == "__main__":
    main()
