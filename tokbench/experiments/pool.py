"""Pool training-seed replicates of one zoo (`tokbench zoo --seed N`, then `tokbench zoo --pool A --pool B --out P`).

One training run per tokenizer cannot tell a real difference between two tokenizers from seed-to-seed noise. With
replicates that differ only in their training seed (same data split, same measurement protocol, same pFID draws and
gFID sampling seed — checked here, never assumed) this writes:

- `replicates.csv`: every replicate's numbers, one row per (tokenizer, replicate);
- `pooled.csv`: the mean over replicates per tokenizer (what `tokbench correlate --table` reads);
- `consistency.{md,json}`: for each metric, Spearman ρ between two replicates' values over tokenizers — how well a
  metric's own ordering of the tokenizers survives retraining — and the median seed-to-seed spread per tokenizer;
- `correlation.{md,json}`, `plots/`: `tokbench correlate` on the pooled means;
- with several generators or gFID references (`gfid_all.csv` in every replicate): `pooled_by_generator.csv`, the
  mean per (tokenizer, generator), and `correlation_by_generator*.{md,json}` on it, one per gFID/gKID target, each
  generator on its own, as the single zoos write them;
- `README.md`, `commands.sh`.
"""

from __future__ import annotations

import copy
import io
import json
import math
import shlex
import statistics
from itertools import combinations
from pathlib import Path

import pandas as pd
import yaml

from ..runner.schema import write_json_atomic
from ..report import correlate
from ..report.correlate import CorrelateRequest
from ..report.inputs import metric_columns as numeric_metrics
from ..report.inputs import rows_from_results
from ..report.render import write_text_atomic
from .report import correlation_lines, md_table, run_correlate_by_generator, verdict


def _replicate(folder: Path) -> dict:
    summary_path = folder / "summary.json"
    if not summary_path.is_file():
        raise FileNotFoundError(f"{folder}: no summary.json — not a finished `tokbench zoo` output folder")
    summary = json.loads(summary_path.read_text())
    cfg = yaml.safe_load((folder / "config.resolved.yaml").read_text())
    df = rows_from_results([folder / "runs"])
    if df.empty:
        raise ValueError(f"{folder}/runs holds no successful result files")
    return {"folder": folder, "summary": summary, "config": cfg, "rows": df}


def _without_seeds(cfg: dict) -> dict:
    """The resolved zoo config minus what a seed replicate may change (its name and training seeds)."""
    c = copy.deepcopy(cfg)
    for k in ("name", "seed", "description"):
        c.pop(k, None)
    c.get("generator", {}).get("train", {}).pop("seed", None)
    for g in c.get("generators") or []:
        g.get("train", {}).pop("seed", None)
    for t in c.get("tokenizers") or []:
        t.get("train_config", {}).pop("seed", None)
    return c


def check_replicates(reps: list[dict]) -> None:
    """Refuse to pool zoos that differ in anything but training seeds (data, protocol, recipes, tokenizers)."""
    first = reps[0]
    seeds = [r["config"].get("seed") for r in reps]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"replicates must have distinct training seeds; got {seeds} for "
                         f"{[str(r['folder']) for r in reps]}")
    for r in reps[1:]:
        if _without_seeds(r["config"]) != _without_seeds(first["config"]):
            raise ValueError(f"{r['folder']} and {first['folder']} differ in more than the training seed "
                             "(compare their config.resolved.yaml): not replicates of one zoo")
        for k in ("train_hash", "heldout_hash"):
            if r["summary"]["data"][k] != first["summary"]["data"][k]:
                raise ValueError(f"{r['folder']}: data {k} differs from {first['folder']}")
        a = dict(zip(first["rows"]["tokenizer"], first["rows"]["protocol_hash"]))
        b = dict(zip(r["rows"]["tokenizer"], r["rows"]["protocol_hash"]))
        if set(a) != set(b):
            raise ValueError(f"{r['folder']} has tokenizers {sorted(set(b) ^ set(a))} that {first['folder']} "
                             "does not (or the other way round): finish both zoos first")
        diff = sorted(n for n in a if a[n] != b[n])
        if diff:
            raise ValueError(f"measurement protocol differs between replicates for {diff}")


