"""The train-robust models of results/train-robust/real-inception/ evaluated again with the flagged random-weight
Inception (same models, same held-out split, same pFID draws), so that real and random-weight FIDs can be compared on
identical models. Run with an empty TOKBENCH_CACHE and no fid-helper wheel, so that the fallback is the one used:

    TOKBENCH_CACHE=$(mktemp -d) TOKBENCH_OFFLINE=1 OMP_NUM_THREADS=1 \
        python benchmarks/experiments/train_robust/reevaluate_random_inception.py RUNS_ROOT

RUNS_ROOT holds the --out folders of the three perturb_experiment.py runs (perturb_exp, perturb_exp_seed1,
perturb_exp_taming). Writes results/train-robust/real-inception/same_models_random_inception.json.
"""
import copy
import json
import sys
from pathlib import Path
import tokbench
from tokbench.tokenizer_training import Trainer
from tokbench.tokenizer_training.config import validate
from tokbench.tokenizer_training.data import open_training_data
from tokbench.tokenizer_training.eval_during_training import FidContext, HeldoutImages, runner_metrics

root = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/fid-tr")
out = {}
for f, d in [("perturb_experiment.json", "perturb_exp"), ("perturb_experiment_seed1.json", "perturb_exp_seed1"),
             ("perturb_experiment_taming_ch32.json", "perturb_exp_taming")]:
    new = json.load(open(f"results/train-robust/real-inception/{f}"))
    base = new["config"]
    validate(base)
    ev = base["eval"]
    data = open_training_data("sample", base["data"]["resolution"], base["data"]["num_images"])
    cfg = copy.deepcopy(base); cfg["perturb"]["enabled"] = False; cfg["eval"]["runner"] = False
    tr = Trainer(cfg, data, out_dir=root / d / "baseline")
    idx = tr.holdout_idx[: ev["max_images"]] if ev["max_images"] else tr.holdout_idx
    images = tr.heldout_images(ev["max_images"])
    delta = ev["perturb_delta"] or min(base["perturb"]["delta"], tr.model.info.vocab_size)
    ctx = FidContext(HeldoutImages(images, data, idx), ev["fid_extractor"], None, "cpu", ev["batch_size"])
    assert ctx.extractor.protocol["random_weights"] is True  # run with an empty TOKBENCH_CACHE: the flagged fallback
    out[f] = {}
    for name in ("perturbed", "baseline"):
        tok = tokbench.load_tokenizer(str(root / d / name / "tokenizer.safetensors"))
        r = runner_metrics(tok, images, alphas=ev["perturb_alphas"], delta=delta, seed=ev["seed"],
                           batch_size=ev["batch_size"], context=ctx)
        assert abs(r["usage"] - new["runs"][name]["usage"]) < 1e-12  # the same model
        out[f][name] = {k: v for k, v in r.items() if k.startswith(("rfid", "pfid", "rkid", "pkid"))}
        print(f, name, out[f][name], flush=True)
json.dump({"note": "the retrained models of real-inception/*.json evaluated with the flagged random-weight Inception "
                   "(the fallback, as the old tables), same held-out split and pFID draws",
           "extractor": ctx.extractor.protocol, "command": "python " + " ".join(sys.argv),
           "results": out}, open("results/train-robust/real-inception/same_models_random_inception.json", "w"), indent=1)
