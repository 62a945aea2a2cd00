"""Leaderboards from result files: `results/leaderboard.{md,csv,json}`, one row per tokenizer, the protocol printed
above the table. Rows measured under a different protocol (data, extractor weights, pFID settings, …) are refused
and listed with the differing fields, never mixed into the table."""

from __future__ import annotations

import csv
import io
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Sequence

from ..io import write_json_atomic, write_text_atomic
from ..io import portable_path
from ..results.metrics import BY_KEY, lookup
from ..results.result import Result, newest, read

log = logging.getLogger(__name__)


def collect(runs_dir: str | Path, suite: str | None = None) -> list[Result]:
    """Every result file under runs_dir (not recursing into state/ or images/), optionally of one suite."""
    out = []
    for p in sorted(Path(runs_dir).glob("*.json")):
        try:
            r = read(p)
        except (ValueError, OSError) as e:
            log.debug("skipping %s: %s", p, e)
            continue
        if suite is None or r.suite == suite:
            out.append(r)
    return out


def _diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    keys = sorted(set(a) | set(b))
    out = []
    for k in keys:
        if k == "hash":
            continue
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}")
    return out


# Columns of scalar metrics after the pFID/pKID ones, by canonical key (the registry gives each its label).
_TAIL_METRICS = ("usage", "perplexity", "entropy_norm", "usage_per_window", "psnr", "ssim", "gfid")


def build(results: Sequence[Result | dict]) -> dict:
    """The table from results (Results or result dicts): the newest success per (tokenizer, suite, data) is a row;
    a failure is listed apart (and only when it is newer than that tokenizer's newest success), never instead of a
    row."""
    results = [r if isinstance(r, Result) else Result(r, r.get("_file")) for r in results]  # dicts: as given
    ok, failed_runs = newest(results)
    ok_names = {r.tokenizer for r in ok}
    failed = [{"tokenizer": r.tokenizer, "reason": r.reason, "finished": r.finished,
               "has_successful_row": r.tokenizer in ok_names}
              for r in sorted(failed_runs, key=lambda r: r.tokenizer)]
    if not ok:
        return {"suite": results[0].suite if results else None, "protocol": None, "rows": [],
                "columns": [], "failed": failed, "refused": []}
    counts = Counter(r.protocol["hash"] for r in ok)
    top = max(counts.values())
    ref_hash = next(r.protocol["hash"] for r in sorted(ok, key=lambda r: r.tokenizer)
                    if counts[r.protocol["hash"]] == top)
    ref = next(r for r in ok if r.protocol["hash"] == ref_hash)
    rows, refused, pfid_cols, kid_cols = [], [], [], []
    for r in ok:
        if r.protocol["hash"] != ref_hash:
            refused.append({"tokenizer": r.tokenizer,
                            "reason": "different protocol: " + ", ".join(_diff(ref.protocol, r.protocol)[:8])})
            continue
        info, values = r.info, r.metric_values()
        row = {"tokenizer": r.tokenizer, "family": info.get("family"),
               "tokens": info.get("tokens_per_image"), "vocab": info.get("vocab_size"),
               "quantizer": info.get("quantizer"), BY_KEY["rfid"].label: values["rfid"],
               BY_KEY["rkid"].label: values["rkid"]}
        rules = []
        for p in r.pfid:
            k = p.label()
            if k not in pfid_cols:
                pfid_cols.append(k)
            row[k] = p.mean
            row[k + " std"] = p.std_if_seeds
            rules.append(p.rule or p.mode)
            if p.kid_mean is not None:
                kk = p.label(metric="pkid")
                if kk not in kid_cols:
                    kid_cols.append(kk)
                row[kk] = p.kid_mean
        row["pFID rule"] = "/".join(dict.fromkeys(rules)) or None
        row.update({BY_KEY[k].label: values.get(k) for k in _TAIL_METRICS})
        row.update({"weights": _weights_label(r.weights, info), "weights_sha256": (r.weights.get("sha256") or "")[:12]})
        rows.append(row)
    gfid_protocols: dict[str, dict] = {}
    for r in ok:
        g = r.gfid
        if g is not None and g.is_record and r.protocol["hash"] == ref_hash:
            d = _gfid_summary(g.raw)
            gfid_protocols.setdefault(json.dumps(d, sort_keys=True), dict(d, tokenizers=[]))["tokenizers"].append(
                r.tokenizer)
    paper_cols = _add_published(rows, pfid_cols, ref.protocol)
    sort_key = pfid_cols[0] if pfid_cols else "rFID"
    rows.sort(key=lambda x: (x.get(sort_key) is None, x.get(sort_key) or 0.0, x["tokenizer"]))
    rkid = ["rKID"] if any(r.get("rKID") is not None for r in rows) else []
    columns = (["tokenizer", "family", "tokens", "vocab", "quantizer", "rFID"] + rkid + pfid_cols + kid_cols
               + (["pFID rule"] if pfid_cols else [])
               + [BY_KEY[k].label for k in _TAIL_METRICS] + ["weights", "weights_sha256"] + paper_cols)
    return {"suite": ref.suite, "protocol": ref.protocol, "protocol_hash": ref_hash,
            "sorted_by": sort_key, "columns": columns, "pfid_columns": pfid_cols, "rows": rows,
            "gfid_protocols": list(gfid_protocols.values()),
            "small_sample": [r.tokenizer for r in ok if r.protocol["hash"] == ref_hash and r.small_sample],
            "failed": failed, "refused": refused, "versions": ref.run.get("versions")}