def metric_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in numeric_metrics(df, "gfid") if c not in ("entropy_norm",)] + ["gfid"]


def consistency(reps: list[dict], metrics: list[str]) -> list[dict]:
    """Per metric: Spearman ρ between every pair of replicates over tokenizers, and the median over tokenizers of
    the spread (max − min) across replicates."""
    from scipy.stats import spearmanr

    out = []
    for m in metrics:
        tables = [r["rows"].set_index("tokenizer")[m] for r in reps]
        names = sorted(set.intersection(*(set(t.dropna().index) for t in tables)))
        pairs = []
        for (i, a), (j, b) in combinations(enumerate(tables), 2):
            x, y = a.loc[names].to_numpy(float), b.loc[names].to_numpy(float)
            rho = float(spearmanr(x, y).statistic) if len(names) >= 3 and x.std() > 0 and y.std() > 0 else math.nan
            pairs.append({"a": str(reps[i]["folder"]), "b": str(reps[j]["folder"]), "n": len(names), "spearman": rho})
        spreads = [max(t[n] for t in tables) - min(t[n] for t in tables) for n in names]
        out.append({"metric": m, "pairs": pairs, "n": len(names),
                    "median_spread": statistics.median(spreads) if spreads else math.nan,
                    "range_of_means": (max(sum(t[n] for t in tables) / len(tables) for n in names)
                                       - min(sum(t[n] for t in tables) / len(tables) for n in names)) if names else math.nan})
    return out


def _f(v: float, digits: int = 2) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def consistency_lines(cons: list[dict], labels: list[str]) -> list[str]:
    pair_cols = [f"ρ {a} vs {b}" for a, b in combinations(labels, 2)]
    L = ["| metric | n | " + " | ".join(pair_cols) + " | median seed-to-seed spread | spread of the tokenizer means |",
         "|---|---|" + "---|" * len(pair_cols) + "---|---|"]
    for c in cons:
        rhos = " | ".join("–" if math.isnan(p["spearman"]) else f"{p['spearman']:+.2f}" for p in c["pairs"])
        L.append(f"| {c['metric']} | {c['n']} | {rhos} | {_f(c['median_spread'], 3)} | {_f(c['range_of_means'], 3)} |")
    return L


