"""gFID, the last stage of `run_suite`: the generators named explicitly (`RunOptions.gfid.generators`, the CLI's
`--generator`) or by the suite's `gfid` section (`generators: shipped` = the generator each preset carries,
`Preset.generator`; or a {tokenizer: checkpoint} mapping).

A generator checkpoint records the tokenizer it was trained on. This stage samples from it, decodes with that
tokenizer, streams the images into the FID engine against a reference (`tokbench.gen.resolve_reference`: the suite's
data, another data set such as `sample:train` — the generators' training distribution —, or an ADM `.npz` such as
VIRTUAL_imagenet256_labeled.npz) and writes the value with its full sampling protocol into that tokenizer's result
file, atomically, as soon as it is known. The rFID/pFID protocol hash is unchanged: gFID carries its own protocol. A
gFID whose generator file, sampler, sample count, seed, reference and extractor are unchanged is not recomputed
(unless forced). Under torchrun only the main process samples, after the process group is gone (as a single process).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from .. import gen
from ..gen.checkpoint import load_generator
from ..gen.reference import resolve_reference
from ..registry import presets
from ..result_identity import find_result
from ..weights import sha256_file
from .schema import portable_path, stable_hash, write_json_atomic

log = logging.getLogger(__name__)


@dataclass
class GfidOptions:
    """How `run_suite` measures gFID. `generators`: explicit checkpoints (a failure raises), or None for the suite's
    `gfid` section (a failing generator is logged and counted; the others still run). `sampler` overrides the
    checkpoint's sampling settings; `num`, `reference`, `seed`: None = the suite's `gfid` values (num: else the
    reference's size; seed: else 0). `enabled=False`: no gFID at all."""

    enabled: bool = True
    generators: list[str] | None = None
    sampler: dict = field(default_factory=dict)
    num: int | None = None
    reference: str | None = None
    seed: int | None = None


class SuiteResults(list):
    """`run_suite`'s result dicts (a list), plus `gfid_log`: one entry per generator of the gFID stage,
    {"generator", "tokenizer", "value"} or {"generator", "error"}."""

    def __init__(self, results=(), gfid_log: list[dict] | None = None) -> None:
        super().__init__(results)
        self.gfid_log: list[dict] = list(gfid_log or [])

    @property
    def gfid_failed(self) -> int:
        return sum(1 for g in self.gfid_log if "error" in g)


def add_gfid(suite, opts, generator: str | Path, *, sampler: dict | None = None, num: int | None = None,
             reference: str | Path | None = None, seed: int = 0, batch_size: int | None = None,
             extractor=None) -> dict:
    """Compute gFID of `generator` and store it in its tokenizer's result for `suite`. Returns the updated result.
    `reference`: None (the suite's data), an `.npz`, or a data spec (folder, `sample:train`). `num` defaults to the
    reference's sample count (same N as the reference, as the protocol asks)."""
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
    own = reference is None  # the suite's own data: the suite's image count
    ref = resolve_reference(suite.data if own else reference, extractor,
                            resolution=suite.resolution or tok.info.resolution,
                            num_images=suite.num_images if own else None, crop=suite.crop,
                            batch_size=suite.batch_size, cache=opts.cache_dir)
    if num is None:
        num = ref.n
        if num is None:
            raise ValueError("--gfid-num is required with an .npz reference (e.g. 50000 for ImageNet, 50 per class)")
    settings = {**(meta.sampling or {}), **(sampler or {})}  # overrides on top of the checkpoint's defaults
    key = stable_hash({"generator_sha256": sha256_file(generator), "settings": settings, "num": num, "seed": seed,
                       "reference": ref.key, "extractor": dict(getattr(extractor, "protocol", {}) or {})})
    old = res.get("gfid") or {}
    if old.get("key") == key and not getattr(opts, "force", False):
        log.info("gFID of %s with %s is up to date: %.4f", name, generator, old["value"])
        return res
    value, proto = gen.gfid(model, tok, ref.stats, extractor, settings=settings, num=num, seed=seed,
                            batch_size=batch_size or suite.batch_size, device=opts.device, progress=opts.progress)
    res["gfid"] = {"value": value, "generator": portable_path(generator), "num_samples": num,
                   "reference": ref.key, "key": key, "protocol": proto}
    write_json_atomic(path, res)
    log.info("gFID of %s with %s: %.4f (%d samples)", name, generator, value, num)
    return res


def suite_generators(suite, results: list[dict]) -> list[str]:
    """Generator checkpoints named by the suite's `gfid.generators` for the tokenizers that ran: `shipped` = the
    generator each preset carries (`Preset.generator`), or a {tokenizer: checkpoint} mapping."""
    spec = (suite.gfid or {}).get("generators")
    names = [r["tokenizer"]["name"] for r in results if r.get("status") == "ok"]
    if spec == "shipped":
        known = presets()
        return [str(known[n].generator) for n in names if n in known and known[n].generator]
    if isinstance(spec, dict):
        return [str(spec[n]) for n in names if n in spec]
    if spec is None:
        return []
    raise ValueError(f"suite {suite.name}: gfid.generators must be 'shipped' or a mapping tokenizer → checkpoint, "
                     f"not {spec!r}")


def gfid_stage(suite, opts, results: list[dict], extractor) -> SuiteResults:
    """Add gFID to `results` (and their files) for every generator wanted; see the module docstring."""
    g: GfidOptions = getattr(opts, "gfid", None) or GfidOptions(enabled=False)
    out = SuiteResults(results)
    if not g.enabled:
        return out
    explicit = g.generators is not None
    generators = [str(c) for c in g.generators] if explicit else suite_generators(suite, results)
    section = dict(suite.gfid or {})
    for ckpt in generators:
        try:
            res = add_gfid(suite, opts, ckpt, sampler=g.sampler, num=g.num or section.get("num"),
                           reference=g.reference or section.get("reference"),
                           seed=g.seed if g.seed is not None else int(section.get("seed") or 0), extractor=extractor)
        except Exception as e:  # noqa: BLE001 - one generator's failure must not lose the others' gFIDs
            if explicit:
                raise
            log.error("gFID with %s failed: %s: %s", ckpt, type(e).__name__, e)
            out.gfid_log.append({"generator": ckpt, "error": f"{type(e).__name__}: {e}"})
            continue
        name = res["tokenizer"]["name"]
        out[:] = [res if r.get("tokenizer", {}).get("name") == name else r for r in out]
        out.gfid_log.append({"generator": ckpt, "tokenizer": name, "value": res["gfid"]["value"]})
    return out
