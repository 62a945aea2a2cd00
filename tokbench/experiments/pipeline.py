"""The zoo pipeline: for every tokenizer, train it → pre-tokenise the training split → measure it on the held-out
split (rFID, pFID over α, codebook statistics, PSNR/SSIM, through `tokbench.runner`) → for each generator recipe
(`generators`, or the single `generator`): train it on the tokens → gFID (through `tokbench.gen.gfid`, one sampling
pass against each `gfid.reference`); then the leaderboard, `tokbench correlate` (primary generator and reference)
and, with several generators or references, `gfid_all.csv` and `correlation_by_generator*` (each generator on its
own); the README.

Resumable at two levels. A finished stage leaves a marker `<out>/state/<tokenizer>/<stage>.json` holding the hash of
everything it depends on (its configuration and the markers of the stages before it); a stage whose marker matches is
never redone. An interrupted stage resumes from its own checkpoints: tokenizer and generator training from their
last checkpoint (both bit-exact on CPU), pre-tokenising by shard, the runner by chunk. gFID sampling is short and
deterministic per sample, so an interrupted gFID stage simply runs again. A stage whose inputs changed starts afresh
in an emptied folder instead of mixing old and new work.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ..data import open_dataset, split_by_source
from ..fid import frechet_distance, get_extractor
from ..gen import gfid, load_generator
from ..gen.checkpoint import TokenizerRef
from ..gen.reference import resolve_reference
from ..gen.tokenset import TokenSet, pretokenize
from ..gen.training import RunConfig, train as train_generator
from ..io import write_json_atomic, write_text_atomic
from ..registry import load_tokenizer
from ..runner import Interrupted, RunOptions, evaluate
from ..runner.schema import result_file
from ..runner.suite import Suite
from ..tokenizer_training import Trainer
from ..weights import sha256_file
from .config import axes, generator_label, generator_recipes, gfid_references, stable_hash
from .report import finish, write_config_files

log = logging.getLogger(__name__)
STAGES = ("train", "pretokenize", "generator", "measure", "gfid")


class ZooInterrupted(RuntimeError):
    """Raised by the test hook `ZooOptions.interrupt` to simulate a kill in the middle of a stage."""


@dataclass
class ZooOptions:
    out: Path = Path("results/zoo")
    work: Path | None = None  # checkpoints, token shards, resume state (default: <out>/work, not committed)
    device: str = "cpu"
    progress: bool = True
    extractor: Any = None  # a feature extractor object (tests); default: the config's measure.fid
    command: str | None = None  # the command line that runs this zoo, recorded in commands.sh
    config_file: str | None = None
    quick: bool = False
    # (k, n): run only the tokenizers i with i % n == k and write no report; n such processes share one `out` (their
    # stages touch only their own tokenizers' files), then one unsharded run finds everything done and writes it
    shard: tuple[int, int] | None = None
    interrupt: dict | None = None  # test hook: {"tokenizer": name, "stage": "train"|"generator"|"measure"}
    log: Callable[[str], None] = field(default=print)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.work = Path(self.work) if self.work is not None else self.out / "work"


def write_json(path: Path, obj: Any) -> None:
    write_json_atomic(path, obj)


class Stages:
    """Markers of finished stages and the folders of unfinished ones."""

    def __init__(self, state_dir: Path, work: Path) -> None:
        self.state_dir, self.work = state_dir, work

    def marker(self, tok: str, stage: str) -> Path:
        return self.state_dir / tok / f"{stage}.json"

    def done(self, tok: str, stage: str, key: str) -> dict | None:
        p = self.marker(tok, stage)
        if not p.exists():
            return None
        try:
            m = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        return m if m.get("key") == key else None

    def folder(self, tok: str, stage: str, key: str) -> Path:
        """The stage's work folder; emptied when it holds partial work made for another key."""
        d = self.work / tok / stage
        kf = d / "KEY"
        if d.exists() and (not kf.exists() or kf.read_text().strip() != key):
            log.warning("%s/%s: inputs changed since the partial work in %s; starting this stage afresh", tok, stage, d)
            shutil.rmtree(d)
        d.mkdir(parents=True, exist_ok=True)
        write_text_atomic(kf, key + "\n")
        return d

    def mark(self, tok: str, stage: str, key: str, record: dict) -> dict:
        m = {"stage": stage, "tokenizer": tok, "key": key, **record}
        write_json(self.marker(tok, stage), m)
        return m


