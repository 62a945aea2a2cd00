"""A paper experiment over *frozen* tokenizers (e.g. RobustTok's correlation study, `benchmarks/experiments/papers/
robusttok-11x2.yaml`): for every official tokenizer, pre-tokenise an ImageNet-style train folder (ten-crop with flips,
as LlamaGen) → train one generator per architecture (LlamaGen-style GPT and RAR) with one recipe each → rFID, pFID,
codebook statistics on the validation folder (the runner) → gFID of every generator (N samples with CFG against a
reference .npz such as VIRTUAL_imagenet256_labeled.npz) → one table row per tokenizer × generator → `tokbench
correlate` per generator.

It reuses the zoo's resumable stage machinery (`pipeline.Stages`: a finished stage leaves a marker keyed
by the hash of everything it depends on; unfinished ones resume from their own checkpoints). Frozen tokenizers have no
training stage. Run it with `tokbench paper --config benchmarks/experiments/papers/robusttok-11x2.yaml`.
"""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import yaml

from ..data import open_dataset
from ..fid import get_extractor, reference_stats
from ..gen import gfid, load_generator
from ..gen.checkpoint import TokenizerRef
from ..gen.tokenset import pretokenize
from ..gen.training import RunConfig, train as train_generator
from ..report import correlate
from ..report.correlate import CorrelateRequest
from ..report.inputs import rows_from_results
from ..report.render import write_text_atomic
from ..runner import RunOptions, evaluate, write_leaderboard
from ..runner.schema import result_file
from ..runner.suite import Suite
from ..testing import fixtures_root
from ..weights import sha256_file
from .config import deep_merge, read_layered, stable_hash
from .pipeline import Stages, _rel, write_json

TOP_KEYS = {"name", "description", "notes", "base", "data", "tokenizers", "pretokenize", "generators", "gfid",
            "measure", "correlate", "lacks"}
DEFAULTS: dict[str, Any] = {
    "name": "paper", "description": "", "notes": [], "lacks": [],
    "data": {"train": None, "val": None, "resolution": 256, "num_train_images": None, "num_val_images": None,
             "crop": "adm"},
    "tokenizers": [],
    "pretokenize": {"aug": "tencrop", "batch_size": 64, "shard_size": 4096},
    "generators": {},
    "gfid": {"reference": None, "num": 50000, "seed": 0, "batch_size": 64},
    "measure": {"metrics": ["rfid", "pfid", "usage", "psnr", "ssim"],
                "pfid": {"alpha": [0.5, 1.0], "delta": [0.1], "seeds": [0], "mode": "code", "beta": 1.0,
                         "scales": None},
                "fid": {"extractor": "inception-v3-compat", "weights": None, "feature": None},
                "batch_size": 64, "chunk_size": 1024, "usage_window": 256},
    "correlate": {"metrics": ["rfid", "pfid", "usage", "psnr", "ssim"], "resamples": 10000, "seed": 0,
                  "plots": True, "html": True},
}
TOKENIZER_KEYS = {"name", "preset", "family", "fixture", "weights", "upstream_config", "note"}


def _find(path: str, near: Path) -> Path:
    """A path as written, else relative to the config's folder, else to the project root."""
    p = Path(path).expanduser()
    for cand in (p, near / p, Path(__file__).resolve().parents[2] / p):
        if cand.exists():
            return cand
    raise FileNotFoundError(f"{path} not found (tried as given, beside the config {near} and in the project root)")


def load(path: str | Path) -> dict:
    """The resolved experiment: defaults ← `base:` file(s) ← this file (mappings merged, lists replaced)."""
    return resolve(read_layered(path, "base", "paper config", "benchmarks/experiments/papers/"), Path(path))


