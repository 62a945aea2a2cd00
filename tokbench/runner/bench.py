"""The benchmark loop: per batch, encode once; decode the clean tokens and every perturbation setting from those same
tokens; every metric (`metrics.py`) takes the batch. Chunked and resumable (`resume.py`); sharded across torchrun
processes.

Sums: every chunk's FID and quality sums are added to the totals in chunk order (`ordered.py`), so N processes give
bit-identical numbers to one. A rerun of a killed command skips finished chunks and therefore sums exactly the same
numbers in the same order: identical results.
"""

from __future__ import annotations

import logging
import platform
import time
import traceback
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.distributed as dist

from .. import __version__
from ..api import BinarySpace, CodebookSpace, FSQSpace, Tokenizer
from ..io import clean_stale_temps
from ..perturb import PerturbSetting, Perturber
from ..progress import progress_bar
from ..dist import DistInfo, agree, all_reduce_, init_from_env, shutdown
from .gfid_step import GfidOptions, SuiteResults, gfid_stage
from .metrics import EvalBatch, MetricSet
from .ordered import PROTOCOL as SUM_PROTOCOL
from .resume import ChunkPlan, remove_state, resume_or_fresh, save_state, state_dir, state_path
from .schema import (REALISED_SHARE, RNG_PROTOCOL, RULE_PROTOCOL, SCHEMA, UINT8_RULE, data_key, read_result,
                     portable_path, result_file, result_key, result_path, safe_name, stable_hash,
                     write_json_atomic)
from .suite import Suite

log = logging.getLogger(__name__)


class Interrupted(RuntimeError):
    """Raised by the test hook `stop_after_chunks` to simulate a kill between chunks."""


@dataclass
class RunOptions:
    out_dir: Path = Path("results/runs")
    device: str = "cpu"
    save_images: bool = False
    skip_bad_images: bool = False
    cache_dir: Path | None = None  # reference statistics cache (None: the FID engine's default)
    force: bool = False  # recompute even when an up-to-date result exists
    progress: bool = True
    stop_after_chunks: int | None = None  # testing hook: stop (as if killed) after this many new chunks
    leaderboard_dir: Path | None = None  # where `run` writes the leaderboard at the end (None: skip)
    gfid: GfidOptions = field(default_factory=GfidOptions)  # the gFID stage (default: the suite's `gfid` section)


@dataclass
class _Timer:
    device: torch.device
    totals: dict = field(default_factory=lambda: defaultdict(float))

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def __call__(self, key: str):
        timer = self

        class _Ctx:
            def __enter__(self):
                timer.sync()
                self.t = time.perf_counter()

            def __exit__(self, *exc):
                timer.sync()
                timer.totals[key] += time.perf_counter() - self.t

        return _Ctx()


# ----------------------------------------------------------------------------------------------------------------------
# Tokenizers and data
# ----------------------------------------------------------------------------------------------------------------------
def native_resolution(name: str) -> int | None:
    """A preset's native resolution, from a meta-device build (no memory, no weights); None if it cannot be built."""
    from ..registry import get_family, get_preset

    try:
        preset = get_preset(name)
        with torch.device("meta"):
            return int(get_family(preset.family).build(preset.get_config()).info.resolution)
    except Exception:  # noqa: BLE001 - unknown: let the run itself report the problem
        return None


def resolve_tokenizer_names(entries: Sequence[str | Tokenizer], resolution: int | None = None) -> list[str | Tokenizer]:
    """Expand `all` (every preset) and `available` (presets whose weights are on this machine and, when the suite fixes
    a resolution, whose native resolution is that one: a 32-px tokenizer is not run on 64-px images)."""
    from ..registry import get_preset, list_tokenizers, weights_available_locally

    out: list = []
    for e in entries:
        if isinstance(e, Tokenizer):
            out.append(e)
        elif e == "all":
            out.extend(list_tokenizers())
        elif e == "available":
            out.extend(n for n in list_tokenizers() if weights_available_locally(get_preset(n))
                       and (resolution is None or native_resolution(n) in (resolution, None)))
        else:
            out.append(e)
    seen, uniq = set(), []
    for e in out:
        key = id(e) if isinstance(e, Tokenizer) else e
        if key not in seen:
            seen.add(key)
            uniq.append(e)
    return uniq


