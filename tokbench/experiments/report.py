"""What the zoo writes into `<out>/`: the resolved configuration and the exact commands (at the start), then the
leaderboards, `tokbench correlate`'s tables and plots, `summary.json` and a README that states the size of the
evidence. Every number in these files comes from the run's own result files; nothing is typed in by hand."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import shlex
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from ..io import write_json_atomic, write_text_atomic
from ..report import correlate
from ..report.correlate import CorrelateRequest, parse_compare
from ..report.inputs import NAME_COLUMN, rows_from_results
from ..results.metrics import BY_KEY
from ..results.result import Result
from .config import generator_label, generator_recipes, gfid_references


def _git() -> dict:
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return {"commit": sha or None, "dirty": bool(dirty)}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def correlate_request(cfg: dict, out: Path) -> CorrelateRequest:
    """The zoo's correlation step: its result files against gFID, as the config's `correlate` section asks."""
    c = cfg["correlate"]
    return CorrelateRequest(out=out, runs=[out / "runs"], target=c["target"], metrics=list(c["metrics"]),
                            resamples=int(c["resamples"]), seed=int(c["seed"]), leaderboard=out / "leaderboard.json",
                            compare=parse_compare(c.get("compare")), plots=c.get("plots", True),
                            html=c.get("html", True))


def write_config_files(cfg: dict, opts, data: dict) -> None:
    out = opts.out
    (out / "configs").mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "config.resolved.yaml", "# the zoo exactly as run (defaults, file"
                      + (", quick section" if opts.quick else "") + " and every tokenizer's full train-robust "
                      "config); written by `tokbench zoo`\n" + yaml.safe_dump(_plain(cfg), sort_keys=False))
    for t in cfg["tokenizers"]:
        write_text_atomic(out / "configs" / f"{t['name']}.train-robust.yaml",
                          f"# tokenizer {t['name']} of zoo {cfg['name']}: the `tokbench train-robust` config as run "
                          f"(data: the training split only, {data['train_images']} images)\n"
                          + yaml.safe_dump(_plain(t["train_config"]), sort_keys=False))
    for gname, recipe in generator_recipes(cfg):
        write_text_atomic(out / "configs" / (f"generator-{gname}.yaml" if gname else "generator.yaml"),
                          f"# the generator recipe {gname + ' ' if gname else ''}shared by every tokenizer of zoo "
                          f"{cfg['name']} (`tokbench train-gen`)\n"
                          + yaml.safe_dump(_plain(dict(recipe, name=f"zoo-generator{'-' + gname if gname else ''}")),
                                           sort_keys=False))
    g = _git()
    cmd = opts.command or "tokbench zoo " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    env = " ".join(f"{k}={os.environ[k]}" for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TOKBENCH_FID_WEIGHTS",
                                                   "TOKBENCH_OFFLINE", "HF_HUB_OFFLINE") if k in os.environ)
    lines = ["#!/bin/sh",
             f"# The command that produced every number in {out}/ (written by `tokbench zoo` when it started).",
             f"# tokbench commit {g['commit']}{' (with uncommitted changes)' if g['dirty'] else ''}; python "
             f"{platform.python_version()}; host {platform.node()}; started "
             f"{datetime.now(timezone.utc).isoformat(timespec='seconds')}",
             "# Re-running it resumes: finished stages are skipped (markers in state/), unfinished ones continue.",
             "set -e",
             (env + " " if env else "") + cmd,
             "",
             "# The correlation step alone, as the zoo runs it (re-runnable on the committed result files):",
             "# " + correlate_request(cfg, out).command()]
    write_text_atomic(out / "commands.sh", "\n".join(lines) + "\n")


def _plain(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


# ----------------------------------------------------------------------------------------------------------------------
def zoo_rows(summary: dict) -> tuple[list[str], list[dict]]:
    rows, pf_cols = [], []
    for t in summary["tokenizers"]:
        r = Result(t["result"])
        values = r.metric_values()
        row = {"tokenizer": t["name"], **t["axes"], "tokens": r.info.get("tokens_per_image"),
               "params": t["train"].get("params"), "rFID": values["rfid"]}
        if values["rkid"] is not None:
            row["rKID"] = values["rkid"]
        for p in r.pfid:  # the zoo measures one δ and rule: columns by α
            k = p.label(detail=False)
            if k not in pf_cols:
                pf_cols.append(k)
            row[k] = p.mean
            if p.kid_mean is not None:  # KID beside FID when the suite measured it
                kk = p.label(detail=False, metric="pkid")
                if kk not in pf_cols:
                    pf_cols.append(kk)
                row[kk] = p.kid_mean
        row.update({BY_KEY[k].label: values.get(k) for k in ("usage", "perplexity", "psnr", "ssim", "gfid")})
        rows.append(row)
    kid = ["rKID"] if any("rKID" in r for r in rows) else []
    cols = ["tokenizer", "arch", "codebook", "lookup_dim", "latent_perturbation", "regvq", "tokens", "params", "rFID",
            *kid, *pf_cols, "usage", "perplexity", "PSNR", "SSIM", "gFID"]
    return cols, rows


def _fmt(v: Any, col: str = "") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        if col == "usage":
            return f"{100 * v:.1f}%"
        if col == "SSIM" or "KID" in col:  # KIDs are small numbers (×10⁻³ is typical)
            return f"{v:.4f}"
        return f"{v:.2f}"
    return str(v)


def md_table(cols: list[str], rows: list[dict]) -> str:
    out = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for r in rows:
        out.append("| " + " | ".join(_fmt(r.get(c), c) for c in cols) + " |")
    return "\n".join(out)


def write_zoo_table(out: Path, cols: list[str], rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({c: ("" if r.get(c) is None else r.get(c)) for c in cols})
    write_text_atomic(out / "zoo.csv", buf.getvalue())
    write_text_atomic(out / "zoo.md", md_table(cols, rows) + "\n")


def run_correlate(cfg: dict, out: Path) -> tuple[int, str]:
    """Run the zoo's correlation step; returns (exit code, the equivalent command) for the summary."""
    req = correlate_request(cfg, out)
    correlate.run(req)
    return 0, req.command()


