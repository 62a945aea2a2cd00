"""Ship a finished zoo's smallest tokenizers and their generators inside the package (`tokbench/zoo_weights/`), so
that an offline install has real trained neural tokenizers to benchmark.

`tokbench zoo --out results/zoo --export-weights tokbench/zoo_weights` picks, from the zoo's summary, the tokenizers
whose tokenizer + generator files are smallest, as many as fit in the size budget (default 3 MB in total) — or the
ones named with `--export-names` —, copies
the tokenizer weights unchanged and rewrites each generator's tokenizer reference to the shipped preset name.
`tokbench.models.shipped_zoo` registers every file it finds there as a preset `tokbench-zoo-<name>` (its generator
as `Preset.generator`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..io import write_text_atomic
from ..weights import safetensors_metadata, save_safetensors

MANIFEST = "manifest.json"


def choose(summary: dict, budget_bytes: int, names: list[str] | None = None) -> list[dict]:
    """The smallest tokenizer + generator pairs that fit the budget, or exactly `names` (which must fit)."""
    items = []
    for t in summary["tokenizers"]:
        tp, gp = Path(t["train"]["tokenizer"]), Path(t["generator"]["generator"])
        items.append({"name": t["name"], "tokenizer": tp, "generator": gp,
                      "bytes": tp.stat().st_size + gp.stat().st_size, "gfid": t["gfid"]["value"], "axes": t["axes"]})
    if names:
        by_name = {it["name"]: it for it in items}
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise ValueError(f"not in this zoo: {unknown}; it has {sorted(by_name)}")
        out = [by_name[n] for n in names]
        total = sum(it["bytes"] for it in out)
        if total > budget_bytes:
            raise ValueError(f"{names} take {total / 2**20:.2f} MB, over the {budget_bytes / 2**20:.2f} MB budget")
        return out
    items.sort(key=lambda x: (x["bytes"], x["name"]))
    out, total = [], 0
    for it in items:
        if total + it["bytes"] > budget_bytes:
            continue
        out.append(it)
        total += it["bytes"]
    return out


def export(out_dir: str | Path, dest: str | Path, *, budget_mb: float = 3.0, names: list[str] | None = None) -> list[dict]:
    """Copy the chosen weights into `dest` (replacing what an earlier export left there) with a manifest; returns
    the manifest rows."""
    from safetensors.torch import load_file

    out_dir, dest = Path(out_dir), Path(dest)
    summary = json.loads((out_dir / "summary.json").read_text())
    chosen = choose(summary, int(budget_mb * 1024 * 1024), names)
    if not chosen:
        raise ValueError(f"no zoo tokenizer fits in {budget_mb} MB")
    dest.mkdir(parents=True, exist_ok=True)
    for old in manifest_rows(dest):
        for k in ("tokenizer", "generator"):
            (dest / old[k]).unlink(missing_ok=True)
    rows = []
    for it in chosen:
        preset = f"tokbench-zoo-{it['name']}"
        tdst = dest / f"{it['name']}.tokenizer.safetensors"
        gdst = dest / f"{it['name']}.generator.safetensors"
        shutil.copyfile(it["tokenizer"], tdst)
        meta = safetensors_metadata(it["generator"])
        ref = json.loads(meta["tokbench.gen.tokenizer"])
        ref.update(name=preset, weights=None, upstream_config=None)
        meta["tokbench.gen.tokenizer"] = json.dumps(ref)
        save_safetensors(load_file(str(it["generator"])), gdst, meta)
        rows.append({"preset": preset, "name": it["name"], "tokenizer": tdst.name, "generator": gdst.name,
                     "bytes": tdst.stat().st_size + gdst.stat().st_size, "axes": it["axes"],
                     "zoo": summary["name"], "zoo_gfid": it["gfid"],
                     "source": f"{out_dir}/summary.json (trained by `tokbench zoo`)"})
    write_text_atomic(dest / MANIFEST, json.dumps({"zoo": summary["name"], "budget_mb": budget_mb, "weights": rows},
                                                  indent=1) + "\n")
    return rows


def manifest_rows(folder: Path) -> list[dict]:
    p = folder / MANIFEST
    return list(json.loads(p.read_text()).get("weights", [])) if p.is_file() else []