def _rel(p: Path) -> str:
    """Paths inside the project are recorded relative to the working directory (portable result files)."""
    p = Path(p)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


# ----------------------------------------------------------------------------------------------------------------------
def open_data(cfg: dict):
    """(full, train, held_out) data sets: the split is by source photograph / file, so no crop of a held-out
    photograph is ever trained on."""
    d = cfg["data"]
    ds = open_dataset(d["spec"], int(d["resolution"]), num_images=d["num_images"], crop=d["crop"])
    train, held = split_by_source(ds, float(d["held_out_fraction"]), int(d["split_seed"]))
    overlap = set(train.sources) & set(held.sources)
    if overlap:  # pragma: no cover - split_by_source guarantees it; the claim is checked, not assumed
        raise RuntimeError(f"train/held-out split shares sources {sorted(overlap)[:5]}")
    if len(train) == 0 or len(held) == 0:
        raise ValueError(f"data {d['spec']!r}: {len(ds)} images from {len(set(ds.sources))} sources cannot be split "
                         "into a training and a held-out part")
    return ds, train, held


def data_record(ds, train, held) -> dict:
    return {"description": ds.describe(), "images": len(ds), "sources": len(set(ds.sources)),
            "train_images": len(train), "train_sources": sorted(set(train.sources)),
            "train_hash": train.content_hash, "heldout_images": len(held),
            "heldout_sources": sorted(set(held.sources)), "heldout_hash": held.content_hash,
            "split": "by source photograph/file (tokbench.data.split_by_source): no held-out source is trained on"}


def make_suite(cfg: dict):
    m, d = cfg["measure"], cfg["data"]
    return Suite.from_dict({
        "name": cfg["name"], "description": f"tokbench zoo {cfg['name']}: held-out split of {d['spec']}",
        "data": str(d["spec"]), "num_images": None, "resolution": int(d["resolution"]), "crop": d["crop"],
        "tokenizers": [], "metrics": list(m["metrics"]), "pfid": dict(m["pfid"]), "fid": dict(m["fid"]),
        "batch_size": int(m["batch_size"]), "chunk_size": int(m["chunk_size"]),
        "usage_window": int(m["usage_window"])}, file=f"zoo:{cfg['name']}")