def resolve(raw: dict, where: Path) -> dict:
    unknown = set(raw) - TOP_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}; known: {', '.join(sorted(TOP_KEYS))}")
    cfg = deep_merge(DEFAULTS, raw)
    for sec in ("data", "pretokenize", "gfid", "measure", "correlate"):
        bad = set(cfg[sec]) - set(DEFAULTS[sec])
        if bad:
            raise ValueError(f"{where}: unknown keys in {sec!r}: {sorted(bad)}; known: {', '.join(sorted(DEFAULTS[sec]))}")
    for k in ("train", "val"):
        if not cfg["data"][k]:
            raise ValueError(f"{where}: data.{k} is required (an ImageNet-style folder, or 'sample:train' / "
                             "'sample:heldout')")
    if not cfg["gfid"]["reference"]:
        raise ValueError(f"{where}: gfid.reference is required (an ADM .npz such as VIRTUAL_imagenet256_labeled.npz, "
                         "or 'val' / 'train')")
    toks = []
    for t in cfg["tokenizers"]:
        bad = set(t) - TOKENIZER_KEYS
        if bad or not t.get("name") or "/" in t["name"] or bool(t.get("preset")) == bool(t.get("family")):
            raise ValueError(f"{where}: tokenizer {t.get('name')!r}: needs a plain name and exactly one of preset / "
                             f"family (keys: {', '.join(sorted(TOKENIZER_KEYS))}){'; unknown ' + str(sorted(bad)) if bad else ''}")
        t = dict(t)
        if t.get("fixture"):  # a parity fixture (dry runs): its weights and config, found as the parity tests do

            fx = fixtures_root() / t.pop("fixture")
            if not fx.is_dir():
                raise FileNotFoundError(f"{where}: tokenizer {t['name']!r}: parity fixture {fx} does not exist "
                                        "(set TOKBENCH_FIXTURES to ../shared/fixtures/parity)")
            t.setdefault("weights", str(fx / "weights.safetensors"))
            t.setdefault("upstream_config", str(fx / "config.json"))
        if isinstance(t.get("upstream_config"), str):
            t["upstream_config"] = json.loads(_find(t["upstream_config"], where.parent).read_text())
        if t.get("weights") and not str(t["weights"]).startswith("hf://"):
            t["weights"] = str(_find(t["weights"], where.parent))
        toks.append(t)
    names = [t["name"] for t in toks]
    if not toks or len(set(names)) != len(names):
        raise ValueError(f"{where}: tokenizers must be a non-empty list with distinct names")
    cfg["tokenizers"] = toks
    if not cfg["generators"]:
        raise ValueError(f"{where}: generators is empty (e.g. gpt: {{config: benchmarks/experiments/gen/gpt-l.yaml}})")

    gens = {}
    for arch, g in cfg["generators"].items():
        g = dict(g or {})
        base = {}
        if g.get("config"):
            base = yaml.safe_load(_find(g.pop("config"), where.parent).read_text()) or {}
            base.pop("description", None)
        g = deep_merge(base, g)
        g.setdefault("model", {})["arch"] = arch
        g["name"] = f"{cfg['name']}-{arch}"
        try:
            RunConfig.from_dict(g)
        except ValueError as e:
            raise ValueError(f"{where}: generators.{arch}: {e}") from None
        gens[arch] = g
    cfg["generators"] = gens
    return cfg


def tokenizer_ref(entry: dict):
    return TokenizerRef(entry.get("preset") or entry["family"], entry.get("weights"), entry.get("upstream_config"))


def generator_label(arch: str, rc: dict) -> str:
    size = (rc.get("model") or {}).get("size", "custom")
    return f"{arch}:{size}"


@dataclass
class PaperOptions:
    out: Path = Path("results/papers/robusttok-11x2")
    work: Path | None = None
    device: str = "cpu"
    progress: bool = True
    extractor: Any = None  # a feature extractor object (tests); default: measure.fid
    log: Callable[[str], None] = field(default=print)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.work = Path(self.work) if self.work is not None else self.out / "work"