def tokenizer_name(entry: str | Tokenizer) -> str:
    if isinstance(entry, Tokenizer):
        return getattr(entry, "bench_name", None) or entry.info.preset or entry.info.family
    return entry


def describe_spaces(spaces) -> list[dict]:
    out = []
    for s in spaces:
        d: dict[str, Any] = {"kind": s.kind, "vocab_size": s.vocab_size}
        if isinstance(s, CodebookSpace):
            d.update(metric=s.metric, dim=s.dim)
        elif isinstance(s, BinarySpace):
            d.update(bits=s.bits)
        elif isinstance(s, FSQSpace):
            d.update(levels=list(s.levels))
        out.append(d)
    return out


def weights_record(tok: Tokenizer) -> dict | None:
    from ..weights import sha256_file

    w = getattr(tok, "weights", None)
    if w is None:
        return None
    p = Path(w.path)
    sha = sha256_file(p) if p.is_file() else None
    return {"source": portable_path(w.source) if w.source else w.source, "path": portable_path(p), "sha256": sha}


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    try:  # the metadata, not the import: importing torch_fidelity pulls torchvision and dynamo (seconds)
        tf = version("torch-fidelity")
    except PackageNotFoundError:
        tf = None
    return {"tokbench": __version__, "torch": torch.__version__, "torch_fidelity": tf,
            "python": platform.python_version(), "numpy": np.__version__}


# ----------------------------------------------------------------------------------------------------------------------
# Protocol
# ----------------------------------------------------------------------------------------------------------------------
def build_protocol(suite: Suite, dataset, extractor, ref_proto: dict, settings: Sequence[PerturbSetting]) -> dict:
    from ..fid import SQRT_METHOD, kid_protocol
    from ..fid.kid import KID_SUBSET_SIZE
    from ..metrics import PSNR_PROTOCOL, SSIM_PROTOCOL

    groups: dict = {}
    for s in settings:
        key = (s.alpha, s.delta, s.beta, s.mode, s.scales, s.exclude_self)
        groups.setdefault(key, []).append(s.seed)
    proto = {
        "data": dataset.describe(),
        "num_images_requested": suite.num_images,
        "resolution": dataset.resolution,
        "crop": dataset.crop,
        "uint8": UINT8_RULE,
        "decode_dtype": "float32",
        "metrics": sorted(suite.metrics),
        "fid": {"extractor": extractor.protocol, "reference": {k: ref_proto.get(k) for k in ("cache_key",)},
                "sqrt": SQRT_METHOD, "statistics": SUM_PROTOCOL + "; feature rows kept while n ≤ d (always with KID)"},
        "kid": kid_protocol(KID_SUBSET_SIZE, KID_SUBSET_SIZE) | {"subset_size": "min(1000, N, N_ref)"}
        if "kid" in suite.metrics else None,
        "pfid": {"settings": [{"alpha": a, "delta": d, "beta": b, "mode": m, "scales": list(sc) if sc else None,
                               "exclude_self": x, "seeds": seeds} for (a, d, b, m, sc, x), seeds in groups.items()],
                 "rng": RNG_PROTOCOL, "rule": RULE_PROTOCOL, "realised_share": REALISED_SHARE} if settings else None,
        "codebook": {"window": suite.usage_window, "on": "clean tokens"} if "usage" in suite.metrics else None,
        "psnr": PSNR_PROTOCOL if "psnr" in suite.metrics else None,
        "ssim": SSIM_PROTOCOL if "ssim" in suite.metrics else None,
    }
    proto["hash"] = stable_hash(proto)
    return proto


