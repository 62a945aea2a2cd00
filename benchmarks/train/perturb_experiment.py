"""With/without latent perturbation: train one config twice (perturb.enabled true / false; same seed, same steps,
same held-out split) and evaluate both on the held-out images: rFID, pFID (β = 1, each α of eval.perturb_alphas,
δ = eval.perturb_delta nearest codes to the encoder feature), usage, perplexity, PSNR clean and perturbed.

    python benchmarks/train/perturb_experiment.py --config benchmarks/train/experiment_conv32.yaml --data sample \
        --out runs/perturb_experiment

FID uses `tokbench.fid.get_extractor()`: offline without Inception weights that is the flagged random-weight
Inception (its FIDs are only comparable with each other), and with a few dozen held-out images FID is dominated by
small-sample bias: compare the two runs, not with published numbers. Prints a table and writes OUT/results.json.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import torch


def fid_of(extractor, ref_acc, images: torch.Tensor) -> float:
    from tokbench.fid import StatsAccumulator, frechet_distance

    acc = StatsAccumulator(extractor.dim)
    for s in range(0, images.shape[0], 16):
        acc.update(extractor(images[s: s + 16]))
    return float(frechet_distance(ref_acc, acc))


@torch.no_grad()
def evaluate(trainer, extractor, ref_acc, alphas, delta, seed=0) -> dict:
    from tokbench.data import to_uint8
    from tokbench.train.evaluate import heldout_metrics
    from tokbench.train.perturb_hook import perturb_ids

    model = trainer.ema.module.eval()
    images = trainer.heldout_images()
    out = heldout_metrics(model, images, alphas=alphas, delta=delta, seed=seed)
    model.keep_features = True
    toks = model.encode(images)
    feats = model.last_features[0]
    out["rfid"] = fid_of(extractor, ref_acc, to_uint8(model.decode(toks)))
    sp = model.token_space
    g = torch.Generator().manual_seed(seed)
    for a in alphas:
        pid, _ = perturb_ids(feats, sp.codes, sp.metric, toks.ids[0], alpha=a, beta=1.0, delta=delta, generator=g)
        out[f"pfid_a{a:g}"] = fid_of(extractor, ref_acc, to_uint8(model.decode(toks.replace_ids([pid]))))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--data", default="sample")
    ap.add_argument("--out", default="runs/perturb_experiment")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--override", default=None, help='JSON merged onto the config, e.g. \'{"regvq": {"prior_weight": 0.5}}\'')
    args = ap.parse_args()

    from tokbench.fid import StatsAccumulator, get_extractor
    from tokbench.train import Trainer, load_config
    from tokbench.train.data import open_training_data

    base = load_config(args.config)
    if args.override:
        from tokbench.train.config import _merge, validate

        base = _merge(base, json.loads(args.override))
        validate(base)
    if args.steps:
        base["train"]["steps"] = args.steps
    data = open_training_data(args.data, base["data"]["resolution"], base["data"]["num_images"])
    extractor = get_extractor()
    out = Path(args.out)
    results: dict = {"config": base, "fid_protocol": extractor.protocol, "runs": {}}
    ref_acc = None
    for name, enabled in (("perturbed", True), ("baseline", False)):
        cfg = copy.deepcopy(base)
        cfg["perturb"]["enabled"] = enabled
        tr = Trainer(cfg, data, out_dir=out / name)
        if not tr.resume():
            pass
        tr.fit()
        if ref_acc is None:
            ref_acc = StatsAccumulator(extractor.dim)
            ref_acc.update(extractor(tr.heldout_images()))
            results["heldout_images"] = len(tr.holdout_idx)
        ev = cfg["eval"]
        delta = ev["perturb_delta"] or min(cfg["perturb"]["delta"], tr.model.info.vocab_size)
        results["runs"][name] = evaluate(tr, extractor, ref_acc, ev["perturb_alphas"], delta)
        results["runs"][name]["final_train_rec"] = tr_last_rec(out / name)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    keys = ["rfid"] + [f"pfid_a{a:g}" for a in base["eval"]["perturb_alphas"]] + \
           ["psnr_clean"] + [f"psnr_a{a:g}" for a in base["eval"]["perturb_alphas"]] + ["usage", "perplexity"]
    print(f"held-out images: {results['heldout_images']}; FID weights: {extractor.protocol.get('weights')}")
    print("metric".ljust(14) + "".join(n.rjust(12) for n in results["runs"]))
    for k in keys:
        print(k.ljust(14) + "".join(f"{results['runs'][n][k]:12.3f}" for n in results["runs"]))


def tr_last_rec(run_dir: Path) -> float | None:
    rec = None
    for line in (run_dir / "log.jsonl").read_text().splitlines():
        r = json.loads(line)
        if "rec" in r:
            rec = r["rec"]
    return rec


if __name__ == "__main__":
    main()