def write_gfid_table(out: Path, summary: dict) -> tuple[Path | None, list[str]]:
    """With several generators or gFID references: `gfid_all.csv`, one row per tokenizer × generator with the
    runner's metrics, `gfid` (primary reference) and `gfid_<ref>` (each other reference), and with `gfid.kid` the
    same samples' KID as `gkid` / `gkid_<ref>` (unbiased at any N, unlike FD), for `tokbench correlate --by
    generator`. Returns (path or None, the target columns: every FD one, then every KID one)."""
    recs = [(t, Result(t["result"]).gfid_all) for t in summary["tokenizers"]]
    recs = [(t, entries) for t, entries in recs if entries]
    if not recs:
        return None, []
    rows = []
    targets: list[str] = []
    kid_targets: list[str] = []
    for t, entries in recs:
        base = rows_from_results([t["measure"]["result"]])
        if base.empty:
            continue
        primary_ref = t["gfid"]["reference"]
        by_gen: dict[str, dict] = {}
        for e in entries:
            ref = e.reference.split(" ", 1)[0]
            col = "gfid" if ref == primary_ref else f"gfid_{ref}"
            if col not in targets:
                targets.append(col)
            row = by_gen.setdefault(e.generator, dict(base.iloc[0].to_dict(), generator=e.generator,
                                                      gfid_samples=e.num_samples))
            row[col] = e.value
            kid = e.raw.get("kid") if e.is_record else None
            if kid is not None:
                kcol = "gkid" + col.removeprefix("gfid")
                row[kcol] = kid
                if kcol not in kid_targets:
                    kid_targets.append(kcol)
        rows += list(by_gen.values())
    df = pd.DataFrame(rows)
    df = df[[NAME_COLUMN, "generator"] + [c for c in df.columns if c not in (NAME_COLUMN, "generator")]]
    path = out / "gfid_all.csv"
    tmp = path.with_name(path.name + ".tmp")
    df.to_csv(tmp, index=False)
    tmp.replace(path)
    return path, targets + kid_targets


def run_correlate_by_generator(cfg: dict, out: Path, table: Path, target: str) -> tuple[int, str]:
    """The correlation on `gfid_all.csv`, each generator on its own (as the paper reports it)."""
    c = cfg["correlate"]
    name = "correlation_by_generator" + ("" if target == "gfid" else f"_{target.removeprefix('gfid_')}")  # _gkid…
    req = CorrelateRequest(out=out, tables=[table], target=target, by="generator", metrics=list(c["metrics"]),
                           resamples=int(c["resamples"]), seed=int(c["seed"]), name=name,
                           compare=parse_compare(c.get("compare")), plots=False, html=False)
    correlate.run(req)
    return 0, req.command()


