"""gFID inside `tokbench run`: with `--metrics …,gfid --generator CKPT`, or from a suite's `gfid` section (the default
suite samples the generators shipped with the zoo tokenizers).

A generator checkpoint records the tokenizer it was trained on. This step samples from it, decodes with that
tokenizer, streams the images into the FID engine against a reference (the suite's data, another data set such as
`sample:train` — the generators' training distribution —, or an ADM `.npz` such as VIRTUAL_imagenet256_labeled.npz) and
adds the value with its full sampling protocol to that tokenizer's result file, atomically. The rFID/pFID protocol
hash is unchanged: gFID carries its own protocol. A gFID whose generator file, sampler, sample count, seed, reference
and extractor are unchanged is not recomputed (unless forced).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ..result_identity import find_result
from .schema import portable_path, stable_hash, write_json_atomic

log = logging.getLogger(__name__)


def _reference(suite, opts, extractor, reference: str | Path | None, resolution: int):
    """(what `tokbench.gen.gfid` takes, a stable description for the up-to-date key)."""
    from ..data import open_dataset
    from ..fid import reference_stats
    from ..weights import sha256_file

    if reference is not None and str(reference).endswith(".npz"):
        return str(reference), {"npz": str(reference), "sha256": sha256_file(reference)}
    spec = suite.data if reference is None else str(reference)
    ds = open_dataset(spec, resolution, num_images=suite.num_images if reference is None else None, crop=suite.crop)
    ref = reference_stats(ds, extractor, batch_size=suite.batch_size, cache=opts.cache_dir)
    return ref, {"data": spec, "cache_key": ref[1].get("cache_key"), "n": ref[0].n}


def add_gfid(suite, opts, generator: str | Path, *, sampler: dict | None = None, num: int | None = None,
             reference: str | Path | None = None, seed: int = 0, batch_size: int | None = None,
             extractor=None) -> dict:
    """Compute gFID of `generator` and store it in its tokenizer's result for `suite`. Returns the updated result.
    `reference`: None (the suite's data), an `.npz`, or a data spec (folder, `sample:train`). `num` defaults to the
    reference's sample count (same N as the reference, as the protocol asks)."""
    from ..gen import gfid
    from ..gen.checkpoint import load_generator
    from ..weights import sha256_file

    model, meta = load_generator(generator, opts.device)
    name = meta.tokenizer.name
    path = find_result(opts.out_dir, name, suite.name)
    if path is None:
        raise ValueError(f"generator {generator} was trained on tokenizer {name!r}, which has no result for suite "
                         f"{suite.name} in {opts.out_dir}: run `tokbench run --tokenizer {name}` with this suite first")
    res = json.loads(path.read_text())
    if res.get("status") != "ok":
        raise ValueError(f"the result of {name} for suite {suite.name} is {res.get('status')}: {res.get('reason')}")
    tok = meta.tokenizer.load(opts.device)
    if extractor is None:
        extractor = suite.extractor(opts.device)
    ref, ref_key = _reference(suite, opts, extractor, reference, suite.resolution or tok.info.resolution)
    if num is None:
        num = int(ref[0].n) if isinstance(ref, tuple) else None
        if num is None:
            raise ValueError("--gfid-num is required with an .npz reference (e.g. 50000 for ImageNet, 50 per class)")
    settings = {**(meta.sampling or {}), **(sampler or {})}  # overrides on top of the checkpoint's defaults
    key = stable_hash({"generator_sha256": sha256_file(generator), "settings": settings, "num": num, "seed": seed,
                       "reference": ref_key, "extractor": dict(getattr(extractor, "protocol", {}) or {})})
    old = res.get("gfid") or {}
    if old.get("key") == key and not getattr(opts, "force", False):
        log.info("gFID of %s with %s is up to date: %.4f", name, generator, old["value"])
        return res
    value, proto = gfid(model, tok, ref, extractor, settings=settings, num=num, seed=seed,
                        batch_size=batch_size or suite.batch_size, device=opts.device, progress=opts.progress)
    res["gfid"] = {"value": value, "generator": portable_path(generator), "num_samples": num,
                   "reference": ref_key, "key": key, "protocol": proto}
    write_json_atomic(path, res)
    log.info("gFID of %s with %s: %.4f (%d samples)", name, generator, value, num)
    return res


def suite_generators(suite, results: list[dict]) -> list[str]:
    """Generator checkpoints named by the suite's `gfid.generators` for the tokenizers that ran: `shipped` = the
    generator shipped with each zoo preset (`tokbench.zoo.presets`), or a {tokenizer: checkpoint} mapping."""
    spec = (suite.gfid or {}).get("generators")
    names = [r["tokenizer"]["name"] for r in results if r.get("status") == "ok"]
    if spec == "shipped":
        from ..zoo.presets import manifest, generator_path

        shipped = {r["preset"] for r in manifest()}
        return [str(generator_path(n)) for n in names if n in shipped]
    if isinstance(spec, dict):
        return [str(spec[n]) for n in names if n in spec]
    if spec is None:
        return []
    raise ValueError(f"suite {suite.name}: gfid.generators must be 'shipped' or a mapping tokenizer → checkpoint, "
                     f"not {spec!r}")
