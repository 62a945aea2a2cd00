"""Codebook collapse remedies, measured: train one config under several overrides (same seed, same steps) and report
codebook usage / perplexity of the EMA model's clean ids on the held-out split (and of the last training batches).

    python benchmarks/experiments/train_robust/collapse_remedy.py --config benchmarks/experiments/train_robust/smoke.yaml --steps 200 \\
        --variant base='{"codebook": {"dead_after": 0}}' \\
        --variant restart='{"codebook": {"dead_after": 50, "check_every": 10}}' \\
        --out runs/collapse_remedy

Writes OUT/results.json and prints a table. CPU-sized; numbers are from a few dozen held-out images.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--data", default="sample")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--variant", action="append", required=True, help="NAME=JSON overrides merged onto the config")
    ap.add_argument("--out", default="runs/collapse_remedy")
    args = ap.parse_args()

    from tokbench.tokenizer_training import Trainer, load_config
    from tokbench.tokenizer_training.config import _merge, validate
    from tokbench.tokenizer_training.data import open_training_data
    from tokbench.tokenizer_training.eval_during_training import heldout_metrics

    base = load_config(args.config)
    if args.steps:
        base["train"]["steps"] = args.steps
    data = open_training_data(args.data, base["data"]["resolution"], base["data"]["num_images"])
    results: dict = {"command": "python " + " ".join(sys.argv), "config": args.config, "steps": base["train"]["steps"],
                     "variants": {}}
    for spec in args.variant:
        name, _, js = spec.partition("=")
        cfg = _merge(base, json.loads(js or "{}"))
        cfg["eval"]["runner"] = False
        validate(cfg)
        t0 = time.time()
        tr = Trainer(cfg, data, progress=False)
        logs = []
        while tr.step < cfg["train"]["steps"]:
            logs.append(tr.train_step(tr.data.batch(tr.step)))
        ev = heldout_metrics(tr.ema.module, tr.heldout_images(), alphas=(), delta=1)
        tail = logs[-10:]
        results["variants"][name] = {
            "overrides": json.loads(js or "{}"), "heldout_usage": ev["usage"], "heldout_perplexity": ev["perplexity"],
            "heldout_codes_used": round(ev["usage"] * tr.model.info.vocab_size), "heldout_psnr": ev["psnr_clean"],
            "train_batch_usage_last10": sum(r["usage"] for r in tail) / len(tail),
            "train_batch_perplexity_last10": sum(r["perplexity"] for r in tail) / len(tail),
            "train_rec_last10": sum(r["rec"] for r in tail) / len(tail),
            "restarts_total": tr.restarts_total, "vocab": tr.model.info.vocab_size,
            "heldout_images": ev["images"], "seconds": round(time.time() - t0, 1)}
        print(name, json.dumps(results["variants"][name]), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    keys = ["heldout_codes_used", "heldout_usage", "heldout_perplexity", "heldout_psnr", "train_batch_usage_last10",
            "train_batch_perplexity_last10", "train_rec_last10", "restarts_total"]
    print("metric".ljust(30) + "".join(n.rjust(12) for n in results["variants"]))
    for k in keys:
        print(k.ljust(30) + "".join(f"{v[k]:12.4g}" for v in results["variants"].values()))


if __name__ == "__main__":
    main()