# ----------------------------------------------------------------------------------------------------------------------
def run_paper(cfg: dict, opts: PaperOptions) -> dict:
    """Run (or resume) the experiment; returns the summary written to `<out>/summary.json`."""
    t0 = time.time()
    out, work = opts.out, opts.work
    out.mkdir(parents=True, exist_ok=True)
    stages = Stages(out / "state", work)
    d, m = cfg["data"], cfg["measure"]
    res = int(d["resolution"])
    train_ds = open_dataset(d["train"], res, num_images=d["num_train_images"], crop=d["crop"])
    val_ds = open_dataset(d["val"], res, num_images=d["num_val_images"], crop=d["crop"])
    (out / "config.resolved.yaml").write_text("# the experiment exactly as run (written by `tokbench paper`)\n"
                                              + yaml.safe_dump(json.loads(json.dumps(cfg, default=str)), sort_keys=False))
    fkw = {"feature": str(m["fid"]["feature"])} if m["fid"].get("feature") else {}
    extractor = opts.extractor or get_extractor(m["fid"]["extractor"], m["fid"]["weights"], device=opts.device, **fkw)
    ext_proto = dict(getattr(extractor, "protocol", {}) or {})
    cache = work / "reference_stats"
    val_ref = reference_stats(val_ds, extractor, batch_size=int(m["batch_size"]), cache=cache)
    g = cfg["gfid"]
    if g["reference"] == "val":
        gref, gref_key = val_ref, val_ref[1].get("cache_key")
    elif g["reference"] == "train":
        gref = reference_stats(train_ds, extractor, batch_size=int(m["batch_size"]), cache=cache)
        gref_key = gref[1].get("cache_key")
    else:
        gref = str(_find(g["reference"], Path.cwd()))
        gref_key = sha256_file(gref)
    suite = Suite.from_dict({
        "name": cfg["name"], "description": f"{cfg['name']}: validation folder {d['val']}", "data": str(d["val"]),
        "num_images": d["num_val_images"], "resolution": res, "crop": d["crop"], "tokenizers": [],
        "metrics": list(m["metrics"]), "pfid": dict(m["pfid"]), "fid": dict(m["fid"]),
        "batch_size": int(m["batch_size"]), "chunk_size": int(m["chunk_size"]), "usage_window": int(m["usage_window"])},
        file=f"paper:{cfg['name']}")
    opts.log(f"paper {cfg['name']}: {len(cfg['tokenizers'])} frozen tokenizers x {len(cfg['generators'])} generators; "
             f"train {d['train']} ({len(train_ds)} images), val {d['val']} ({len(val_ds)} images)")
    records = [run_tokenizer(e, cfg, opts, stages, train_ds, val_ds, suite, extractor, ext_proto, val_ref, gref,
                             gref_key) for e in cfg["tokenizers"]]
    return finish(cfg, opts, suite, records, time.time() - t0)


def run_tokenizer(entry: dict, cfg: dict, opts: PaperOptions, stages: Stages, train_ds, val_ds, suite, extractor,
                  ext_proto: dict, val_ref, gref, gref_key: str) -> dict:
    name, dev = entry["name"], opts.device
    ref = tokenizer_ref(entry)
    tok = None

    def tokenizer():
        nonlocal tok
        if tok is None:
            tok = ref.load(dev).eval()
        return tok

    # 1. pre-tokenise the train folder (frozen tokenizer: no training stage) ----------------------------------------
    p = cfg["pretokenize"]
    k_pre = stable_hash({"tokenizer": ref.to_dict(), "pretokenize": p, "data": train_ds.content_hash})
    m_pre = stages.done(name, "pretokenize", k_pre)
    if m_pre is None:
        opts.log(f"[{name}] pre-tokenise {len(train_ds)} training images (aug {p['aug']})")
        folder, t0 = stages.folder(name, "pretokenize", k_pre), time.time()
        meta = {"tokenizer": ref.to_dict(), "tokenizer_info": tokenizer().info.to_dict(), "data": train_ds.describe()}
        with torch.no_grad():
            pretokenize(tokenizer(), train_ds, folder, meta=meta, aug=p["aug"], batch_size=int(p["batch_size"]),
                        shard_size=int(p["shard_size"]), progress=opts.progress)
        m_pre = stages.mark(name, "pretokenize", k_pre, {"tokens": _rel(folder), "images": len(train_ds),
                                                          "seconds": round(time.time() - t0, 2)})

    # 2. one generator per architecture, one recipe each ------------------------------------------------------------
    gens = {}
    for arch, rc in cfg["generators"].items():
        k_gen = stable_hash({"pretokenize": k_pre, "generator": rc})
        stage = f"generator-{arch}"
        m_gen = stages.done(name, stage, k_gen)
        if m_gen is None:
            opts.log(f"[{name}] train generator {generator_label(arch, rc)}")
            folder, t0 = stages.folder(name, stage, k_gen), time.time()
            path = train_generator(Path(m_pre["tokens"]), RunConfig.from_dict(rc), folder, device=dev,
                                   progress=opts.progress)
            m_gen = stages.mark(name, stage, k_gen, {"generator": _rel(path), "sha256": sha256_file(path),
                                                      "seconds": round(time.time() - t0, 2)})
        gens[arch] = (k_gen, m_gen)

    # 3. rFID, pFID, codebook statistics on the validation folder (the runner) -------------------------------------

    k_meas = stable_hash({"tokenizer": ref.to_dict(), "suite": suite.to_dict(), "val": val_ds.content_hash,
                          "extractor": ext_proto})
    m_meas = stages.done(name, "measure", k_meas)
    if m_meas is None:
        opts.log(f"[{name}] measure on {len(val_ds)} validation images")
        t0 = time.time()
        ro = RunOptions(out_dir=opts.out / "runs", device=dev, progress=opts.progress)
        r = evaluate(tokenizer(), name, suite, val_ds, extractor, val_ref[0], val_ref[1], ro)
        if r.get("status") != "ok":  # pragma: no cover - evaluate raises instead
            raise RuntimeError(f"{name}: measurement failed: {r.get('reason')}")
        m_meas = stages.mark(name, "measure", k_meas, {"result": _rel(result_file(opts.out / "runs", r)),
                                                        "seconds": round(time.time() - t0, 2)})

    # 4. gFID of every generator ------------------------------------------------------------------------------------
    g = cfg["gfid"]
    gfids = {}
    for arch, (k_gen, m_gen) in gens.items():
        sampling = cfg["generators"][arch].get("sampling") or {}
        k = stable_hash({"generator": k_gen, "gfid": g, "reference": gref_key, "extractor": ext_proto,
                         "sampling": sampling})
        stage = f"gfid-{arch}"
        m_g = stages.done(name, stage, k)
        if m_g is None:
            opts.log(f"[{name}] gFID of {generator_label(arch, cfg['generators'][arch])}: {g['num']} samples")
            t0 = time.time()
            model, _ = load_generator(m_gen["generator"], dev)
            value, proto = gfid(model, tokenizer(), gref, extractor, settings=sampling, num=int(g["num"]),
                                seed=int(g["seed"]), batch_size=int(g["batch_size"]), device=dev,
                                progress=opts.progress)
            m_g = stages.mark(name, stage, k, {"value": value, "num": int(g["num"]), "protocol": proto,
                                               "seconds": round(time.time() - t0, 2)})
        gfids[arch] = m_g
    return {"name": name, "note": entry.get("note", ""), "tokenizer": ref.to_dict(), "frozen": True,
            "pretokenize": m_pre, "generators": {a: v[1] for a, v in gens.items()}, "measure": m_meas, "gfid": gfids}


