"""`tokbench run`: rFID, pFID, codebook statistics and PSNR/SSIM of tokenizers on a suite; resumable; torchrun-able."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ._defaults import RESULTS_DIR, RUNS_DIR

log = logging.getLogger(__name__)

NAME = "run"
HELP = "benchmark tokenizers on a suite (default: the offline sample suite): rFID, pFID, usage, PSNR/SSIM"
ORDER = 20
DESCRIPTION = """Benchmark tokenizers. Per batch: encode once, decode the clean tokens and every perturbation setting
from the same tokens, stream Inception features into one accumulator per metric. Killing the process and re-running
the same command resumes from the last finished chunk with identical numbers. Multi-GPU:
  torchrun --nproc_per_node 8 -m tokbench run --suite imagenet256 --device cuda
Writes one JSON per (tokenizer, suite) into --out (default ./tokbench-results/runs), then the leaderboard and the
results page (./tokbench-results/leaderboard.{md,csv,json}, index.html). Names, suite, data and options are checked
before any model loads; presets whose weights are not on this machine are listed once (where each file goes, the
command that fetches it) and skipped.

examples:
  tokbench run                                           the default offline suite (shipped zoo tokenizers)
  tokbench run --tokenizer 'tokbench-zoo*' --num-images 16
  tokbench run --tokenizer llamagen-vq16 --suite imagenet256 --data /data/imagenet/val
  tokbench run --out results/runs --leaderboard-dir results    regenerate the repository's committed results"""