# ----------------------------------------------------------------------------------------------------------------------
def run_zoo(cfg: dict, opts: ZooOptions) -> dict:
    """Run (or resume) the whole zoo; returns the summary written to `<out>/summary.json`."""
    t_start = time.time()
    out, work = opts.out, opts.work
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    stages = Stages(out / "state", work)
    ds, train_ds, held_ds = open_data(cfg)
    data = data_record(ds, train_ds, held_ds)
    opts.log(f"zoo {cfg['name']}: {len(cfg['tokenizers'])} tokenizers; data {cfg['data']['spec']} at "
             f"{cfg['data']['resolution']} px: {data['train_images']} training images ({len(data['train_sources'])} "
             f"sources), {data['heldout_images']} held-out images ({len(data['heldout_sources'])} sources)")

    write_config_files(cfg, opts, data)

    m = cfg["measure"]
    fkw = {"feature": str(m["fid"]["feature"])} if m["fid"].get("feature") else {}
    extractor = opts.extractor or get_extractor(m["fid"]["extractor"], m["fid"]["weights"], device=opts.device, **fkw)
    cache = work / "reference_stats"
    keep = "all" if cfg["gfid"]["kid"] else "auto"  # KID of the samples needs every reference feature row
    held_ref = resolve_reference(held_ds, extractor, batch_size=int(m["batch_size"]), cache=cache, keep=keep).stats
    train_ref = resolve_reference(train_ds, extractor, batch_size=int(m["batch_size"]), cache=cache, keep=keep).stats
    floor = float(frechet_distance(train_ref[0], held_ref[0]))
    suite = make_suite(cfg)
    ext_proto = dict(getattr(extractor, "protocol", {}) or {})

    records = []
    refs = {"train": train_ref, "heldout": held_ref}
    entries = cfg["tokenizers"]
    if opts.shard is not None:
        k, n = opts.shard
        entries = [e for i, e in enumerate(entries) if i % n == k]
    for entry in entries:
        records.append(run_tokenizer(entry, cfg, opts, stages, train_ds, held_ds, suite, extractor, ext_proto, refs))
    if opts.shard is not None:
        opts.log(f"zoo {cfg['name']}: shard {opts.shard[0]}/{opts.shard[1]} finished {len(records)} tokenizers; "
                 "the report is written by the same command without --shard once every shard has finished")
        return {"name": cfg["name"], "shard": list(opts.shard), "tokenizers": records}

    summary = {"name": cfg["name"], "quick": opts.quick, "data": data, "extractor": ext_proto,
               "fid_train_vs_heldout": floor, "generator": generator_label(cfg),
               "tokenizers": records, "suite": suite.name}
    summary = finish(cfg, opts, summary, time.time() - t_start)
    return summary