def pool(folders: list[str | Path], out: str | Path, *, command: str | None = None) -> dict:
    """Pool finished replicate zoos into `out`; returns the summary written to `out/pool.json`."""
    reps = [_replicate(Path(f)) for f in folders]
    if len(reps) < 2:
        raise ValueError("pooling needs at least two replicate zoos (`tokbench zoo --seed N` writes one)")
    check_replicates(reps)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    labels = [f"seed {r['config'].get('seed')}" for r in reps]
    metrics = metric_columns(reps[0]["rows"])

    long = []
    for r, lab in zip(reps, labels):
        for _, row in r["rows"].iterrows():
            long.append({"tokenizer": row["tokenizer"], "replicate": lab, "zoo": r["summary"]["name"],
                         **{m: row.get(m) for m in metrics}})
    long_df = pd.DataFrame(long)
    pooled = long_df.groupby("tokenizer", sort=False)[metrics].mean().reset_index()
    sd = long_df.groupby("tokenizer", sort=False)[metrics].std(ddof=1).reset_index()
    axes = {t["name"]: t["axes"] for t in reps[0]["summary"]["tokenizers"]}
    order = [t["name"] for t in reps[0]["summary"]["tokenizers"]]
    pooled = pooled.set_index("tokenizer").loc[order].reset_index()
    sd = sd.set_index("tokenizer").loc[order].reset_index()
    pooled.insert(1, "replicates", len(reps))
    for name, frame in (("replicates.csv", long_df), ("pooled.csv", pooled)):
        buf = io.StringIO()
        frame.to_csv(buf, index=False)
        write_text_atomic(out / name, buf.getvalue())
    cons = consistency(reps, metrics)
    write_json_atomic(out / "consistency.json", {"replicates": [str(r["folder"]) for r in reps], "labels": labels,
                                                 "metrics": cons})
    write_text_atomic(out / "consistency.md", "\n".join(consistency_lines(cons, labels)) + "\n")

    cc = reps[0]["config"]["correlate"]
    req = CorrelateRequest(out=out, tables=[out / "pooled.csv"], target="gfid", metrics=list(cc["metrics"]),
                           resamples=int(cc["resamples"]), seed=int(cc["seed"]), html=False)
    correlate.run(req)
    rc, corr_cmd = 0, req.command()
    by_gen = pool_by_generator(reps, out)
    corr = json.loads((out / "correlation.json").read_text()) if (out / "correlation.json").exists() else None
    cmd = command or "tokbench zoo " + " ".join(f"--pool {shlex.quote(str(r['folder']))}" for r in reps) + \
        f" --out {shlex.quote(str(out))}"
    write_text_atomic(out / "commands.sh", "#!/bin/sh\n# The command that wrote every file in this folder from the "
                      "replicate zoos it names (each made by its own commands.sh).\nset -e\n" + cmd + "\n\n# its "
                      "correlation step alone:\n# " + corr_cmd + "\n")
    summary = {"replicates": [{"folder": str(r["folder"]), "zoo": r["summary"]["name"], "seed": r["config"].get("seed"),
                               "commands": str(r["folder"] / "commands.sh")} for r in reps],
               "metrics": metrics, "correlate": {"command": corr_cmd, "exit_code": rc},
               **({"correlate_by_generator": by_gen} if by_gen else {})}
    write_json_atomic(out / "pool.json", summary)
    write_text_atomic(out / "README.md", _readme(reps, labels, pooled, sd, axes, cons, corr, cmd, bool(by_gen)))
    return summary


def pool_by_generator(reps: list[dict], out: Path) -> list[dict]:
    """Mean over replicates per (tokenizer, generator) of every replicate's `gfid_all.csv`, then the per-generator
    correlations on it; [] when the zoos have a single generator and reference."""
    tables = [r["folder"] / "gfid_all.csv" for r in reps]
    if not all(t.is_file() for t in tables):
        return []
    long_df = pd.concat([pd.read_csv(t) for t in tables], ignore_index=True)
    keys = ["tokenizer", "generator"]
    num = [c for c in long_df.columns if c not in keys and pd.api.types.is_numeric_dtype(long_df[c])]
    counts = long_df.groupby(keys, sort=False).size()
    if (counts != len(reps)).any():
        bad = [f"{t} / {g}" for (t, g), n in counts.items() if n != len(reps)]
        raise ValueError(f"gfid_all.csv rows missing in some replicates for {bad[:5]}")
    pooled = long_df.groupby(keys, sort=False)[num].mean().reset_index()
    pooled.insert(2, "replicates", len(reps))
    buf = io.StringIO()
    pooled.to_csv(buf, index=False)
    write_text_atomic(out / "pooled_by_generator.csv", buf.getvalue())
    targets = [c for kind in ("gfid", "gkid") for c in num  # FD targets first, then KID, as the single zoos
               if (c == kind or c.startswith(kind + "_")) and c != "gfid_samples"]
    runs = []
    for target in targets:
        _, cmd = run_correlate_by_generator(reps[0]["config"], out, out / "pooled_by_generator.csv", target)
        runs.append({"target": target, "command": cmd})
    return runs


