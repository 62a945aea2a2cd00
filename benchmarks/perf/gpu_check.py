"""GPU check (issue 18), driven by benchmarks/perf/gpu_check.sh: prints one table and writes one JSON. Parts:

parity   every parity-fixture tokenizer on the device in fp32 (TF32 off) against the same code on the CPU (which the
         adapter tests pin to the fixtures): ids exact, decoded images within 2e-4; and the bf16-autocast deviation
         (share of equal ids, max |Δ| of decoded images) — reported, not a pass/fail criterion.
runner   a conv VQ (taming VQGAN f16-1024, random weights) at 256 px, bf16 decode: images/s of `tokbench.runner`'s
         rFID pass end to end (encode, decode, Inception, statistics) vs decode-only images/s; goal ≥ 50 %.
kvcache  GPT-B and RAR-B (16x16 grid, 16384 codes, 1000 classes, random weights) at batch 256 in bf16: sampling
         time with vs without the KV cache; goal ≥ 5x.

`--device cpu --tiny` runs every part with tiny sizes in seconds (the CI smoke test of this script); its figures
say nothing about a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

FIXTURES = {  # fixture folder → family (the 16 tokenizers of tests/test_gen_every_layout.py)
    "cosmos_di": "cosmos_di", "ibq": "ibq", "llamagen_vq": "llamagen_vq", "mage": "mage", "maskbit/lfq": "maskbit",
    "maskbit/vqgan_plus": "vqgan_plus", "maskgit_vq": "maskgit_vq", "open_magvit2": "open_magvit2",
    "taming_vqgan": "taming_vqgan", "titok": "titok", "titok_vq8k": "titok_vq8k", "unitok": "unitok", "var": "var",
    "vqgan_lc": "vqgan_lc", "xqgan/imagefolder": "imagefolder", "xqgan/single": "xqgan",
}
TINY_FIXTURES = ("ibq", "titok", "unitok")  # --tiny: three cheap ones (grid, 1-D, sub-codebooks)
IMAGE_ATOL = 2e-4


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _timed(fn, dev: torch.device) -> tuple[object, float]:
    _sync(dev)
    t0 = time.perf_counter()
    out = fn()
    _sync(dev)
    return out, time.perf_counter() - t0


# ----------------------------------------------------------------------------------------------------------------------
def parity(dev: torch.device, tiny: bool) -> list[dict]:
    from safetensors.torch import load_file

    from tokbench.registry import load_tokenizer
    from tokbench.testing import fixtures_root

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    rows = []
    for fx, fam in ([(k, FIXTURES[k]) for k in TINY_FIXTURES] if tiny else FIXTURES.items()):
        d = fixtures_root() / fx
        if not d.is_dir():
            rows.append({"fixture": fx, "ok": False, "error": f"fixture {d} absent"})
            continue
        cfg = json.loads((d / "config.json").read_text())
        images = load_file(str(d / "case.safetensors"))["images_uint8"]
        try:
            ref = load_tokenizer(fam, weights=str(d / "weights.safetensors"), upstream_config=cfg, device="cpu").eval()
            tok = load_tokenizer(fam, weights=str(d / "weights.safetensors"), upstream_config=cfg, device=dev).eval()
            with torch.no_grad():
                t_ref, t_dev = ref.encode(images), tok.encode(images.to(dev))
                ids_ref, ids = t_ref.as_list(), t_dev.as_list()
                exact = all(torch.equal(a, b.cpu()) for a, b in zip(ids_ref, ids))
                img_ref = ref.decode(t_ref).float()
                img = tok.decode(t_ref.to(dev)).float().cpu()  # the same ids: decoder parity alone
                diff = float((img - img_ref).abs().max())
                with torch.autocast(dev.type, dtype=torch.bfloat16):  # bf16: ids of the encoder, decoder on equal ids
                    ids_bf = tok.encode(images.to(dev)).as_list()
                    img_bf = tok.decode(t_ref.to(dev)).float().cpu()
                same = sum(int((a == b.cpu()).sum()) for a, b in zip(ids_ref, ids_bf)) / sum(a.numel() for a in ids_ref)
            rows.append({"fixture": fx, "family": fam, "ids_exact": exact, "image_max_abs": diff,
                         "ok": exact and diff <= IMAGE_ATOL, "bf16_ids_equal": same,
                         "bf16_image_max_abs": float((img_bf - img_ref).abs().max())})
        except Exception as e:  # one broken family must not hide the others
            rows.append({"fixture": fx, "family": fam, "ok": False, "error": f"{type(e).__name__}: {e}"[:300]})
    return rows


# ----------------------------------------------------------------------------------------------------------------------
def runner_speed(dev: torch.device, tiny: bool, extractor: str = "inception-v3-compat") -> dict:
    from tokbench.data import open_dataset, to_uint8
    from tokbench.fid import get_extractor, reference_stats
    from tokbench.registry import load_tokenizer
    from tokbench.runner import RunOptions, Suite
    from tokbench.runner.bench import evaluate

    if tiny:
        from tokbench.testing import fixtures_root

        d = fixtures_root() / "taming_vqgan"
        tok = load_tokenizer("taming_vqgan", weights=str(d / "weights.safetensors"),
                             upstream_config=json.loads((d / "config.json").read_text()), device=dev)
        n, bs = 4, 4
    else:
        tok = load_tokenizer("taming-vqgan-f16-1024", device=dev, pretrained=False)
        n, bs = 1024, 64
    tok.eval()
    dec = tok.decode_raw

    def decode_raw(tokens):  # bf16 decode, as the GPU runs are meant to be made
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            return dec(tokens).float()

    tok.decode_raw = decode_raw
    extractor = get_extractor(extractor, device=str(dev))
    from tokbench.data.datasets import SubsetDataset

    base = open_dataset("sample", tok.info.resolution)  # 126 crops at 256 px: cycled up to n images
    ds = SubsetDataset(base, [i % len(base) for i in range(n)])
    import tempfile

    with tempfile.TemporaryDirectory() as work:
        ref, proto = reference_stats(ds, extractor, batch_size=bs, cache=Path(work) / "cache")  # not timed
        suite = Suite.from_dict(dict(name="gpu-check", data="sample", num_images=None, resolution=None, tokenizers=[],
                                     batch_size=bs, chunk_size=n, metrics=["rfid"]))
        opts = RunOptions(out_dir=Path(work) / "runs", device=str(dev), progress=False, force=True)
        evaluate(tok, "warm", suite, ds, extractor, ref, proto, opts)  # kernels, allocator
        _, t_e2e = _timed(lambda: evaluate(tok, "gpu-check", suite, ds, extractor, ref, proto, opts), dev)
    imgs = [torch.stack([ds[i] for i in range(s, min(n, s + bs))]).to(dev) for s in range(0, n, bs)]
    with torch.no_grad():
        toks = [tok.encode(x) for x in imgs]
        [to_uint8(tok.decode(t)) for t in toks[:1]]
        _, t_dec = _timed(lambda: [to_uint8(tok.decode(t)) for t in toks], dev)
    return {"tokenizer": tok.info.preset or tok.info.family, "resolution": tok.info.resolution, "images": n,
            "batch": bs, "end_to_end_img_s": n / t_e2e, "decode_only_img_s": n / t_dec, "ratio": t_dec / t_e2e,
            "goal": 0.5, "ok": t_dec / t_e2e >= 0.5}


# ----------------------------------------------------------------------------------------------------------------------
def kv_cache(dev: torch.device, tiny: bool) -> list[dict]:
    from tokbench.api import TokenLayout
    from tokbench.gen.archs import build_generator, generator_config
    from tokbench.gen.sampling import SamplingConfig, generate, sample_noise, sample_seeds
    from tokbench.models.gen_layout import SequenceSpec

    side, vocab, classes, batch = (4, 64, 10, 4) if tiny else (16, 16384, 1000, 256)
    spec = SequenceSpec.from_layout(TokenLayout.grid(side, side), [vocab])
    rows = []
    for arch, size in (("gpt", "gpt-b"), ("rar", "rar-b")):
        torch.manual_seed(0)
        cfg = generator_config({"arch": arch, "size": "tiny" if tiny else size, "num_classes": classes})
        model = build_generator(cfg, spec).to(dev).eval()
        labels = torch.arange(batch) % classes
        noise = sample_noise(sample_seeds(0, range(batch)), spec.length, 1)
        times = {}
        for use_cache in (True, False):
            s = SamplingConfig(cfg=2.0, use_cache=use_cache)
            generate(model, labels[:2], noise[:2], s, autocast_dtype=torch.bfloat16)  # warm-up
            seq, times[use_cache] = _timed(lambda: generate(model, labels, noise, s, autocast_dtype=torch.bfloat16), dev)
        rows.append({"arch": arch, "size": "tiny" if tiny else size, "params_m": model.num_params() / 1e6,
                     "batch": batch, "tokens": spec.length, "cached_s": times[True], "uncached_s": times[False],
                     "speedup": times[False] / times[True], "goal": 5.0, "ok": times[False] / times[True] >= 5.0})
    return rows


# ----------------------------------------------------------------------------------------------------------------------
def table(res: dict) -> str:
    lines = [f"{'check':<44} {'figure':<44} ok"]
    for r in res.get("parity", []):
        fig = (r.get("error") or f"ids exact {r['ids_exact']}, img |Δ| {r['image_max_abs']:.1e}; bf16 ids "
               f"{100 * r['bf16_ids_equal']:.1f}% |Δ| {r['bf16_image_max_abs']:.1e}")
        lines.append(f"{'parity fp32 ' + r['fixture']:<44} {fig[:80]:<44} {'yes' if r['ok'] else 'NO'}")
    r = res.get("runner")
    if r:
        lines.append(f"{'runner e2e vs decode-only (' + r['tokenizer'] + ')':<44} "
                     f"{r['end_to_end_img_s']:.1f} vs {r['decode_only_img_s']:.1f} img/s = {100 * r['ratio']:.0f}% (goal 50%)"
                     f"  {'yes' if r['ok'] else 'NO'}")
    for r in res.get("kvcache", []):
        lines.append(f"{'KV cache ' + r['arch'] + ' ' + r['size'] + ' batch ' + str(r['batch']) + ' bf16':<44} "
                     f"{r['uncached_s']:.2f} s / {r['cached_s']:.2f} s = {r['speedup']:.1f}x (goal 5x)"
                     f"{'':<8} {'yes' if r['ok'] else 'NO'}")
    for k, v in (res.get("extra") or {}).items():
        lines.append(f"{k:<44} {v}")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--tiny", action="store_true", help="tiny sizes: a smoke test of this script, not a measurement")
    p.add_argument("--parts", default="parity,runner,kvcache")
    p.add_argument("--json", default=None, help="write the results here (merged with an existing file)")
    p.add_argument("--table-only", action="store_true", help="print the table of --json and exit")
    a = p.parse_args()
    if a.table_only:
        print(table(json.loads(Path(a.json).read_text())))
        return 0
    dev = torch.device(a.device)
    res = json.loads(Path(a.json).read_text()) if a.json and Path(a.json).exists() else {}
    res["device"] = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({os.cpu_count()} cores)"
    res["tiny"] = a.tiny
    res["torch"] = torch.__version__
    parts = [x for x in a.parts.split(",") if x]
    for part, fn in (("parity", parity), ("runner", runner_speed), ("kvcache", kv_cache)):
        if part in parts:
            t0 = time.time()
            res[part] = fn(dev, a.tiny)
            res.setdefault("seconds", {})[part] = round(time.time() - t0, 1)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(a.json + ".tmp")
        tmp.write_text(json.dumps(res, indent=1))
        os.replace(tmp, a.json)
    print(table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