# ----------------------------------------------------------------------------------------------------------------------
# One tokenizer
# ----------------------------------------------------------------------------------------------------------------------
def evaluate(tok: Tokenizer, name: str, suite: Suite, dataset, extractor, ref_acc, ref_proto: dict, opts: RunOptions,
             dist_info: DistInfo | None = None) -> dict:
    """Run one tokenizer over the (shard of the) data set; returns the result dict (written by rank 0)."""
    from ..data import iter_batches

    info = dist_info or DistInfo()
    device = torch.device(opts.device)
    settings = suite.pfid_settings()
    _check_fits(tok, name, suite, dataset, settings)
    protocol = build_protocol(suite, dataset, extractor, ref_proto, settings)
    tok_record = _tokenizer_record(tok, name)
    run_hash = stable_hash({"protocol": protocol["hash"], "tokenizer": tok_record, "batch_size": suite.batch_size,
                            "chunk_size": suite.chunk_size, "world": info.world, "device": device.type})
    rkey = result_key(protocol)
    old = None if opts.force else _up_to_date(opts.out_dir, name, suite.name, rkey, run_hash)
    if old is not None:
        return old

    plan = ChunkPlan(len(dataset), suite.chunk_size, info)
    sdir = state_dir(opts.out_dir, name, suite.name, rkey)
    spath = state_path(sdir, info)
    clean_stale_temps(sdir)
    if info.main:
        clean_stale_temps(opts.out_dir)
    timer = _Timer(device)
    image_dir = opts.out_dir / "images" / safe_name(name) if opts.save_images else None

    def fresh() -> MetricSet:
        timer.totals.clear()
        return MetricSet(set(suite.metrics), settings, tok, extractor, ref_acc, info, timer, suite.usage_window,
                         image_dir)

    ms, done, bad = resume_or_fresh(None if opts.force else spath, run_hash, fresh, timer.totals, name)
    resumed = len(done)
    perturber = Perturber.for_tokenizer(tok, device)
    with timer("prepare"):
        perturber.prepare(settings)
    tok.keep_features = any(s.mode == "feature" and s.alpha > 0 for s in settings)
    bar = _progress(plan, done, suite, name, opts.progress and info.main)

    def run_chunk(c: int) -> tuple[dict, Any]:
        """One chunk through every metric; returns its FID/quality sums (folded in chunk order by the caller)."""
        ms.begin_chunk()
        for batch in iter_batches(dataset, suite.batch_size, plan.images(c), skip_bad_images=opts.skip_bad_images):
            bad.extend(batch.bad)
            if batch.images.numel() > 0:
                ms.update(_eval_batch(tok, perturber, timer, batch.images.to(device), batch.indices,
                                      ms.keep_perturbed))
                bar.update(int(batch.images.shape[0]))
        return ms.end_chunk()

    new_chunks, t_start = 0, time.perf_counter()
    for r in range(ms.sums.rounds, plan.rounds):
        c, err = plan.chunk_of_round(r), None
        if not ms.sums.ready:  # (ready: computed and saved before an interruption, not yet folded)
            try:
                ms.sums.pending, ms.sums.ready = (run_chunk(c) if c < plan.nchunks else None), True
                if c < plan.nchunks:
                    done.append(c)
                    ms.close_windows(plan.windows_done(c, done, suite.usage_window))
                    new_chunks += 1
                timer.totals["total"] += time.perf_counter() - t_start
                t_start = time.perf_counter()
                save_state(spath, {"run_hash": run_hash, "done": done, **ms.state_dict(),
                                   "timings": dict(timer.totals), "bad_images": bad})
            except (Interrupted, KeyboardInterrupt):
                raise
            except Exception as e:  # noqa: BLE001 - the other processes must hear of it before the next collective
                if not info.active:
                    raise
                err = e
            if err is None and opts.stop_after_chunks is not None and new_chunks >= opts.stop_after_chunks:
                bar.close()
                raise Interrupted(f"stopped after {new_chunks} chunks (test hook)")
        agree(info, err, f"{name}: chunk loop")
        ms.sums.fold(ms.sums.pending)
    bar.close()

    ms.all_reduce(info)  # (the FID and quality sums are already folded in chunk order on every process)
    bad, wall = _gather_bad_and_wall(info, bad, timer.totals.get("total", 0.0))
    result = _result(tok_record, suite, protocol, ms, dataset, device, info, run_hash, timer, wall, bad, resumed)
    rpath = result_path(opts.out_dir, name, suite.name, rkey)
    _together(info, f"{name}: writing the result", lambda: write_json_atomic(rpath, result) if info.main else None)
    if info.main:
        remove_state(sdir)
    return result