def finish(cfg: dict, opts, summary: dict, seconds: float) -> dict:
    from ..runner import write_leaderboard

    out = opts.out
    write_leaderboard(out / "runs", out, suite=summary["suite"])
    cols, rows = zoo_rows(summary)
    write_zoo_table(out, cols, rows)
    rc, corr_cmd = run_correlate(cfg, out)
    corr = json.loads((out / "correlation.json").read_text()) if (out / "correlation.json").exists() else None
    summary["correlate"] = {"command": corr_cmd, "exit_code": rc}
    table, targets = write_gfid_table(out, summary)
    if table is not None:
        summary["correlate_by_generator"] = []
        for target in targets:
            rc_g, cmd_g = run_correlate_by_generator(cfg, out, table, target)
            summary["correlate_by_generator"].append({"target": target, "command": cmd_g, "exit_code": rc_g})
    summary["seconds_this_invocation"] = round(seconds, 1)
    summary["stage_seconds"] = {t["name"]: {s: t[s].get("seconds") for s in ("train", "pretokenize", "generator",
                                                                            "measure", "gfid")}
                                for t in summary["tokenizers"]}
    slim = dict(summary)
    slim["tokenizers"] = [{k: v for k, v in t.items() if k != "result"} for t in summary["tokenizers"]]
    slim["table"] = rows
    write_json_atomic(out / "summary.json", slim)
    write_text_atomic(out / "README.md", readme(cfg, opts, summary, cols, rows, corr))
    write_text_atomic(out / ".gitignore", "# checkpoints, token shards and resume state: large, and not results\n"
                                          "work/\nruns/state/\nstate/\n")
    return slim


# ----------------------------------------------------------------------------------------------------------------------
def _coef(sec_metric: dict, method: str) -> tuple[str, dict | None]:
    c = (sec_metric.get("coefficients") or {}).get(method)
    if not c:
        return "–", None
    b = c.get("bootstrap")
    s = f"{c['value']:+.2f}"
    if b and b.get("ci_low") is not None and not math.isnan(b["ci_low"]):
        s += f" [{b['ci_low']:+.2f}, {b['ci_high']:+.2f}]"
    return s, c


def correlation_lines(corr: dict | None) -> tuple[list[str], dict]:
    """Markdown rows for the headline table and the facts the verdict is drawn from."""
    facts: dict = {"metrics": {}, "comparisons": {}}
    if not corr or not corr.get("sections"):
        return ["(no correlation report: see the console output of `tokbench correlate`)"], facts
    sec = corr["sections"][0]
    lines = ["| metric vs gFID | n | Spearman ρ [95% CI] | Kendall τ-b [95% CI] | Pearson r [95% CI] | "
             "leave-one-out range of ρ |", "|---|---|---|---|---|---|"]
    for m in sec["metrics"]:
        sp, c_sp = _coef(m, "spearman")
        kd, _ = _coef(m, "kendall")
        pr, _ = _coef(m, "pearson")
        loo = (c_sp or {}).get("loo") or {}
        loo_s = (f"{loo['min']:+.2f} … {loo['max']:+.2f}" if loo.get("min") is not None
                 and not math.isnan(loo["min"]) else "–")
        lines.append(f"| {m['metric']} | {m['n']} | {sp} | {kd} | {pr} | {loo_s} |")
        facts["metrics"][m["metric"]] = {"n": m["n"], "status": m["status"], "spearman": c_sp,
                                         "expected_sign": m.get("expected_sign")}
    comps = sec.get("comparisons") or []
    if comps:
        lines += ["", "| is A a better predictor than B? | n | Δ agreement, Spearman [95% CI] | "
                      "Δ agreement, Kendall [95% CI] |", "|---|---|---|---|"]
        for c in comps:
            cells = []
            for meth in ("spearman", "kendall"):
                d = (c.get("methods") or {}).get(meth)
                cells.append("–" if not d else f"{d['delta']:+.2f} [{d['ci_low']:+.2f}, {d['ci_high']:+.2f}]")
            lines.append(f"| {c['a']} − {c['b']} | {c['n']} | {cells[0]} | {cells[1]} |")
            facts["comparisons"][c["a"]] = (c.get("methods") or {}).get("spearman")
    return lines, facts


def _ci_excludes_zero(c: dict | None, sign: float | None) -> str:
    """'agrees' / 'disagrees' / 'undecided' from the bootstrap CI of a coefficient (sign = expected sign)."""
    if not c or not c.get("bootstrap"):
        return "undecided"
    lo, hi = c["bootstrap"]["ci_low"], c["bootstrap"]["ci_high"]
    if lo is None or math.isnan(lo):
        return "undecided"
    s = sign or 1.0
    lo, hi = sorted((s * lo, s * hi))
    return "agrees" if lo > 0 else ("disagrees" if hi < 0 else "undecided")