def run_tokenizer(entry: dict, cfg: dict, opts: ZooOptions, stages: Stages, train_ds, held_ds, suite, extractor,
                  ext_proto: dict, refs: dict) -> dict:
    name, tc = entry["name"], entry["train_config"]
    hit = opts.interrupt if (opts.interrupt or {}).get("tokenizer") == name else None
    dev = opts.device

    # 1. tokenizer --------------------------------------------------------------------------------------------------
    k_train = stable_hash({"train_config": tc, "data": train_ds.content_hash})
    m_train = stages.done(name, "train", k_train)
    if m_train is None:
        opts.log(f"[{name}] train tokenizer ({tc['train']['steps']} steps)")
        d = stages.folder(name, "train", k_train)
        t0 = time.time()
        trainer = Trainer(tc, train_ds, out_dir=d, device=dev, progress=opts.progress)
        resumed = trainer.resume()
        if hit and hit.get("stage") == "train":
            trainer.fit(until=max(1, tc["train"]["steps"] // 2), final=False)
            trainer.save_checkpoint()
            raise ZooInterrupted(f"{name}: interrupted during tokenizer training at step {trainer.step}")
        res = trainer.fit()
        path = Path(res["tokenizer"])

        m_train = stages.mark(name, "train", k_train, {
            "tokenizer": _rel(path), "sha256": sha256_file(path), "steps": res["step"], "resumed": resumed,
            "last_log": res.get("last"), "choices": trainer.choices, "seconds": round(time.time() - t0, 2),
            "params": sum(p.numel() for p in trainer.model.parameters())})
        del trainer
    tok_path = Path(m_train["tokenizer"])

    # 2. pre-tokenise the training split --------------------------------------------------------------------------
    p_cfg = cfg["pretokenize"]
    k_pre = stable_hash({"train": k_train, "pretokenize": p_cfg})
    m_pre = stages.done(name, "pretokenize", k_pre)
    if m_pre is None:
        opts.log(f"[{name}] pre-tokenise {len(train_ds)} training images (aug {p_cfg['aug']})")
        d = stages.folder(name, "pretokenize", k_pre)
        t0 = time.time()
        tok = load_tokenizer(str(tok_path), device=dev).eval()
        meta = {"tokenizer": TokenizerRef(_rel(tok_path)).to_dict(), "tokenizer_info": tok.info.to_dict(),
                "data": train_ds.describe()}
        with torch.no_grad():
            pretokenize(tok, train_ds, d, meta=meta, labels=[-1] * len(train_ds), classes=[], aug=p_cfg["aug"],
                        batch_size=int(p_cfg["batch_size"]), progress=opts.progress)
        m_pre = stages.mark(name, "pretokenize", k_pre, {"tokens": _rel(d), "images": len(train_ds),
                                                          "seconds": round(time.time() - t0, 2)})
    tokens_dir = Path(m_pre["tokens"])

    # 4. rFID, pFID, codebook statistics, PSNR/SSIM on the held-out split (the runner) -------------------------------
    k_meas = stable_hash({"train": k_train, "suite": suite.to_dict(), "heldout": held_ds.content_hash,
                          "extractor": ext_proto})
    m_meas = stages.done(name, "measure", k_meas)
    if m_meas is None:
        opts.log(f"[{name}] measure on {len(held_ds)} held-out images")
        t0 = time.time()
        tok = load_tokenizer(str(tok_path), device=dev).eval()
        ro = RunOptions(out_dir=opts.out / "runs", device=dev, progress=opts.progress,
                        stop_after_chunks=1 if (hit and hit.get("stage") == "measure") else None)
        try:
            res = evaluate(tok, name, suite, held_ds, extractor, refs["heldout"][0], refs["heldout"][1], ro)
        except Interrupted as e:
            raise ZooInterrupted(f"{name}: interrupted during measurement ({e})") from e
        if res.get("status") != "ok":  # pragma: no cover - evaluate raises instead
            raise RuntimeError(f"{name}: measurement failed: {res.get('reason')}")

        m_meas = stages.mark(name, "measure", k_meas, {"result": _rel(result_file(opts.out / "runs", res)),
                                                        "seconds": round(time.time() - t0, 2)})

    # 3 + 5. one generator per recipe, then its gFID against every reference ---------------------------------------
    runs = []
    for gname, recipe in generator_recipes(cfg):
        m_gen, k_gen = generator_stage(name, gname, recipe, cfg, opts, stages, k_pre, tokens_dir, hit)
        m_gfid = gfid_stage(name, gname, recipe, cfg, opts, stages, k_gen, Path(m_gen["generator"]), tok_path,
                            extractor, ext_proto, refs)
        runs.append((gname, recipe, m_gen, m_gfid))
    gname, recipe, m_gen, m_gfid = runs[0]

    # the gFID goes into the runner's result file (correlate and the leaderboard read it there): the primary
    # generator against the primary reference as `gfid`, every generator × reference under `gfid_all`
    rpath = Path(m_meas["result"])
    result = json.loads(rpath.read_text())
    result["gfid"] = gfid_entry(cfg, gname, recipe, m_gfid, m_gfid["reference"], m_gfid["value"])
    if len(runs) > 1 or len(gfid_references(cfg)) > 1:
        result["gfid_all"] = [gfid_entry(cfg, gn, rc, mg, ref, val) for gn, rc, _, mg in runs
                              for ref, val in mg["by_reference"].items()]
    write_json(rpath, result)
    out = {"name": name, "note": entry.get("note", ""), "axes": axes(tc), "train": m_train, "pretokenize": m_pre,
           "generator": m_gen, "measure": m_meas, "gfid": m_gfid, "result": result}
    if len(runs) > 1:
        out["generators"] = {gn or "default": {"generator": mg, "gfid": mf} for gn, _, mg, mf in runs}
    return out


def gfid_entry(cfg: dict, gname: str, recipe: dict, m_gfid: dict, reference: str, value: float) -> dict:
    out = {"value": value, "generator": generator_label(cfg, recipe, gname), "generator_name": gname or None,
           "num_samples": m_gfid["num"], "reference": f"{reference} split ({m_gfid['reference_images'][reference]} "
           "images)", "protocol": m_gfid["protocol"]}
    if "kid_by_reference" in m_gfid:
        out["kid"] = m_gfid["kid_by_reference"][reference]
    return out


def _stage(base: str, gname: str) -> str:
    """Stage names of a named generator get its name (`generator-rar`); the single unnamed one keeps the original
    names, so that a zoo made before generator lists resumes."""
    return f"{base}-{gname}" if gname else base


def generator_stage(name: str, gname: str, recipe: dict, cfg: dict, opts: ZooOptions, stages: Stages, k_pre: str,
                    tokens_dir: Path, hit: dict | None) -> tuple[dict, str]:
    dev = opts.device
    stage = _stage("generator", gname)
    k_gen = stable_hash({"pretokenize": k_pre, "generator": recipe})
    m_gen = stages.done(name, stage, k_gen)
    if m_gen is None:
        rc = RunConfig.from_dict(recipe, name="zoo-generator")
        opts.log(f"[{name}] train generator ({generator_label(cfg, recipe, gname)})")
        d = stages.folder(name, stage, k_gen)
        t0 = time.time()
        if hit and hit.get("stage") == "generator":
            total = rc.train.total_steps(len(TokenSet(tokens_dir)))
            train_generator(tokens_dir, rc, d, device=dev, stop_at=max(1, total // 2), progress=opts.progress)
            raise ZooInterrupted(f"{name}: interrupted during generator training at step {max(1, total // 2)}")
        gpath = train_generator(tokens_dir, rc, d, device=dev, resume=True, progress=opts.progress)

        m_gen = stages.mark(name, stage, k_gen, {"generator": _rel(gpath), "sha256": sha256_file(gpath),
                                                  "seconds": round(time.time() - t0, 2)})
    return m_gen, k_gen


def gfid_stage(name: str, gname: str, recipe: dict, cfg: dict, opts: ZooOptions, stages: Stages, k_gen: str,
               gen_path: Path, tok_path: Path, extractor, ext_proto: dict, refs: dict) -> dict:
    """gFID of one generator: one sampling pass, FD (and with `gfid.kid` KID) against every configured reference (the
    first is primary)."""
    g = cfg["gfid"]
    names = gfid_references(cfg)
    ref = refs[names[0]]
    num = int(g["num"] or ref[0].n)
    g_key = {k: v for k, v in g.items() if not (k == "kid" and not v)}  # a zoo made before the KID flag resumes
    k_gfid = stable_hash({"generator": k_gen, "gfid": g_key, "num": num, "reference": ref[1].get("cache_key"),
                          "extractor": ext_proto, **({"also": [refs[n][1].get("cache_key") for n in names[1:]]}
                                                     if len(names) > 1 else {})})
    stage = _stage("gfid", gname)
    m_gfid = stages.done(name, stage, k_gfid)
    if m_gfid is None:
        opts.log(f"[{name}] gFID{' (' + gname + ')' if gname else ''}: {num} samples against the "
                 f"{' and '.join(names)} split(s)")
        t0 = time.time()
        tok = load_tokenizer(str(tok_path), device=opts.device).eval()
        model, _ = load_generator(gen_path, opts.device)
        value, proto = gfid(model, tok, ref, extractor, settings=g["sampling"], num=num, seed=int(g["seed"]),
                            batch_size=int(g["batch_size"]), device=opts.device, progress=opts.progress,
                            extra_references={n: refs[n] for n in names[1:]} or None, kid=bool(g["kid"]))
        extra = proto.get("extra_references") or {}
        by_ref = {names[0]: value, **{n: v["value"] for n, v in extra.items()}}
        kid = ({"kid_by_reference": {names[0]: proto["kid"]["value"], **{n: v["kid"]["value"] for n, v in extra.items()}}}
               if g["kid"] else {})
        m_gfid = stages.mark(name, stage, k_gfid, {
            "value": value, "num": num, "reference": names[0], "by_reference": by_ref, **kid,
            "reference_images": {n: refs[n][0].n for n in names}, "protocol": proto,
            "seconds": round(time.time() - t0, 2)})
    m_gfid.setdefault("by_reference", {m_gfid["reference"]: m_gfid["value"]})  # markers made before the lists
    m_gfid.setdefault("reference_images", {m_gfid["reference"]: refs[m_gfid["reference"]][0].n})
    return m_gfid
