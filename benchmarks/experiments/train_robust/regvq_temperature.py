"""How random is Reg-VQ's stochastic draw? For each logit temperature τ (ℓ = −‖ẑ − ê‖²/τ), on the features of a
trained tokenizer: P(draw = argmax) = mean over tokens of max softmax(ℓ/τ) (exact, the Gumbel-max law), and the rank
of a Gumbel-max draw among the codes (sampled, seed 0). The criterion behind `regvq.temperature` = 0.1: the draw is a
near miss (P(draw = argmax) ≈ 0.5, mean rank ≈ 1-2), not a near-random code (τ = 1: P ≈ 0.02 on conv-k256).

    python benchmarks/experiments/train_robust/regvq_temperature.py [--tokenizer tokbench-zoo-conv-k256] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

TAUS = (1.0, 0.3, 0.2, 0.1, 0.05, 0.03, 0.01)


def measure(tokenizer: str, data: str, resolution: int, taus=TAUS, seed: int = 0) -> dict:
    import tokbench
    from tokbench.data import open_dataset

    tok = tokbench.load_tokenizer(tokenizer).eval()
    ds = open_dataset(data, resolution)
    x = torch.stack([ds[i] for i in range(len(ds))]).float().div(127.5).sub(1)
    q = tok.quantize
    with torch.no_grad():
        nd = q.neg_sqdist(q.prep(tok.encode_features(x).float()))  # −‖ẑ − ê‖², tokens x N
    g = torch.Generator().manual_seed(seed)
    rows = []
    for tau in taus:
        logits = nd / tau
        p_arg = float(logits.softmax(-1).max(-1).values.mean())
        u = torch.rand(logits.shape, generator=g).clamp_(1e-10, 1 - 1e-7)
        draw = (logits - torch.log(-torch.log(u))).argmax(-1)
        rank = (nd > nd.gather(-1, draw[..., None])).sum(-1).float()
        rows.append({"temperature": tau, "p_draw_eq_argmax": round(p_arg, 4),
                     "sampled_share_eq_argmax": round(float((rank == 0).float().mean()), 4),
                     "median_rank": float(rank.median()), "mean_rank": round(float(rank.mean()), 2)})
    return {"tokenizer": tokenizer, "data": f"{data} at {resolution} px ({len(ds)} images)",
            "tokens": int(nd.numel() // nd.shape[-1]), "codebook": int(nd.shape[-1]), "metric": q.metric,
            "logit_span_at_tau_1": [round(float(nd.min()), 4), round(float(nd.max()), 4)], "seed": seed, "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokenizer", default="tokbench-zoo-conv-k256")
    ap.add_argument("--data", default="sample")
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    res = measure(a.tokenizer, a.data, a.resolution)
    print(f"{res['tokenizer']}: {res['tokens']} tokens, {res['codebook']} codes ({res['metric']})")
    print("| τ | P(draw = argmax) | sampled share | median rank | mean rank |\n|---|---|---|---|---|")
    for r in res["rows"]:
        print(f"| {r['temperature']:g} | {r['p_draw_eq_argmax']:.3f} | {r['sampled_share_eq_argmax']:.3f} | "
              f"{r['median_rank']:.0f} | {r['mean_rank']:.2f} |")
    if a.json:
        from tokbench.runner.schema import write_json_atomic

        write_json_atomic(a.json, res)


if __name__ == "__main__":
    main()