def verdict(facts: dict) -> list[str]:
    pf = [k for k in facts["metrics"] if k.startswith("pfid")]
    out = []
    rf = facts["metrics"].get("rfid")
    rf_v = _ci_excludes_zero(rf["spearman"], rf["expected_sign"]) if rf else "undecided"
    for k in pf:
        f = facts["metrics"][k]
        v = _ci_excludes_zero(f["spearman"], f["expected_sign"])
        sp = f["spearman"]
        val = f"ρ = {sp['value']:+.2f}" if sp else "no ρ"
        d = facts["comparisons"].get(k)
        if v == "agrees":
            s = (f"- **{k}**: {val}; its 95% bootstrap interval lies above 0, so in this zoo it orders tokenizers "
                 "the way gFID does")
        elif v == "disagrees":
            s = f"- **{k}**: {val}; its 95% interval lies below 0: in this zoo it orders tokenizers *against* gFID"
        else:
            s = (f"- **{k}**: {val}; its 95% interval includes 0: the zoo cannot tell whether it predicts gFID at "
                 "all")
        if d:
            if d["ci_low"] > 0:
                s += f"; better than rFID (Δρ = {d['delta']:+.2f}, CI [{d['ci_low']:+.2f}, {d['ci_high']:+.2f}])"
            elif d["ci_high"] < 0:
                s += f"; worse than rFID (Δρ = {d['delta']:+.2f}, CI [{d['ci_low']:+.2f}, {d['ci_high']:+.2f}])"
            else:
                s += (f"; not distinguishable from rFID (Δρ = {d['delta']:+.2f}, CI [{d['ci_low']:+.2f}, "
                      f"{d['ci_high']:+.2f}] includes 0)")
        out.append(s + ".")
    clear = [k for k, f in facts["metrics"].items()
             if _ci_excludes_zero(f["spearman"], 1.0) != "undecided"]
    if clear:
        def how(k: str) -> str:
            f = facts["metrics"][k]
            v = _ci_excludes_zero(f["spearman"], f["expected_sign"]) if f["expected_sign"] else None
            return {"agrees": ", better on it ↔ better gFID", "disagrees": ", better on it ↔ *worse* gFID"}.get(v, "")

        out.append("- Metrics whose Spearman interval excludes 0 in this zoo: " + ", ".join(
            f"{k} (ρ = {facts['metrics'][k]['spearman']['value']:+.2f}{how(k)})" for k in clear) + ".")
    else:
        out.append("- No metric's Spearman interval excludes 0 in this zoo.")
    if rf:
        sp = rf["spearman"]
        out.append(f"- **rfid**: {'ρ = %+.2f' % sp['value'] if sp else 'no ρ'}; "
                   + {"agrees": "its interval lies above 0 (it also tracks gFID here)",
                      "disagrees": "its interval lies below 0",
                      "undecided": "its interval includes 0"}[rf_v] + ".")
    return out


def perturbation_lines(rows: list[dict]) -> list[str]:
    """Tokenizers that differ from another only by latent perturbation, side by side (one run each: no interval)."""
    key = ("arch", "codebook", "lookup_dim", "regvq")
    base = {tuple(r.get(k) for k in key): r for r in rows if r.get("latent_perturbation") == "off"}
    pairs = [(base[tuple(r.get(k) for k in key)], r) for r in rows
             if r.get("latent_perturbation") != "off" and tuple(r.get(k) for k in key) in base]
    if not pairs:
        return []
    pf = [c for c in rows[0] if c.startswith("pFID")]
    cols = ["tokenizer", "latent_perturbation", "rFID", *pf, "gFID"]
    L = ["### Does latent perturbation change gFID here?", "",
         "Tokenizers that differ only in RobustTok latent perturbation during training. Each was trained once, with "
         "one seed, so no interval can be given: a difference smaller than the (unmeasured) seed-to-seed spread "
         "means nothing.", ""]
    seen, ordered = set(), []
    for b, r in pairs:
        for x in (b, r):
            if x["tokenizer"] not in seen:
                seen.add(x["tokenizer"])
                ordered.append(x)
    L.append(md_table(cols, ordered))
    L.append("")
    return L


