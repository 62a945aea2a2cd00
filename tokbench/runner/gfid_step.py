"""gFID inside `tokbench run --metrics gfid --generator CKPT`.

A generator checkpoint records the tokenizer it was trained on. This step samples from it, decodes with that
tokenizer, streams the images into the FID engine against the suite's reference (the same cached statistics as rFID,
or an ADM `.npz` such as VIRTUAL_imagenet256_labeled.npz) and adds the value with its full sampling protocol to that
tokenizer's result file, atomically. The rFID/pFID protocol hash is unchanged: gFID carries its own protocol.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from .schema import result_path, write_json_atomic

log = logging.getLogger(__name__)


def add_gfid(suite, opts, generator: str | Path, *, sampler: dict | None = None, num: int | None = None,
             reference: str | Path | None = None, seed: int = 0, batch_size: int | None = None,
             extractor=None) -> dict:
    """Compute gFID of `generator` and store it in its tokenizer's result for `suite`. Returns the updated result.
    `num` defaults to the reference's sample count (same N as the reference, as the protocol asks)."""
    from ..data import open_dataset
    from ..fid import get_extractor, reference_stats
    from ..gen import gfid
    from ..gen.checkpoint import load_generator

    model, meta = load_generator(generator, opts.device)
    name = meta.tokenizer.name
    path = result_path(opts.out_dir, name, suite.name)
    if not path.exists():
        raise ValueError(f"generator {generator} was trained on tokenizer {name!r}, which has no result for suite "
                         f"{suite.name} in {opts.out_dir}: run `tokbench run --tokenizer {name}` with this suite first")
    res = json.loads(path.read_text())
    if res.get("status") != "ok":
        raise ValueError(f"the result of {name} for suite {suite.name} is {res.get('status')}: {res.get('reason')}")
    tok = meta.tokenizer.load(opts.device)
    if extractor is None:
        extractor = get_extractor(suite.fid.get("extractor", "inception-v3-compat"), suite.fid.get("weights"),
                                  device=opts.device)
    if reference is not None:
        ref = str(reference)
    else:
        ds = open_dataset(suite.data, suite.resolution or tok.info.resolution, num_images=suite.num_images,
                          crop=suite.crop)
        ref = reference_stats(ds, extractor, batch_size=suite.batch_size, cache=opts.cache_dir)
    if num is None:
        num = int(ref[0].n) if isinstance(ref, tuple) else None
        if num is None:
            raise ValueError("--gfid-num is required with an .npz reference (e.g. 50000 for ImageNet, 50 per class)")
    settings = {**(meta.sampling or {}), **(sampler or {})}  # overrides on top of the checkpoint's defaults
    value, proto = gfid(model, tok, ref, extractor, settings=settings, num=num, seed=seed,
                        batch_size=batch_size or suite.batch_size, device=opts.device, progress=opts.progress)
    res["gfid"] = {"value": value, "generator": str(generator), "num_samples": num, "protocol": proto}
    write_json_atomic(path, res)
    log.info("gFID of %s with %s: %.4f (%d samples)", name, generator, value, num)
    return res