def _check_fits(tok: Tokenizer, name: str, suite: Suite, dataset, settings: Sequence[PerturbSetting]) -> None:
    """Fail early, with the reason, when the tokenizer, the data set and the suite do not fit together."""
    if suite.resolution is not None and tok.info.resolution != suite.resolution:
        raise ValueError(f"{name} works at {tok.info.resolution} px; suite {suite.name} is at {suite.resolution} px")
    if dataset.resolution != tok.info.resolution:
        raise ValueError(f"data set at {dataset.resolution} px for a {tok.info.resolution} px tokenizer")
    for s in settings:  # δ fits every space
        for sp in tok.token_spaces:
            s.delta_for(sp)


def _tokenizer_record(tok: Tokenizer, name: str) -> dict:
    info_dict = tok.info.to_dict()
    if info_dict.get("weight_source"):
        info_dict["weight_source"] = portable_path(info_dict["weight_source"])
    return {"name": name, "info": info_dict, "layout": tok.layout.to_dict(),
            "token_spaces": describe_spaces(tok.token_spaces), "weights": weights_record(tok)}


def _up_to_date(out_dir: Path, name: str, suite_name: str, rkey: str, run_hash: str) -> dict | None:
    """A finished result of this exact run, if one is on disk."""
    for p in (result_path(out_dir, name, suite_name, rkey), result_path(out_dir, name, suite_name)):
        try:  # an unreadable previous result is only a reason to recompute, never to fail or to delete
            old = read_result(p)
        except (ValueError, OSError):
            continue
        if old.get("status") == "ok" and old.get("run", {}).get("run_hash") == run_hash:
            log.info("%s: up-to-date result %s (use --force to recompute)", name, p)
            return old
    return None


def _progress(plan: ChunkPlan, done: list[int], suite: Suite, name: str, enabled: bool):
    """A progress bar over this process's images, starting at those of its finished chunks."""
    mine = plan.mine()
    total = sum(len(plan.images(c)) for c in mine)
    todo = sum(len(plan.images(c)) for c in mine if c not in done)
    return progress_bar(total=total, initial=total - todo, unit="img",
                        desc=f"{'/'.join(m for m in ('rfid', 'pfid') if m in suite.metrics) or 'metrics'} {name}",
                        leave=False, enabled=enabled)


def _eval_batch(tok: Tokenizer, perturber: Perturber, timer: _Timer, imgs: torch.Tensor, idx: torch.Tensor,
                keep_perturbed: bool) -> EvalBatch:
    """Encode once, decode the clean tokens; each perturbation setting is perturbed and decoded when first asked."""
    from ..data import to_uint8

    with timer("encode"):
        tokens = tok.encode(imgs)
    feats = tok.last_features
    with timer("decode"):
        rec = to_uint8(tok.decode(tokens))

    def perturb(s: PerturbSetting):
        with timer("perturb"):
            pr = perturber(tokens, s, idx, feats)
        with timer("decode"):
            return pr, to_uint8(tok.decode(pr.tokens))

    return EvalBatch(imgs, idx, tokens, rec, perturb, keep_perturbed)


def _gather_bad_and_wall(info: DistInfo, bad: list, total_s: float) -> tuple[list, float]:
    """Every process's skipped images, and the mean wall time of the processes."""
    if not info.active:
        return bad, total_s
    gathered: list = [None] * info.world
    dist.all_gather_object(gathered, bad)
    tt = all_reduce_(torch.tensor([total_s], dtype=torch.float64), info)
    return [b for g in gathered for b in g], float(tt) / info.world


def _result(tok_record: dict, suite: Suite, protocol: dict, ms: MetricSet, dataset, device: torch.device,
            info: DistInfo, run_hash: str, timer: _Timer, wall: float, bad: list, resumed: int) -> dict:
    from ..data import data_record

    n_eval = ms.num_images
    return {
        "schema": SCHEMA, "status": "ok", "tokenizer": tok_record,
        "suite": {"name": suite.name, "file": suite.file, "definition": suite.to_dict()},
        "protocol": dict(protocol, num_images=n_eval),
        "run": {"run_hash": run_hash, "device": str(device), "dtype": "float32", "world_size": info.world,
                "batch_size": suite.batch_size, "chunk_size": suite.chunk_size, "versions": versions(),
                "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "timings_s": {k: round(v, 4) for k, v in timer.totals.items()},
                "images_per_s": (n_eval / wall) if wall > 0 else None,
                "bad_images": bad, "resumed_chunks": resumed, "host": platform.node(),
                "data": dict(data_record(dataset), bad_images_skipped=len(bad))},
        "metrics": ms.summary(),
    }