PAPER_COLUMNS = ["rFID (paper)", "ΔrFID (ours − paper)", "pFID (paper)", "ΔpFID (ours − paper)", "paper protocol",
                 "protocol differences"]


def _add_published(rows: list[dict], pfid_cols: list[str], ref_protocol: dict) -> list[str]:
    """Beside our numbers, the preset's published ones (results/published.csv), the difference and what differs in
    protocol. The paper's pFID (α, δ) is unpublished: ΔpFID compares it with our first pFID column, flagged."""
    from ..published import headline, protocol_gap

    any_paper = False
    crop = ref_protocol.get("crop")
    for row in rows:
        r, p = headline(row["tokenizer"], "rfid"), headline(row["tokenizer"], "pfid")
        if r is None and p is None:
            continue
        any_paper = True
        ours_p = row.get(pfid_cols[0]) if pfid_cols else None
        row["rFID (paper)"] = r["value"] if r else None
        row["ΔrFID (ours − paper)"] = row["rFID"] - r["value"] if r and row.get("rFID") is not None else None
        row["pFID (paper)"] = p["value"] if p else None
        row["ΔpFID (ours − paper)"] = ours_p - p["value"] if p and ours_p is not None else None
        codes = [x["protocol"].split(":")[0] for x in (r, p) if x]
        row["paper protocol"] = " / ".join(codes)
        gaps = [protocol_gap(c) for c in codes]
        if crop != "adm" or ref_protocol.get("num_images") != 50000:
            gaps.insert(0, f"this suite: crop {crop}, N {ref_protocol.get('num_images')} (the papers: ImageNet val 50k)")
        if p:
            gaps.append(f"our pFID is {pfid_cols[0] if pfid_cols else 'not measured'}; the paper's (α, δ) is unpublished")
        parts = [x.strip() for g in gaps if g for x in g.split("; ")]
        row["protocol differences"] = "; ".join(dict.fromkeys(x for x in parts if x)) or "none known"
    return PAPER_COLUMNS if any_paper else []


def _weights_label(w: dict, info: dict) -> str | None:
    """The weights' source as given; a local absolute path inside the package as `tokbench/…` (machine-independent)."""
    src = w.get("source") or info.get("weight_source")
    return portable_path(src) if src and Path(src).is_absolute() else src


def _gfid_summary(g: dict) -> dict:
    """What makes two gFID values comparable: samples, seed, sampler, reference and feature extractor."""
    proto = g.get("protocol") or {}
    ref = g.get("reference") or {k: v for k, v in (proto.get("reference") or {}).items() if k != "cache"}
    ex = proto.get("extractor") or {}
    return {"num_samples": g.get("num_samples"), "seed": proto.get("seed"), "sampling": proto.get("sampling"),
            "class_rule": proto.get("class_rule"), "reference": ref,
            "extractor": {k: ex.get(k) for k in ("extractor", "feature", "weights_sha256")}}


def gfid_lines(board: dict) -> list[str]:
    protos = board.get("gfid_protocols") or []
    lines = []
    if len(protos) > 1:
        lines.append(f"- **gFID: {len(protos)} different gFID protocols in this table** (compare gFIDs only within one):")
    for p in protos:
        ref = p["reference"]
        where = (f"`{ref['data']}` ({ref.get('n')} images)" if "data" in ref else f"`{ref.get('npz')}`"
                 if "npz" in ref else json.dumps(ref))
        s = p.get("sampling") or {}
        samp = ", ".join(f"{k} {s[k]}" for k in ("cfg", "temperature", "top_k", "top_p") if k in s)
        who = f" [{', '.join(p['tokenizers'])}]" if len(protos) > 1 else ""
        lines.append(f"- gFID{who}: {p['num_samples']} samples ({p.get('class_rule')}), seed {p['seed']}, sampler "
                     f"{samp or 'default'}, against {where}; features {p['extractor'].get('extractor')} "
                     f"{p['extractor'].get('feature') or ''}")
    return lines


def _fmt(v, col: str) -> str:
    """A cell: a known metric's column as the metric registry prints it, other floats with 2 decimals."""
    if v is None:
        return "–"
    if isinstance(v, float):
        info = lookup(col)
        return info.format(v) if info is not None and not col.startswith("Δ") else f"{v:.2f}"
    return str(v)


def _split_text(d: dict) -> str:
    sp = d.get("split")
    if not sp:
        return ""
    return (f", {sp['part']} part of its split by {sp['by']} (held-out fraction {sp['held_out_fraction']:g}, seed "
            f"{sp['seed']}; {d.get('num_photos')} photographs)")