def table_rows(cfg: dict, records: list[dict]) -> list[dict]:
    """One row per tokenizer × generator: the runner's metrics (as `tokbench correlate` reads result files) + gFID."""
    rows = []
    for r in records:
        df = rows_from_results([Path(r["measure"]["result"])])
        if df.empty:
            raise RuntimeError(f"{r['name']}: the result file {r['measure']['result']} is not a successful run")
        base = {k: v for k, v in df.iloc[0].to_dict().items() if k not in ("gfid", "generator", "source")}
        for arch, m_g in r["gfid"].items():
            rows.append({**base, "generator": generator_label(arch, cfg["generators"][arch]), "gfid": m_g["value"],
                         "source": f"paper:{cfg['name']}"})
    return rows


def correlate_request(cfg: dict, out: Path) -> CorrelateRequest:
    """The paper's correlation step: `paper.csv` against gFID, each generator on its own."""
    c = cfg["correlate"]
    return CorrelateRequest(out=out, tables=[out / "paper.csv"], target="gfid", by="generator",
                            metrics=list(c["metrics"]), resamples=int(c["resamples"]), seed=int(c["seed"]),
                            leaderboard=out / "leaderboard.json", plots=c.get("plots", True), html=c.get("html", True))


def finish(cfg: dict, opts: PaperOptions, suite, records: list[dict], seconds: float) -> dict:
    out = opts.out
    write_leaderboard(out / "runs", out, suite=suite.name)
    rows = table_rows(cfg, records)
    cols = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols)
    w.writeheader()
    for r in rows:
        w.writerow({c: ("" if r.get(c) is None else r.get(c)) for c in cols})
    write_text_atomic(out / "paper.csv", buf.getvalue())
    req = correlate_request(cfg, out)
    correlate.run(req)
    summary = {"name": cfg["name"], "tokenizers": records, "table": rows, "lacks": cfg["lacks"],
               "correlate": {"command": req.command(), "exit_code": 0},
               "seconds_this_invocation": round(seconds, 1)}
    write_json(out / "summary.json", summary)
    write_text_atomic(out / ".gitignore", "# checkpoints, token shards and resume state: large, and not results\n"
                                          "work/\nstate/\n")
    return summary