def _floats(s: str) -> list[float]:
    try:
        return [float(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {s!r}") from None


def _ints(s: str) -> list[int]:
    try:
        return [int(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from None


def _positive(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be ≥ 1, got {v}")
    return v


def _metrics(s: str) -> list[str]:
    # deferred on purpose: start-up time (see tokbench/commands/__init__.py)
    from ..runner.suite import KNOWN_METRICS

    out = [x.strip() for x in s.split(",") if x.strip()]
    bad = [m for m in out if m not in KNOWN_METRICS + ("gfid",)]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown metrics {bad}; choose from {','.join(KNOWN_METRICS + ('gfid',))}")
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--suite", default=None,
                   help="a suite YAML path, or the name of a packaged suite (tokbench/suites/: sample, imagenet256, "
                        "robusttok-pfid); default: sample")
    p.add_argument("--protocol", choices=["suite", "paper"], default="suite",
                   help="'paper': measure each --tokenizer under its paper's published rFID/pFID protocol (ImageNet "
                        "val 50k via --data, the family's crop, RobustTok's pFID where one is published; refused "
                        "where tokbench cannot reproduce the protocol); the leaderboard shows ours, the paper's, the "
                        "difference and the protocol differences (results/published.csv)")
    p.add_argument("--tokenizer", action="append", default=None, metavar="NAME",
                   help="preset name, 'all' or 'available' (repeatable; default: the suite's list)")
    p.add_argument("--data", default=None, help="image folder, 'sample', or its split 'sample:heldout' / 'sample:train' "
                   "(default: the suite's)")
    p.add_argument("--num-images", type=_positive, default=None, metavar="N", help="first N images of the data set (≥ 1)")
    p.add_argument("--metrics", type=_metrics, default=None, help="comma list of rfid,pfid,usage,psnr,ssim")
    p.add_argument("--pfid-alpha", type=_floats, default=None, help="comma list of rates α (e.g. 0.25,0.5,1)")
    p.add_argument("--pfid-delta", type=_floats, default=None,
                   help="comma list of strengths δ: integers are absolute, values in (0,1) a fraction of the vocabulary")
    p.add_argument("--pfid-seeds", type=_ints, default=None, help="comma list of seeds")
    p.add_argument("--pfid-mode", choices=["code", "feature"], default=None,
                   help="codebook neighbour rule: 'feature' (RobustTok's: δ nearest to the encoder feature; the default "
                        "suites' choice) or 'code' (δ nearest to the assigned code); LFQ/FSQ always use their natural "
                        "neighbours")
    p.add_argument("--pfid-exclude-self", action="store_true", default=None,
                   help="never redraw the current id: realised share α instead of RobustTok's α(δ-1)/δ")
    p.add_argument("--batch-size", type=_positive, default=None, metavar="N",
                   help="images per forward pass (default: the suite's); never changes a number, only speed and memory")
    p.add_argument("--chunk-size", type=_positive, default=None, metavar="N", help="images per resumable chunk")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 … (default: cuda when available)")
    p.add_argument("--out", default=RUNS_DIR, metavar="DIR",
                   help=f"folder for result JSONs and resume state (default {RUNS_DIR}; never the repository's "
                        "results/ unless given)")
    p.add_argument("--leaderboard-dir", default=RESULTS_DIR, metavar="DIR",
                   help=f"where leaderboard.{{md,csv,json}} and index.html are written (default {RESULTS_DIR}; '' to skip)")
    p.add_argument("--save-images", action="store_true", help="also write reconstructions as PNG (never JPEG)")
    p.add_argument("--skip-bad-images", action="store_true", help="skip unreadable images (listed in the result)")
    p.add_argument("--fid-weights", default=None, help="Inception weights file (pt_inception-2015-12-05 format)")
    p.add_argument("--cache-dir", default=None, help="reference statistics cache folder")
    p.add_argument("--force", action="store_true", help="recompute even when an up-to-date result exists")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    g = p.add_argument_group("gFID: sample a generator trained on a tokenizer's tokens (the suite's `gfid` section, e.g. "
                                 "the default suite's shipped zoo generators, or --generator; --metrics without gfid "
                                 "skips it)")
    g.add_argument("--generator", action="append", default=None, metavar="CKPT",
                   help="generator checkpoint from `tokbench train-gen` (repeatable; its tokenizer must be in the run)")
    g.add_argument("--gfid-num", type=_positive, default=None,
                   help="number of samples (default: the reference's size; 50000 = 50 per class for ImageNet)")
    g.add_argument("--gfid-reference", default=None,
                   help="reference: statistics .npz (e.g. VIRTUAL_imagenet256_labeled.npz), an image folder or "
                        "'sample:train' (default: the suite's gfid.reference, else its data)")
    g.add_argument("--gfid-seed", type=int, default=None, help="sampling seed (default: the suite's, else 0)")
    g.add_argument("--cfg", type=float, default=None, help="classifier-free guidance scale (default: the checkpoint's)")
    g.add_argument("--cfg-schedule", choices=["constant", "power"], default=None,
                   help="guidance over the sequence: constant, or rising as a power of the position (default: the checkpoint's)")
    g.add_argument("--cfg-power", type=float, default=None, help="exponent of the power schedule (default: the checkpoint's)")
    g.add_argument("--temperature", type=float, default=None, help="sampling temperature (default: the checkpoint's, else 1)")
    g.add_argument("--top-k", type=int, default=None, help="sample among the k most likely tokens (0 = all)")
    g.add_argument("--top-p", type=float, default=None, help="nucleus sampling mass (1 = off)")


def _gfid_options(args: argparse.Namespace, suite):
    """The gFID stage's options: explicit --generator checkpoints, else the suite's `gfid` section unless --metrics
    leaves gfid out."""
    # deferred on purpose: start-up time (see tokbench/commands/__init__.py)
    from ..runner import GfidOptions

    want = args.metrics is None or "gfid" in args.metrics
    if args.generator and not want:
        raise ValueError("--generator given but gfid is not in --metrics")
    if not args.generator and args.metrics is not None and "gfid" in args.metrics and not suite.gfid:
        raise ValueError(f"--metrics gfid needs --generator CKPT (a checkpoint from `tokbench train-gen`); suite "
                         f"{suite.name} names no generators")
    sampler = {k: v for k, v in (("cfg", args.cfg), ("cfg_schedule", args.cfg_schedule),
                                 ("cfg_power", args.cfg_power), ("temperature", args.temperature),
                                 ("top_k", args.top_k), ("top_p", args.top_p)) if v is not None}
    return GfidOptions(enabled=want and bool(args.generator or suite.gfid),
                       generators=list(args.generator) if args.generator else None, sampler=sampler,
                       num=args.gfid_num, reference=args.gfid_reference, seed=args.gfid_seed)


def _preflight(args: argparse.Namespace):
    """Suite, options, tokenizer names and data, checked before any model loads. Raises UsageError (exit 2)."""
    # deferred on purpose: start-up time (see tokbench/commands/__init__.py)
    from ..errors import UsageError
    from ..runner import apply_overrides, load_suite
    from ..runner.preflight import check_data, expand_tokenizers

    metrics = [m for m in args.metrics if m != "gfid"] if args.metrics else None
    try:
        suite = load_suite(args.suite)
        gfid = _gfid_options(args, suite)
        suite = apply_overrides(suite, data=args.data, num_images=args.num_images, batch_size=args.batch_size,
                                chunk_size=args.chunk_size, metrics=metrics or None, tokenizers=args.tokenizer,
                                pfid_alpha=args.pfid_alpha, pfid_delta=args.pfid_delta, pfid_seeds=args.pfid_seeds,
                                pfid_mode=args.pfid_mode, pfid_exclude_self=args.pfid_exclude_self,
                                fid_weights=args.fid_weights)
    except (FileNotFoundError, ValueError) as e:
        raise UsageError(str(e)) from None
    suite.tokenizers = expand_tokenizers(suite.tokenizers)
    check_data(suite.data, suite.num_images, args.skip_bad_images)
    for opt, path in (("--fid-weights", args.fid_weights), *(("--generator", g) for g in args.generator or [])):
        if path and not Path(path).expanduser().exists():
            raise UsageError(f"{opt} {path}: no such file")
    return suite, gfid


def _skip_missing_weights(suite) -> list:
    """Drop presets whose weights are absent (printed once, as one table); returns what was dropped."""
    # deferred on purpose: start-up time (see tokbench/commands/__init__.py)
    from ..runner.bench import resolve_tokenizer_names
    from ..runner.preflight import missing_table, split_by_weights
    from ..weight_files import offline_env

    names = resolve_tokenizer_names(suite.tokenizers, suite.resolution)
    present, missing = split_by_weights([n for n in names if isinstance(n, str)])
    if missing:
        why = ("offline: HF_HUB_OFFLINE/TOKBENCH_OFFLINE is set" if offline_env() else
               "the Hugging Face Hub did not answer, or the file is only downloadable by hand")
        print(missing_table(missing, why), file=sys.stderr)
    if "all" in suite.tokenizers and suite.resolution:  # 'all' = every preset this suite's resolution fits
        # deferred on purpose: start-up time (see tokbench/commands/__init__.py)
        from ..runner.bench import native_resolution

        named = set(suite.tokenizers)
        other = {n: native_resolution(n) for n in present if n not in named}
        other = {n: r for n, r in other.items() if r not in (suite.resolution, None)}
        if other:
            print(f"{len(other)} tokenizer(s) skipped: suite {suite.name} is at {suite.resolution} px, they work at "
                  + ", ".join(f"{n} ({r} px)" for n, r in sorted(other.items()))
                  + "; name one with --tokenizer to try it anyway", file=sys.stderr)
            present = [n for n in present if n not in other]
    suite.tokenizers = present
    return missing


def run(args: argparse.Namespace) -> int:
    import os

    if args.protocol == "paper":
        return _run_paper(args, [m for m in args.metrics if m != "gfid"] if args.metrics else None)
    suite, gfid = _preflight(args)
    missing = _skip_missing_weights(suite)
    if not suite.tokenizers:
        print("nothing to run: no requested tokenizer has its weights on this machine (table above)", file=sys.stderr)
        return 3

    # deferred on purpose: start-up time (see tokbench/commands/__init__.py)
    import torch

    from ..runner import RunOptions, run_suite, summary_table

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    opts = RunOptions(out_dir=Path(args.out), device=device, save_images=args.save_images,
                      skip_bad_images=args.skip_bad_images, cache_dir=Path(args.cache_dir) if args.cache_dir else None,
                      force=args.force, progress=not args.no_progress,
                      leaderboard_dir=Path(args.leaderboard_dir) if args.leaderboard_dir else None, gfid=gfid)
    results = run_suite(suite, opts)

    if int(os.environ.get("RANK", "0")) == 0:
        for g in results.gfid_log:
            if "error" not in g:
                print(f"gFID {g['tokenizer']} ← {g['generator']}: {g['value']:.4f}")
        print(f"suite {suite.name}: {len(results)} tokenizer(s), results in {opts.out_dir}")
        print(summary_table(results))
        if opts.leaderboard_dir is not None:
            _write_page(opts.out_dir, opts.leaderboard_dir)
            print(f"leaderboard: {opts.leaderboard_dir / 'leaderboard.md'}; page: {opts.leaderboard_dir / 'index.html'}")
    ok = all(r.get("status") == "ok" for r in results) and not results.gfid_failed
    return 0 if ok and not missing else 3


def _write_page(runs_dir: Path, out_dir: Path) -> None:
    """Regenerate index.html next to the leaderboard; a page problem never fails a finished run."""
    try:
        # deferred on purpose: start-up time (see tokbench/commands/__init__.py)
        from ..report.page import write_results_page

        write_results_page(out_dir, runs=[runs_dir])
    except Exception as e:  # noqa: BLE001 - the numbers are written; the page is a view of them
        log.warning("results page not written: %s: %s", type(e).__name__, e)


def paper_suites(names: list[str], data: str | None) -> list:
    """One suite per tokenizer from its paper's protocol (tokbench.published.paper_suite); a clear error when a
    preset is unknown or its protocol cannot be reproduced."""
    # deferred on purpose: start-up time (see tokbench/commands/__init__.py)
    from ..published import paper_suite
    from ..registry import get_preset
    from ..runner.suite import Suite

    return [Suite.from_dict(paper_suite(n, get_preset(n).family, data), file="(paper protocol)") for n in names]


def _run_paper(args: argparse.Namespace, metrics: list[str] | None) -> int:
    # deferred on purpose: start-up time (see tokbench/commands/__init__.py)
    import os

    import torch

    from ..runner import RunOptions, apply_overrides, run_suite, summary_table

    if args.suite:
        raise ValueError("--protocol paper builds each tokenizer's suite from its paper's protocol: drop --suite")
    if not args.tokenizer:
        raise ValueError("--protocol paper needs --tokenizer NAME (a preset with published numbers; see "
                         "results/published.csv)")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    results = []
    for suite in paper_suites(args.tokenizer, args.data):
        suite = apply_overrides(suite, num_images=args.num_images, batch_size=args.batch_size,
                                chunk_size=args.chunk_size, metrics=metrics or None, fid_weights=args.fid_weights)
        lb = Path(args.leaderboard_dir) / suite.name if args.leaderboard_dir else None
        opts = RunOptions(out_dir=Path(args.out), device=device, save_images=args.save_images,
                          skip_bad_images=args.skip_bad_images,
                          cache_dir=Path(args.cache_dir) if args.cache_dir else None, force=args.force,
                          progress=not args.no_progress, leaderboard_dir=lb)
        results += run_suite(suite, opts)
        if int(os.environ.get("RANK", "0")) == 0 and lb is not None:
            print(f"leaderboard ({suite.description}): {lb / 'leaderboard.md'}")
    if int(os.environ.get("RANK", "0")) == 0:
        print(summary_table(results))
    return 0 if all(r.get("status") == "ok" for r in results) else 3
