"""Short timing runs for a zoo config's time estimate (single-threaded CPU), plus an early collapse check.

For a few representative tokenizers of the config: seconds per tokenizer-training step (over `--steps` steps after
5 warm-up steps) and the batch usage / perplexity at the end (an early sign of codebook collapse, e.g. Reg-VQ without
the entropy regulariser); seconds per generator step (tiny GPT on the tokens of a 256- and a 4096-code tokenizer);
Inception seconds per image (64-d and 2048-d layer, random weights: same compute as the real ones); then the
config's full time per stage extrapolated from those. Times are CPU seconds of this (single-threaded) process —
on a shared box wall time is longer by however much the core is contended. Writes JSON; prints a table.

    OMP_NUM_THREADS=1 python benchmarks/experiments/zoo_power/stage_times.py --config benchmarks/experiments/zoo-v2.yaml \\
        --json results/zoo-power/stage_times.json          # ~10 min on a loaded 2-core box
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

PROBES = ("conv-k256", "conv-k4096", "conv-k256-regvq-full", "conv-k256-regvq-full-ent", "conv-k256-noent",
          "vit-k256")


def time_tokenizers(cfg: dict, train_ds, names, steps: int) -> dict:
    from tokbench.tokenizer_training import Trainer

    out = {}
    by_name = {t["name"]: t for t in cfg["tokenizers"]}
    for n in names:
        if n not in by_name:
            continue
        tr = Trainer(by_name[n]["train_config"], train_ds, device="cpu", progress=False)
        tr.fit(until=5, final=False)
        t0 = time.process_time()
        last = tr.fit(until=5 + steps, final=False)["last"]
        out[n] = {"s_per_step": (time.process_time() - t0) / steps, "steps_timed": steps, "at_step": tr.step,
                  "batch_usage": last.get("usage"), "batch_perplexity": last.get("perplexity"),
                  "codebook": tr.model.info.vocab_size, "trainer": tr}
    return out


def time_generator(cfg: dict, trainer, train_ds, recipe: dict, steps: int) -> float:
    from tokbench.gen.tokenset import pretokenize
    from tokbench.gen.training import RunConfig
    from tokbench.gen.training import train as train_generator

    tok = trainer.ema.module.eval()
    with tempfile.TemporaryDirectory() as d:
        with torch.no_grad():
            pretokenize(tok, train_ds, Path(d) / "tok", meta={"tokenizer": {"name": "timing"}},
                        labels=[-1] * len(train_ds), classes=[], aug="flip", batch_size=128, progress=False)
        rc = RunConfig.from_dict(dict(recipe, train=dict(recipe.get("train") or {}, steps=steps + 5, ckpt_every=10**6)),
                                 name="timing")
        train_generator(Path(d) / "tok", rc, Path(d) / "g0", device="cpu", stop_at=5, progress=False)
        t0 = time.process_time()
        train_generator(Path(d) / "tok", rc, Path(d) / "g1", device="cpu", stop_at=steps + 5, progress=False)
        full = time.process_time() - t0
    return full / (steps + 5)


def time_inception(feature: str, n: int = 64) -> float:
    from tokbench.fid import get_extractor

    ext = get_extractor("inception-v3-compat", None, device="cpu", feature=feature)
    x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8)
    ext(x[:8])
    t0 = time.process_time()
    ext(x)
    return (time.process_time() - t0) / n


def estimate(cfg: dict, tok_times: dict, gen_times: dict, inc: float, n_train: int, n_held: int) -> dict:
    """Seconds per stage for the whole config (one seed), from the probes: each tokenizer takes the probe of its
    family/codebook nearest to it; the generator cost scales with the vocabulary between the 256 and 4096 probes."""
    from tokbench.experiments.config import generator_recipes, gfid_references

    m = cfg["measure"]
    passes = 1 + len(m["pfid"]["alpha"]) * len(m["pfid"]["delta"]) * len(m["pfid"]["seeds"])
    gens = generator_recipes(cfg)
    num = int(cfg["gfid"]["num"] or n_train)
    rows = []
    for t in cfg["tokenizers"]:
        tc = t["train_config"]
        k = tc["model"]["constructor_kwargs"]["codebook_size"]
        vit = tc["model"]["family"] == "tokbench_vitvq"
        reg = tc["regvq"]["mask_ratio"] > 0
        probe = "vit-k256" if vit else ("conv-k4096" if k >= 2048 else ("conv-k256-regvq-full" if reg else "conv-k256"))
        s_step = tok_times.get(probe, tok_times.get("conv-k256"))["s_per_step"]
        g_step = gen_times["k4096"] if k >= 2048 else gen_times["k256"]
        g_steps = sum((r.get("train") or {}).get("steps", 0) for _, r in gens)
        rows.append({"tokenizer": t["name"], "train": tc["train"]["steps"] * s_step,
                     "generators": g_steps * g_step,
                     "measure": n_held * passes * (inc + 0.002),  # + decode, a few ms per image
                     "gfid": len(gens) * num * (inc + 0.004),  # sampling 64 tokens + decode + features
                     "pretokenize": 2 * n_train * 0.002})
    total = {k: sum(r[k] for r in rows) for k in ("train", "generators", "measure", "gfid", "pretokenize")}
    return {"per_tokenizer": rows, "total_s": total, "total_h": sum(total.values()) / 3600,
            "measure_passes_per_image": passes, "generators": [g for g, _ in gens],
            "gfid_references": gfid_references(cfg), "gfid_samples": num}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="benchmarks/experiments/zoo-v2.yaml")
    ap.add_argument("--steps", type=int, default=150, help="timed tokenizer steps per probe (after 5 warm-up)")
    ap.add_argument("--gen-steps", type=int, default=40)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    from tokbench.experiments import load
    from tokbench.experiments.config import generator_recipes
    from tokbench.experiments.pipeline import open_data

    t_all = time.time()
    cfg = load(a.config)
    _, train_ds, held_ds = open_data(cfg)
    toks = time_tokenizers(cfg, train_ds, PROBES, a.steps)
    recipe = generator_recipes(cfg)[0][1]
    gens = {"k256": time_generator(cfg, toks["conv-k256"]["trainer"], train_ds, recipe, a.gen_steps),
            "k4096": time_generator(cfg, toks["conv-k4096"]["trainer"], train_ds, recipe, a.gen_steps)}
    feature = str(cfg["measure"]["fid"].get("feature") or "2048")
    inc = {"64": time_inception("64"), feature: time_inception(feature)}
    for v in toks.values():
        v.pop("trainer")
    est = estimate(cfg, toks, gens, inc[feature], len(train_ds), len(held_ds))
    res = {"config": a.config, "threads": torch.get_num_threads(), "train_images": len(train_ds),
           "heldout_images": len(held_ds), "tokenizer_probes": toks, "generator_s_per_step": gens,
           "inception_s_per_image": inc, "estimate_one_seed": est, "seconds": round(time.time() - t_all, 1),
           "note": "CPU seconds of one thread (process_time) on a shared 2-core box; GPU times are not measured here"}
    print(f"{a.config}: {len(train_ds)} training / {len(held_ds)} held-out images; torch threads {res['threads']}")
    print("| probe | s/step | batch usage | batch perplexity (at step) |\n|---|---|---|---|")
    for n, v in toks.items():
        print(f"| {n} | {v['s_per_step']:.3f} | {v['batch_usage']:.3f} | {v['batch_perplexity']:.1f} ({v['at_step']}) |")
    print(f"generator s/step: {gens}; inception s/image: {inc}")
    tot = est["total_s"]
    print("one seed, whole config: " + ", ".join(f"{k} {v / 3600:.2f} h" for k, v in tot.items())
          + f"; total {est['total_h']:.1f} h")
    if a.json:
        from tokbench.runner.schema import write_json_atomic

        write_json_atomic(a.json, res)


if __name__ == "__main__":
    main()
