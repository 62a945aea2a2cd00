"""Performance of the benchmark pipeline (issue 3). Prints figures; asserts nothing.

(a) End-to-end time of rFID + pFID at 4 settings for one tokenizer (`tokbench.runner.evaluate`, reference statistics
    already cached) against the compute floor measured in the same run: 1 encode + 5 decodes + 5 Inception passes
    over the same images, each timed alone. Goal: overhead ≤ 1.25x.
(b) The same work done the usual way: for each of the 5 metrics re-encode, (perturb), decode, write PNG folders, and
    call `torch_fidelity.calculate_metrics(fid=True)` on (reconstructions, references) with the same Inception
    weights. Goal: tokbench ≥ 3x faster. The FIDs of both ways are printed side by side as a cross-check.
(c) Peak memory of the tokbench run at N and 4N images, each in a fresh process (CPU: peak RSS; CUDA: peak
    allocated). Streaming statistics: it should stay flat.
(d) Fréchet distance time alone, 2048-d synthetic features: 5 distances against one reference at N and at
    --frechet-n (default 5000), per method (auto = exact small-N form when N ≤ d, else eigh; sqrtm with --sqrtm).

    python benchmarks/perf/perf_pipeline.py                       # CPU, pixel-VQ baseline, N=16
    python benchmarks/perf/perf_pipeline.py --device cuda --num-images 1000 --tokenizer <preset> --random-weights --bf16
Offline without Inception weights the flagged random-weight Inception is used (same cost as the real one).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

SETTINGS = [(0.25, 0.05), (0.5, 0.05), (0.75, 0.05), (1.0, 0.05)]  # (α, δ as a vocabulary fraction), one seed


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device):
    _sync(device)
    t = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - t


def load(args):
    from tokbench.registry import load_tokenizer

    tok = load_tokenizer(args.tokenizer, device=args.device, pretrained=not args.random_weights)
    if args.bf16:
        dec = tok.decode_raw

        def decode_raw(tokens):
            with torch.autocast(torch.device(args.device).type, dtype=torch.bfloat16):
                return dec(tokens).float()

        tok.decode_raw = decode_raw
    return tok


def make_suite(args, n):
    from tokbench.runner import Suite

    return Suite.from_dict(dict(
        name="perf", data=args.data, num_images=n, resolution=None, tokenizers=[], batch_size=args.batch_size,
        chunk_size=max(n, 1), metrics=["rfid", "pfid"],
        pfid={"alpha": [a for a, _ in SETTINGS], "delta": [SETTINGS[0][1]], "seeds": [0], "mode": "code"}))


def tokbench_run(args, tok, extractor, n, workdir: Path):
    """The tokbench way (reference cached beforehand); returns (result, seconds)."""
    from tokbench.data import open_dataset
    from tokbench.fid import reference_stats
    from tokbench.runner import RunOptions
    from tokbench.runner.bench import evaluate

    suite = make_suite(args, n)
    ds = open_dataset(args.data, tok.info.resolution, num_images=n)
    ref, ref_proto = reference_stats(ds, extractor, batch_size=args.batch_size, cache=workdir / "cache")  # not timed
    opts = RunOptions(out_dir=workdir / "runs", cache_dir=workdir / "cache", progress=False, device=args.device,
                      force=True)
    res, secs = _timed(lambda: evaluate(tok, "perf", suite, ds, extractor, ref, ref_proto, opts), torch.device(args.device))
    return res, secs, ds, ref


def floor(args, tok, extractor, ds):
    """1 encode + 5 decodes + 5 Inception passes, each timed alone, same batches, data already in memory."""
    from tokbench.data import to_uint8
    from tokbench.perturb import Perturber

    device = torch.device(args.device)
    bs = args.batch_size
    imgs = [torch.stack([ds[i] for i in range(s, min(len(ds), s + bs))]).to(device) for s in range(0, len(ds), bs)]
    idx = [torch.arange(s, min(len(ds), s + bs)) for s in range(0, len(ds), bs)]
    toks, t_enc = _timed(lambda: [tok.encode(x) for x in imgs], device)
    pert = Perturber.for_tokenizer(tok, device)
    settings = make_suite(args, len(ds)).pfid_settings()
    pert.prepare(settings)
    variants = [toks] + [[pert(t, s, i).tokens for t, i in zip(toks, idx)] for s in settings]
    t_dec, t_feat = 0.0, 0.0
    for v in variants:
        recs, dt = _timed(lambda: [to_uint8(tok.decode(t)) for t in v], device)
        t_dec += dt
        _, dt = _timed(lambda: [extractor(r) for r in recs], device)
        t_feat += dt
    return {"encode": t_enc, "decode_x5": t_dec, "inception_x5": t_feat, "floor": t_enc + t_dec + t_feat}


def usual_way(args, tok, extractor, ds, workdir: Path):
    """decode → PNG folders → torch_fidelity.calculate_metrics per metric, re-encoding per setting."""
    import torch_fidelity
    from PIL import Image

    from tokbench.data import to_uint8
    from tokbench.perturb import Perturber

    device = torch.device(args.device)
    weights = str(extractor.weights_path)
    root = workdir / "usual"
    ref_dir = root / "reference"
    settings = [None] + make_suite(args, len(ds)).pfid_settings()
    fids = []
    t0 = time.perf_counter()
    ref_dir.mkdir(parents=True, exist_ok=True)
    for i in range(len(ds)):
        Image.fromarray(ds[i].permute(1, 2, 0).numpy()).save(ref_dir / f"{i:06d}.png")
    for k, s in enumerate(settings):
        out = root / f"recon{k}"
        out.mkdir(parents=True, exist_ok=True)
        pert = Perturber.for_tokenizer(tok, device)
        for st in range(0, len(ds), args.batch_size):
            x = torch.stack([ds[i] for i in range(st, min(len(ds), st + args.batch_size))]).to(device)
            t = tok.encode(x)
            if s is not None:
                t = pert(t, s, torch.arange(st, st + x.shape[0])).tokens
            rec = to_uint8(tok.decode(t)).cpu()
            for j, im in enumerate(rec):
                Image.fromarray(im.permute(1, 2, 0).numpy()).save(out / f"{st + j:06d}.png")
        m = torch_fidelity.calculate_metrics(input1=str(out), input2=str(ref_dir), fid=True, cuda=device.type == "cuda",
                                             batch_size=args.batch_size, feature_extractor_weights_path=weights,
                                             cache=False, verbose=False)
        fids.append(m["frechet_inception_distance"])
    _sync(device)
    return fids, time.perf_counter() - t0


def memory_child(args) -> None:
    """Run the tokbench way once in this (fresh) process and print its peak memory as JSON."""
    from tokbench.fid import get_extractor

    device = torch.device(args.device)
    tok = load(args)
    extractor = get_extractor(device=args.device)
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        # reference first (cached), then reset the peak so that only the benchmark loop is measured on CUDA
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        _, secs, _, _ = tokbench_run(args, tok, extractor, args.num_images, d)
    peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    print(json.dumps({"n": args.num_images, "peak_bytes": peak, "seconds": secs}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokenizer", default="pixel-vq-p4-k256")
    p.add_argument("--random-weights", action="store_true", help="build the preset without weights (timing only)")
    p.add_argument("--data", default="sample")
    p.add_argument("--num-images", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--bf16", action="store_true", help="decode under bf16 autocast")
    p.add_argument("--warmup", action="store_true", help="one untimed run first (GPU: kernels, allocator)")
    p.add_argument("--skip", default="", help="comma list of parts to skip: a,b,c,d")
    p.add_argument("--frechet-n", type=int, default=5000, help="(d): the large N for the Fréchet timing")
    p.add_argument("--sqrtm", action="store_true", help="(d): also time scipy sqrtm (tens of seconds per call on CPU)")
    p.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.memory_child:
        memory_child(args)
        return
    from tokbench.fid import get_extractor

    skip = set(args.skip.split(","))
    device = torch.device(args.device)
    n = args.num_images
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else os.cpu_count()} "
          f"{'GPU' if device.type == 'cuda' else 'CPU cores'}), torch threads {torch.get_num_threads()}, "
          f"tokenizer {args.tokenizer}{' (random weights)' if args.random_weights else ''}, N={n}, "
          f"batch {args.batch_size}, settings {SETTINGS}")
    tok = load(args)
    extractor = get_extractor(device=args.device)
    work = Path(tempfile.mkdtemp(prefix="tokbench-perf-"))
    try:
        if {"a", "b"} <= skip:  # memory and/or the Fréchet timing only
            if "c" not in skip:
                _memory(args, n)
            if "d" not in skip:
                _frechet_timing(args, n)
            return
        if args.warmup:  # caches, neighbour tables, allocator (the reference statistics are always cached first)
            tokbench_run(args, tok, extractor, n, work)
        res, t_tb, ds, _ = tokbench_run(args, tok, extractor, n, work)
        tb_fids = [res["metrics"]["rfid"]] + [x["mean"] for x in res["metrics"]["pfid"]]
        t_loop = res["run"]["timings_s"]["total"]
        fr = res["metrics"]["frechet"]
        print(f"tokbench end-to-end: {t_tb:.2f} s ({n / t_tb:.2f} img/s of source images, 5 decodes each); "
              f"streaming loop {t_loop:.2f} s, the 5 Fréchet distances and the result write ({fr['method']}, "
              f"{fr['dim']}-d) {t_tb - t_loop:.2f} s; weights: {extractor.protocol.get('weights_source')}")
        print("    loop timings: " + ", ".join(f"{k} {v:.2f} s" for k, v in res["run"]["timings_s"].items()))
        if "a" not in skip:
            f = floor(args, tok, extractor, ds)
            print(f"(a) compute floor {f['floor']:.2f} s = encode {f['encode']:.2f} + 5 decodes {f['decode_x5']:.2f} + "
                  f"5 Inception passes {f['inception_x5']:.2f}; overhead: loop {t_loop / f['floor']:.3f}x, with the Fréchet "
                  f"distances {t_tb / f['floor']:.3f}x (goal ≤ 1.25x)")
            if device.type == "cuda":
                print(f"    decode throughput: {5 * n / f['decode_x5']:.1f} img/s at {tok.info.resolution} px"
                      f"{' (bf16)' if args.bf16 else ''}")
        if "b" not in skip:
            fids, t_usual = usual_way(args, tok, extractor, ds, work)
            print(f"(b) usual way (PNG folders + torch_fidelity.calculate_metrics x5, re-encoding): {t_usual:.2f} s; "
                  f"tokbench is {t_usual / t_tb:.2f}x faster (goal ≥ 3x)")
            print("    FID cross-check (tokbench | torch-fidelity): " +
                  "; ".join(f"{a:.4f} | {b:.4f}" for a, b in zip(tb_fids, fids)))
        if "c" not in skip:
            _memory(args, n)
        if "d" not in skip:
            _frechet_timing(args, n)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _frechet_timing(args, n: int, d: int = 2048, k: int = 5) -> None:
    """(d) k Fréchet distances against one reference from synthetic d-dim features, at N = n and N = --frechet-n."""
    from tokbench.fid import StatsAccumulator, frechet_details

    g = torch.Generator().manual_seed(0)
    for N in (n, args.frechet_n):
        mix = torch.randn(d, d, generator=g, dtype=torch.float64) / d ** 0.5  # correlated, full-rank-ish features

        def feats(shift):
            acc = StatsAccumulator(d)
            for s in range(0, N, 1000):
                m = min(1000, N - s)
                acc.update((torch.randn(m, d, generator=g, dtype=torch.float64) @ mix).relu() + shift)
            return acc

        ref = feats(0.0)
        sides = [feats(0.01 * (i + 1)) for i in range(k)]
        for method in ["auto"] + (["sqrtm"] if args.sqrtm else []):
            for a in [ref] + sides:
                a._sqrt_cache = None
            t = time.perf_counter()
            out = [frechet_details(s, ref, method) for s in sides]
            dt = time.perf_counter() - t
            print(f"(d) Fréchet, N={N}, d={d}: {k} distances against one reference with {method} "
                  f"({out[0]['method']}): {dt:.3f} s ({dt / k:.3f} s each)")


def _memory(args, n: int) -> None:
    """(c) peak memory at N and 4N images, each in a fresh process."""
    device = torch.device(args.device)
    peaks = []
    for m in (n, 4 * n):
        cmd = [sys.executable, __file__, "--memory-child", "--num-images", str(m), "--tokenizer", args.tokenizer,
               "--data", args.data, "--batch-size", str(args.batch_size), "--device", args.device]
        cmd += ["--random-weights"] if args.random_weights else []
        cmd += ["--bf16"] if args.bf16 else []
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        peaks.append(json.loads(out))
    kind = "GPU allocated" if device.type == "cuda" else "process RSS"
    print(f"(c) peak {kind}: N={peaks[0]['n']}: {peaks[0]['peak_bytes'] / 2**20:.0f} MiB, "
          f"4N={peaks[1]['n']}: {peaks[1]['peak_bytes'] / 2**20:.0f} MiB "
          f"(ratio {peaks[1]['peak_bytes'] / peaks[0]['peak_bytes']:.2f})")


if __name__ == "__main__":
    main()