def _mean_sd_table(pooled: pd.DataFrame, sd: pd.DataFrame, axes: dict, cols: list[str]) -> list[str]:
    head = ["tokenizer", "arch", "codebook", "lookup_dim", "latent_perturbation", "regvq", *cols]
    rows = []
    for (_, m), (_, s) in zip(pooled.iterrows(), sd.iterrows()):
        r = {"tokenizer": m["tokenizer"], **axes.get(m["tokenizer"], {})}
        for c in cols:
            r[c] = f"{m[c]:.2f} ± {s[c]:.2f}" if not math.isnan(m[c]) else "–"
        rows.append(r)
    return [md_table(head, rows)]


def _readme(reps, labels, pooled, sd, axes, cons, corr, cmd, by_generator: bool = False) -> str:
    s0 = reps[0]["summary"]
    n_tok, n_rep = len(pooled), len(reps)
    pf_cols = [c for c in pooled.columns if c.startswith("pfid@")]
    show = ["rfid", *pf_cols, "gfid"]
    lines_corr, facts = correlation_lines(corr)
    g = next((c for c in cons if c["metric"] == "gfid"), None)
    L = [f"# tokbench zoo replicates pooled: {', '.join(r['summary']['name'] for r in reps)}", "",
         "Generated by `tokbench zoo --pool`; every number comes from the replicate zoos' result files (each made by "
         "the `commands.sh` in its own folder). Do not edit by hand.", "",
         f"{n_rep} replicates of the same zoo that differ only in the training seed of every tokenizer and generator "
         f"({', '.join(labels)}): same data split ({s0['data']['train_images']} training / "
         f"{s0['data']['heldout_images']} held-out images), same measurement protocol (checked: identical configs "
         "apart from seeds, identical data hashes and runner protocol hashes), same pFID draws and gFID sampling "
         "seed. Everything the single zoos' READMEs say about how small this is applies here too.", "",
         "## Does a metric's ordering survive retraining?", "",
         "Spearman ρ between two replicates' values of the same metric over the tokenizers; the spread is max − min "
         "over replicates per tokenizer (median over tokenizers), next to the range of the tokenizers' means. A "
         "metric whose seed-to-seed spread is comparable with the differences between tokenizers cannot rank them "
         "reliably from one training run.", ""]
    L += consistency_lines(cons, labels)
    L.append("")
    if g and g["pairs"]:
        rho = " / ".join(f"{p['spearman']:+.2f}" for p in g["pairs"])
        L.append(f"gFID itself — the quantity every other metric is asked to predict — reorders between training "
                 f"seeds: ρ = {rho} between {'the two' if len(g['pairs']) == 1 else 'pairs of'} replicates "
                 f"(n = {g['n']}); its median seed-to-seed spread is "
                 f"{g['median_spread']:.3f} against a {g['range_of_means']:.3f} range of tokenizer means. Read every "
                 "metric-versus-gFID coefficient below against this: it is how well gFID predicts itself after "
                 "retraining.")
        L.append("")
    L += ["## Pooled numbers (mean ± sd over replicates)", ""]
    L += _mean_sd_table(pooled, sd, axes, show)
    L += ["", "## Does pFID predict gFID? (means over replicates)", "",
          f"{n_tok} tokenizers, each metric averaged over {n_rep} training seeds; 95% percentile bootstrap intervals "
          "over tokenizers (they do not include the seed-to-seed noise left in the means).", ""]
    L += lines_corr
    L += ["", "Read mechanically from the intervals above:", ""]
    L += verdict(facts) or ["- no pFID column to judge."]
    if by_generator:
        L += ["", "Above: the first generator's gFID against the first reference. Each generator on its own, against "
                  "every reference (FD and KID of the samples), on the means per (tokenizer, generator): "
                  "`correlation_by_generator*.md` (from `pooled_by_generator.csv`)."]
    L += ["", "These statements are about this zoo only; they neither confirm nor refute the RobustTok paper's "
              "ImageNet-scale claim.", "", "## Reproduce", "", "```sh", cmd, "```", ""]
    return "\n".join(L)