def protocol_lines(proto: dict) -> list[str]:
    d, fid = proto["data"], proto["fid"]
    ex = fid["extractor"]
    lines = [
        f"- data: `{d.get('kind', d.get('root', '?'))}`{' ' + d['root'] if d.get('root') else ''}{_split_text(d)} — N = "
        f"{proto.get('num_images')} images, {proto['resolution']} px, crop `{proto['crop']}`, content hash "
        f"`{str(d.get('content_hash', ''))[:16]}`",
        f"- FID: {ex.get('extractor')} ({ex.get('implementation', '')}), {ex.get('feature', '2048')}-d features, "
        f"weights `{ex.get('weights')}` ({ex.get('weights_source') or 'source not recorded'}) "
        f"sha256 `{str(ex.get('weights_sha256', ''))[:16]}`" + (" — **RANDOM WEIGHTS: not comparable with published "
                                                                "FIDs**" if ex.get("random_weights") else ""),
        f"- reference: the same {proto.get('num_images')} clean images (cache key `{str(fid['reference'].get('cache_key'))[:16]}`);"
        f" sqrt: {fid['sqrt']}; uint8: {proto['uint8']}",
    ]
    if proto.get("kid"):
        k = proto["kid"]
        lines.append(f"- KID: {k['estimator']}, kernel {k['kernel']}, {k['subsets']} subsets of "
                     f"{k['subset_size']} (seed {k['seed']}); unbiased at small N, where FID is not")
    if proto.get("pfid"):
        s = "; ".join(f"α={x['alpha']:g}, δ={x['delta']:g}, β={x['beta']:g}, {x['mode']} rule"
                      + (" excluding the current id" if x.get("exclude_self") else "") + f", seeds {x['seeds']}"
                      for x in proto["pfid"]["settings"])
        lines.append(f"- pFID: {s} (mean ± std over seeds; {proto['pfid']['rng']}). Codebooks: `feature` = the δ codes "
                     "nearest to the encoder feature (RobustTok), `code` = nearest to the assigned code; LFQ: Hamming "
                     "shells, FSQ: ±1 grid steps. A re-drawn token may draw itself back: realised share α(δ−1)/δ "
                     "(α with exclude_self)")
    if proto.get("codebook"):
        lines.append(f"- codebook statistics on clean tokens; usage/256img = ViT-VQGAN usage per "
                     f"{proto['codebook']['window']}-image window")
    lines.append(f"- protocol hash `{proto['hash'][:16]}`")
    return lines


def to_markdown(board: dict) -> str:
    out = [f"# tokbench leaderboard — suite `{board['suite']}`", ""]
    if board["protocol"] is None:
        out.append("No successful results.")
    else:
        from ..fid import SMALL_SAMPLE_NOTE

        note = [f"- **small sample**: {SMALL_SAMPLE_NOTE}"] if board.get("small_sample") else []
        out += ["Protocol:", ""] + protocol_lines(board["protocol"]) + note + gfid_lines(board) + [""]
        cols = board["columns"]
        out.append("| " + " | ".join(cols) + " |")
        out.append("|" + "|".join("---" for _ in cols) + "|")
        for r in board["rows"]:
            cells = []
            for c in cols:
                v = _fmt(r.get(c), c)
                if c in board["pfid_columns"] and r.get(c + " std") is not None:
                    v += f" ± {r[c + ' std']:.2f}"
                cells.append(v)
            out.append("| " + " | ".join(cells) + " |")
        out += ["", f"Sorted by {board['sorted_by']}."]
    if board["failed"]:
        out += ["", "Failed (the table keeps each tokenizer's last successful result):", ""] + [
            f"- `{f['tokenizer']}`"
            + (f" ({f['finished']})" if f.get("finished") else "") + f": {f['reason']}"
            + (" — its earlier successful result is in the table" if f.get("has_successful_row") else "")
            for f in board["failed"]]
    if board["refused"]:
        out += ["", "Refused (measured under a different protocol):", ""] + \
               [f"- `{f['tokenizer']}`: {f['reason']}" for f in board["refused"]]
    return "\n".join(out) + "\n"


def to_csv(board: dict) -> str:
    buf = io.StringIO()
    cols = list(board["columns"])
    for c in board.get("pfid_columns", []):
        cols.insert(cols.index(c) + 1, c + " std")
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in board["rows"]:
        w.writerow({c: ("" if r.get(c) is None else r.get(c)) for c in cols})
    return buf.getvalue()


def write_leaderboard(runs_dir: str | Path, out_dir: str | Path = "results", suite: str | None = None) -> dict:
    """Build and write `<out_dir>/leaderboard.{md,csv,json}` from the result files in runs_dir."""
    results = collect(runs_dir, None)
    if suite is None:
        names = Counter(r.suite for r in results if r.ok)
        if not names:
            raise ValueError(f"no successful result files in {runs_dir}")
        suite = names.most_common(1)[0][0]
    results = [r for r in results if r.suite == suite]
    if not results:
        raise ValueError(f"no result files of suite {suite!r} in {runs_dir}")
    board = build(results)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "leaderboard.md", to_markdown(board))
    write_text_atomic(out / "leaderboard.csv", to_csv(board))
    write_json_atomic(out / "leaderboard.json", board)
    return board
