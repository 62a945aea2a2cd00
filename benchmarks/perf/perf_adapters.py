"""Encode / decode throughput (images per second) of full-size adapter presets, with random weights.

Every adapter module lists the presets worth timing in `BENCH_PRESETS`; this script collects them all (or the ones
named with --presets) and times `encode(uint8 images)` and `decode(tokens)` at each preset's own resolution, in fp32 and
under bf16 autocast. Weights are random (architecture speed only; no downloads).

    python benchmarks/perf/perf_adapters.py                                  # GPU, batch 64, every preset
    python benchmarks/perf/perf_adapters.py --device cpu --batch 2 --presets llamagen-vq16
    python benchmarks/perf/perf_adapters.py --out results/perf_adapters.json
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import platform
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch


def bench_presets() -> list[str]:
    """The union, in module order, of every adapter / model module's `BENCH_PRESETS` list."""
    from tokbench.registry import PLUGIN_ERRORS, presets

    presets()  # imports every plugin module once
    out: list[str] = []
    for pkg_name in ("tokbench_adapters", "tokbench.models", "tokbench.baselines"):
        try:
            pkg = importlib.import_module(pkg_name)
        except ModuleNotFoundError:
            continue
        for mod in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
            if mod.name.startswith("_") or f"{pkg_name}.{mod.name}" in PLUGIN_ERRORS:
                continue
            module = sys.modules.get(f"{pkg_name}.{mod.name}") or importlib.import_module(f"{pkg_name}.{mod.name}")
            out += [p for p in getattr(module, "BENCH_PRESETS", []) if p not in out]
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, device: torch.device, warmup: int, iters: int) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) / iters


def bench_one(name: str, device: torch.device, batch: int, dtypes: list[str], warmup: int, iters: int) -> list[dict]:
    from tokbench.registry import load_tokenizer

    t0 = time.perf_counter()
    model = load_tokenizer(name, pretrained=False, device=device)
    build_s = time.perf_counter() - t0
    res = model.info.resolution
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch, 3, res, res), dtype=torch.uint8, generator=g).to(device)
    rows = []
    for dt in dtypes:
        def ctx():
            return torch.autocast(device_type=device.type, dtype=torch.bfloat16) if dt == "bf16" else nullcontext()

        row = {"preset": name, "family": model.info.family, "dtype": dt, "batch": batch, "resolution": res,
               "tokens_per_image": model.info.tokens_per_image, "build_s": round(build_s, 2)}
        try:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            with ctx(), torch.inference_mode():
                tokens = model.encode(images)
                enc = _time(lambda: model.encode(images), device, warmup, iters)
                dec = _time(lambda: model.decode(tokens), device, warmup, iters)
            row.update(encode_img_s=batch / enc, decode_img_s=batch / dec, encode_ms=enc * 1e3, decode_ms=dec * 1e3)
            if device.type == "cuda":
                row["peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        except Exception as e:  # noqa: BLE001 - one preset's failure (e.g. out of memory) is reported, not fatal
            row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
        rows.append(row)
        print(_fmt(row), flush=True)
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rows


def _fmt(r: dict) -> str:
    head = f"{r['preset']:<24} {r['dtype']:<5} b={r['batch']:<3} {r['resolution']}px"
    if "error" in r:
        return f"{head}  ERROR {r['error']}"
    mem = f"  peak {r['peak_mem_gib']:.1f} GiB" if "peak_mem_gib" in r else ""
    return (f"{head}  encode {r['encode_img_s']:9.1f} img/s ({r['encode_ms']:8.1f} ms)"
            f"  decode {r['decode_img_s']:9.1f} img/s ({r['decode_ms']:8.1f} ms){mem}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=None, help="images per call (default 64 on GPU, 2 on CPU)")
    p.add_argument("--presets", nargs="*", default=None,
                   help="preset names (space or comma separated); default: every module's BENCH_PRESETS")
    p.add_argument("--dtypes", default=None,
                   help="comma list of fp32, bf16 (bf16 = autocast); default fp32,bf16 on GPU, fp32 on CPU "
                        "(CPU bf16 autocast is much slower than fp32)")
    p.add_argument("--warmup", type=int, default=None, help="untimed calls (default 3 on GPU, 0 on CPU)")
    p.add_argument("--iters", type=int, default=None, help="timed calls (default 10 on GPU, 1 on CPU)")
    p.add_argument("--out", type=Path, default=None, help="also write the rows as JSON (atomically)")
    p.add_argument("--list", action="store_true", help="print the collected presets and exit")
    a = p.parse_args(argv)

    device = torch.device(a.device)
    gpu = device.type == "cuda"
    if gpu and not torch.cuda.is_available():
        p.error("--device cuda but no GPU is available; use --device cpu")
    names = [n for chunk in a.presets for n in chunk.split(",") if n] if a.presets else bench_presets()
    if a.list:
        print("\n".join(names))
        return 0
    from tokbench.registry import presets

    unknown = [n for n in names if n not in presets()]
    if unknown:
        p.error(f"unknown presets: {', '.join(unknown)}")
    dtypes = [d.strip() for d in (a.dtypes or ("fp32,bf16" if gpu else "fp32")).split(",") if d.strip()]
    if any(d not in ("fp32", "bf16") for d in dtypes):
        p.error("--dtypes takes fp32 and/or bf16")
    batch = a.batch or (64 if gpu else 2)
    warmup = a.warmup if a.warmup is not None else (3 if gpu else 0)
    iters = a.iters if a.iters is not None else (10 if gpu else 1)
    if gpu:
        torch.backends.cudnn.benchmark = True
    env = {"device": torch.cuda.get_device_name(device) if gpu else platform.processor() or platform.machine(),
           "torch": torch.__version__, "threads": torch.get_num_threads(), "batch": batch, "iters": iters,
           "warmup": warmup}
    print(f"# perf_adapters: {len(names)} presets on {env['device']} (torch {env['torch']}, "
          f"{env['threads']} threads), batch {batch}, {iters} timed / {warmup} warm-up calls, random weights", flush=True)
    rows = []
    for name in names:
        rows += bench_one(name, device, batch, dtypes, warmup, iters)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = a.out.with_name(a.out.name + ".tmp")
        tmp.write_text(json.dumps({"env": env, "rows": rows}, indent=1))
        os.replace(tmp, a.out)
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