def generator_agreement_lines(summary: dict, gens: list[str], refs: list[str]) -> list[str]:
    """How far gFID is a property of the tokenizer and not of the generator family: Spearman ρ over tokenizers
    between the first generator's gFID and each other's, per reference."""
    from scipy.stats import spearmanr

    out = []
    for other in gens[1:]:
        parts = []
        for ref in refs:
            pairs = [(t["generators"][gens[0]]["gfid"]["by_reference"].get(ref),
                      t["generators"][other]["gfid"]["by_reference"].get(ref))
                     for t in summary["tokenizers"] if gens[0] in t.get("generators", {}) and other in t["generators"]]
            pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
            if len(pairs) >= 3:
                rho = spearmanr([a for a, _ in pairs], [b for _, b in pairs]).statistic
                parts.append(f"{rho:+.2f} against the {ref} split (n = {len(pairs)})")
        if parts:
            out.append(f"- **Do the generators agree?** Spearman ρ between the {gens[0]} and the {other} gFID over "
                       f"tokenizers: {'; '.join(parts)}.")
    return out


def readme(cfg: dict, opts, summary: dict, cols: list[str], rows: list[dict], corr: dict | None) -> str:
    d = summary["data"]
    ext = summary["extractor"]
    random_inc = bool(ext.get("random_weights"))
    n_tok = len(rows)
    m = cfg["measure"]
    pf = m["pfid"]
    lines_corr, facts = correlation_lines(corr)
    feat_dim = ext.get("dim") or ext.get("feature") or "?"
    first_gfid = summary["tokenizers"][0]["gfid"] if summary["tokenizers"] else {}
    cmd = (opts.out / "commands.sh").read_text().splitlines()
    run_cmd = next((ln for ln in cmd if ln and not ln.startswith("#") and ln not in ("set -e",)
                    and not ln.startswith("#!")), "")
    size = (f"{d['images']} images from {d['sources']} source photographs/files at {cfg['data']['resolution']} px: "
            f"{d['train_images']} training images ({len(d['train_sources'])} sources) and {d['heldout_images']} "
            f"held-out images ({len(d['heldout_sources'])} sources: {', '.join(d['heldout_sources'][:8])}"
            f"{'…' if len(d['heldout_sources']) > 8 else ''})")
    L = []
    L.append(f"# tokbench zoo `{cfg['name']}`{' (--quick)' if opts.quick else ''}")
    L.append("")
    L.append("Generated by `tokbench zoo`; every number below comes from the result files in this folder, made by "
             "the command in `commands.sh` from the configuration in `config.resolved.yaml`. Do not edit by hand: "
             "re-run the command.")
    L.append("")
    if cfg.get("description"):
        L.append(str(cfg["description"]).strip())
        L.append("")
    for n in cfg.get("notes") or []:
        L.append(f"> {n}")
    if cfg.get("notes"):
        L.append("")
    L.append("## How small this is, and what it can and cannot show")
    L.append("")
    L.append(f"- **Data**: {size}. The split is by source, so no crop of a held-out photograph is ever trained on.")
    L.append(f"- **Tokenizers**: {n_tok}, each trained once with seed {cfg['seed']} (one training run per "
             "configuration: differences between two tokenizers include seed-to-seed noise that this zoo does not "
             "measure).")
    recipes = generator_recipes(cfg)
    if len(recipes) > 1:
        L.append(f"- **Generators**: {len(recipes)} per tokenizer, one per recipe: "
                 + "; ".join(generator_label(cfg, r, n) for n, r in recipes)
                 + ". `gfid` in the tables is the first one's; `correlation_by_generator*.md` analyse each on its own "
                 "(rows in `gfid_all.csv`; `correlation_by_generator_gkid*.md` with the samples' KID as the target).")
        L += generator_agreement_lines(summary, [n for n, _ in recipes], gfid_references(cfg))
    else:
        L.append(f"- **Generators**: one per tokenizer, same recipe: {summary['generator']}.")
    refs = gfid_references(cfg)
    n_ref = first_gfid.get("reference_images") or {refs[0]: first_gfid.get("num", "?")}
    L.append(f"- **rFID / pFID**: {d['heldout_images']} held-out images against the same {d['heldout_images']} images. "
             f"**gFID**: {first_gfid.get('num', '?')} samples against the "
             + " and the ".join(f"{r} split ({n_ref.get(r, '?')} images)" for r in refs)
             + (" (the first is `gfid`, the others `gfid_<split>` in gfid_all.csv)" if len(refs) > 1 else "")
             + f", in a {feat_dim}-dimensional feature space. With so few "
             "images every FID here carries a large small-sample bias (and a covariance estimated from fewer images "
             "than dimensions is rank-deficient): compare values only within this folder, never with published "
             "FIDs.")
    if refs[0] == "train":
        L.append("- rFID/pFID (held-out reference) and gFID (training-split reference) use different reference "
                 "images, so their absolute values are not comparable with each other; only orderings across "
                 "tokenizers are compared.")
    L.append(f"- **FID reference distance**: FID(training split, held-out split) = "
             f"{summary['fid_train_vs_heldout']:.2f} — the spread that comes from the data alone.")
    if random_inc:
        L.append("- **Feature extractor**: NO Inception weights were available offline, so every FID here uses a "
                 "deterministic *random-weight* Inception (flagged `random_weights: true` in each result's protocol). "
                 "Such features measure low-level image statistics, not the semantics real FIDs measure. Run "
                 "`tokbench fetch-fid-weights` once (or pass `--fid-weights`) and re-run for real FIDs.")
    else:
        L.append(f"- **Feature extractor**: {ext.get('extractor', ext.get('name', '?'))}, weights: "
                 f"{ext.get('weights_source') or ext.get('weights') or '?'} "
                 f"({'sha256 ' + str(ext.get('weights_sha256'))[:16] if ext.get('weights_sha256') else 'see protocol'}).")
    L.append(f"- **pFID**: α ∈ {{{', '.join(f'{a:g}' for a in pf['alpha'])}}}, δ = {pf['delta']} "
             f"({'fraction of each vocabulary' if all(0 < float(x) < 1 for x in pf['delta']) else 'codes'}), "
             f"β = {pf['beta']}, neighbour rule `{pf['mode']}`, seeds {pf['seeds']}.")
    L.append("- **What it can show**: whether, *on this data and at this scale*, the ordering of tokenizers by "
             "rFID or pFID matches their ordering by gFID, with bootstrap intervals over tokenizers. "
             "**What it cannot show**: anything about ImageNet-scale tokenizers and generators, effects smaller than "
             "the seed-to-seed noise, or that pFID *causes* or *explains* gFID. A wide interval means the zoo is "
             "too small to decide, not that there is no effect.")
    L.append("")
    L.append("## Leaderboard")
    L.append("")
    L.append(md_table(cols, rows))
    L.append("")
    L.append("Also `leaderboard.md/.csv/.json` (the runner's leaderboard with its protocol), `zoo.csv`, "
             "`summary.json` (per-stage timings and provenance), `runs/*.json` (one result file per tokenizer, gFID "
             "protocol included), `configs/` (every tokenizer's train-robust config and the generator recipe).")
    L.append("")
    L.append("## Does pFID predict gFID?")
    L.append("")
    L.append(f"{n_tok} tokenizers; coefficients of each metric against gFID over tokenizers, 95% percentile "
             f"bootstrap intervals ({cfg['correlate']['resamples']} resamples, seed {cfg['correlate']['seed']}). "
             "FID-like metrics are lower-is-better on both sides, so a metric that predicts gFID correlates "
             "*positively*; PSNR, SSIM, usage and perplexity agree with gFID through a negative coefficient.")
    L.append("")
    L += lines_corr
    L.append("")
    L.append("What this zoo found (read mechanically from the intervals above):")
    L.append("")
    L += verdict(facts) or ["- no pFID column to judge."]
    L.append("")
    L.append("These statements are about this zoo only: " + (
        "random-weight Inception features, " if random_inc else "") +
        f"{d['heldout_images']} held-out images, {n_tok} tokenizers trained once each. They neither confirm nor "
        "refute the RobustTok paper's ImageNet-scale claim.")
    L.append("")
    L += perturbation_lines(rows)
    L.append("Full tables with p-values and leave-one-out details: `correlation.md` / `correlation.json`; figures "
             "(each metric against gFID, pFID versus α): `plots/`; a static page: `index.html`.")
    L.append("")
    L.append("## Reproduce")
    L.append("")
    L.append("```sh")
    L.append(run_cmd)
    L.append("```")
    L.append("")
    stage_total = sum(v or 0 for t in summary["stage_seconds"].values() for v in t.values())
    L.append(f"The stages took {stage_total / 60:.1f} min of wall time in total (sum over every tokenizer's stages, "
             f"as recorded when each stage ran; per-stage times in `summary.json`); the last invocation, which "
             f"wrote this file, took {summary['seconds_this_invocation']:.0f} s.")
    L.append("")
    return "\n".join(L)