def _data_key_of(ds, spec) -> str:
    """The data key of a failed run: the data set's content hash when it opened and hashes, else its spec's."""
    try:
        return data_key(ds.content_hash if ds is not None else None, spec)
    except Exception:  # noqa: BLE001 - the data itself may be what failed
        return data_key(None, spec)


def _record_failure(out_dir: Path, res: dict) -> None:
    """Write the failed-result file beside (never over) the successes; on a full or broken disk, say so in one line."""
    try:
        write_json_atomic(result_file(out_dir, res), res)
    except OSError as e:
        log.error("%s: the failure could not be recorded in %s: %s", res["tokenizer"]["name"], out_dir,
                  e.strerror or e)


def failed_result(name: str, suite: Suite, err: BaseException, tok: Tokenizer | None = None,
                  data: str | None = None) -> dict:
    reason = f"{type(err).__name__}: {err}"
    if isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err).lower():
        reason = f"out of memory: {err}"
    elif isinstance(err, FloatingPointError):
        reason = f"non-finite output (NaN/inf): {err}"
    return {"schema": SCHEMA, "status": "failed", "reason": reason, "error_type": type(err).__name__,
            "data_key": data or data_key(None, suite.data),
            "traceback_tail": traceback.format_exception(type(err), err, err.__traceback__)[-3:],
            "tokenizer": {"name": name, "info": tok.info.to_dict() if tok is not None else None},
            "suite": {"name": suite.name, "file": suite.file, "definition": suite.to_dict()},
            "run": {"versions": versions(), "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}}


# ----------------------------------------------------------------------------------------------------------------------
# A whole suite
# ----------------------------------------------------------------------------------------------------------------------
def _together(info: DistInfo, what: str, fn: Callable[[], Any]) -> Any:
    """fn() in every process; under torchrun all of them then learn whether any failed (`agree`), so that none waits
    forever at a collective that a failed process will never join."""
    err, out = None, None
    try:
        out = fn()
    except (Interrupted, KeyboardInterrupt):
        raise
    except Exception as e:  # noqa: BLE001 - shared with the other processes, then re-raised
        if not info.active:
            raise
        err = e
    agree(info, err, what)
    return out


def run_suite(suite: Suite, opts: RunOptions, *, tokenizers: Sequence[str | Tokenizer] | None = None,
              extractor=None) -> SuiteResults:
    """Run every tokenizer of the suite (or the given names / Tokenizer objects); a failing tokenizer is recorded as
    failed with its reason and the others still run. Then the gFID stage (`opts.gfid`: the suite's `gfid` section or
    explicit generators; main process only, see `gfid_step`), then the leaderboard (`opts.leaderboard_dir`). Returns
    the result dicts (with `gfid_log`); prints nothing."""
    from ..data import open_dataset
    from ..fid import reference_stats
    from ..registry import load_tokenizer

    info = init_from_env(opts.device)
    if info.active and torch.device(opts.device).type == "cuda":
        opts.device = f"cuda:{info.local_rank}"
    opts.out_dir = Path(opts.out_dir)
    entries = resolve_tokenizer_names(tokenizers if tokenizers is not None else suite.tokenizers, suite.resolution)
    if not entries:
        raise ValueError(f"suite {suite.name}: no tokenizers to run (see `tokbench list`)")
    if extractor is None:
        extractor = suite.extractor(opts.device)
    datasets: dict = {}
    refs: dict = {}
    results = []
    outer = progress_bar(entries, desc=f"suite {suite.name}", unit="tokenizer", enabled=opts.progress and info.main)
    finished = False
    try:
        for entry in outer:
            name = tokenizer_name(entry)
            outer.set_postfix_str(name)
            tok = None
            res_key = suite.resolution
            try:
                t0 = time.perf_counter()
                tok = _together(info, f"{name}: load", lambda: entry.to(opts.device).eval() if isinstance(
                    entry, Tokenizer) else load_tokenizer(entry, device=opts.device))
                load_s = time.perf_counter() - t0
                res_key = suite.resolution or tok.info.resolution
                if res_key not in datasets:
                    datasets[res_key] = _together(info, f"{name}: data", lambda: open_dataset(
                        suite.data, res_key, num_images=suite.num_images, crop=suite.crop,
                        skip_bad_images=opts.skip_bad_images))
                ds = datasets[res_key]
                if res_key not in refs:  # the main process computes and caches them; the others then read the cache
                    keep = "all" if "kid" in suite.metrics else "auto"  # KID needs the reference's feature rows
                    ref = _together(info, f"{name}: reference statistics", lambda: reference_stats(
                        ds, extractor, batch_size=suite.batch_size, cache=opts.cache_dir, keep=keep) if info.main
                        else None)
                    refs[res_key] = ref if info.main else reference_stats(ds, extractor, batch_size=suite.batch_size,
                                                                          cache=opts.cache_dir, keep=keep)
                ref_acc, ref_proto = refs[res_key]
                res = evaluate(tok, name, suite, ds, extractor, ref_acc, ref_proto, opts, info)
                res["run"].setdefault("timings_s", {})["load"] = round(load_s, 4)
            except Interrupted:
                raise
            except KeyboardInterrupt:
                raise
            except Exception as e:  # noqa: BLE001 - one tokenizer's failure must not stop the others
                log.error("%s failed: %s: %s", name, type(e).__name__, e)
                res = failed_result(name, suite, e, tok, data=_data_key_of(datasets.get(res_key), suite.data))
                if info.main:
                    _record_failure(opts.out_dir, res)
            finally:
                del tok
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            results.append(res)
        finished = True
    finally:
        outer.close()
        shutdown(info)
        if not finished:  # interrupted: the leaderboard of what is finished
            _write_leaderboard(opts, suite, info)
    # gFID after the process group is gone: the main process samples alone, as `tokbench run` always did
    try:
        return gfid_stage(suite, opts, results, extractor) if info.main else SuiteResults(results)
    finally:
        _write_leaderboard(opts, suite, info)


def _write_leaderboard(opts: RunOptions, suite: Suite, info: DistInfo) -> None:
    if opts.leaderboard_dir is None or not info.main:
        return
    from .leaderboard import write_leaderboard

    try:
        write_leaderboard(opts.out_dir, opts.leaderboard_dir, suite=suite.name)
    except ValueError as e:
        log.warning("leaderboard not written: %s", e)


def summary_table(results: Sequence[dict]) -> str:
    """A concise plain-text table of a run."""
    rows = [["tokenizer", "status", "rFID", "rKID", "pFID", "usage", "PSNR", "SSIM", "img/s", "note"]]
    for r in results:
        m = r.get("metrics", {})
        if r.get("status") != "ok":  # the reason in its own column: metric columns hold numbers only
            rows.append([r["tokenizer"]["name"], "FAILED", "-", "-", "-", "-", "-", "-", "-",
                         r.get("reason", "").splitlines()[0][:100] if r.get("reason") else ""])
            continue
        pf = m.get("pfid") or []
        pfs = " ".join(f"{p['mean']:.2f}" + (f"±{p['std']:.2f}" if len(p["values"]) > 1 else "") for p in pf)
        cb = m.get("codebook") or {}
        rows.append([r["tokenizer"]["name"], "ok", _f(m.get("rfid")), _f(m.get("rkid"), 4), pfs,
                     _f(cb.get("usage"), pct=True), _f(m.get("psnr")), _f(m.get("ssim"), 4),
                     _f(r["run"].get("images_per_s"), 1), ""])
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)


def _f(x, digits: int = 2, pct: bool = False) -> str:
    if x is None:
        return "-"
    if pct:
        return f"{100 * x:.1f}%"
    return f"{x:.{digits}f}"
