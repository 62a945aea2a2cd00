"""The zoo configuration: one YAML (`benchmarks/experiments/zoo.yaml`) that fixes the data, the split, every tokenizer's
training config, the one generator recipe shared by all tokenizers, and the measurement protocol.

Every tokenizer entry is a `tokbench train-robust` config written as overrides on `tokenizer_defaults`, so that
"same budget" is a property of the file: a tokenizer differs from its neighbours only by what its entry says.
Unknown keys are an error (a typo must not silently train the wrong zoo). `--quick` deep-merges the file's `quick`
section (tiny models, few steps) on top.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

from ..gen.training import RunConfig
from ..tokenizer_training import make_config

TOP_KEYS = {"name", "description", "seed", "data", "tokenizer_defaults", "tokenizers", "generator", "generators",
            "pretokenize", "measure", "gfid", "correlate", "quick", "notes", "select"}
DEFAULTS: dict[str, Any] = {
    "name": "zoo",
    "description": "",
    "notes": [],
    "seed": 0,
    "data": {"spec": "sample", "resolution": 32, "num_images": None, "crop": "adm", "held_out_fraction": 0.25,
             "split_seed": 0},
    "tokenizer_defaults": {},
    "tokenizers": [],
    # a subset of `tokenizers` by name, in this order (a config that `extends` a larger one runs part of its zoo)
    "select": None,
    "generator": {"model": {"size": "tiny"}, "train": {"steps": 200, "batch_size": 32}, "sampling": {}},
    # several generator recipes, each trained on every tokenizer's tokens: [{name, model, train, sampling}, …]; the
    # first is the primary one (its gFID is the result files' `gfid`). None: the single `generator` above.
    "generators": None,
    "pretokenize": {"aug": "flip", "batch_size": 64},
    "measure": {"metrics": ["rfid", "pfid", "usage", "psnr", "ssim"],
                "pfid": {"alpha": [0.25, 0.5, 1.0], "delta": [0.1], "seeds": [0], "mode": "code", "beta": 1.0,
                         "scales": None},
                "fid": {"extractor": "inception-v3-compat", "weights": None, "feature": None},
                "batch_size": 32, "chunk_size": 64, "usage_window": 256},
    # reference: train | heldout | a list of them (the first is `gfid` in the result files, every one is reported).
    # kid: also KID of the same samples against each reference (the references then keep every feature row).
    "gfid": {"reference": "train", "num": None, "seed": 0, "batch_size": 64, "sampling": None, "kid": False},
    "correlate": {"target": "gfid", "metrics": ["rfid", "pfid", "usage", "perplexity", "psnr", "ssim"],
                  "compare": None, "resamples": 10000, "seed": 0, "plots": True, "html": True},
    "quick": None,
}
SECTION_KEYS = {
    "data": set(DEFAULTS["data"]),
    "pretokenize": set(DEFAULTS["pretokenize"]),
    "measure": set(DEFAULTS["measure"]),
    "gfid": set(DEFAULTS["gfid"]),
    "correlate": set(DEFAULTS["correlate"]),
}


def deep_merge(base: dict, over: dict) -> dict:
    """`over` onto `base`, recursively for mappings; lists and scalars are replaced."""
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def stable_hash(obj: Any, n: int = 16) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


def _check(cfg: dict, where: str) -> None:
    unknown = set(cfg) - TOP_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}; known: {', '.join(sorted(TOP_KEYS))}")
    for sec, keys in SECTION_KEYS.items():
        bad = set(cfg.get(sec) or {}) - keys
        if bad:
            raise ValueError(f"{where}: unknown keys in {sec!r}: {sorted(bad)}; known: {', '.join(sorted(keys))}")
    refs = gfid_references(cfg)
    if not refs or any(r not in ("train", "heldout") for r in refs) or len(set(refs)) != len(refs):
        raise ValueError(f"{where}: gfid.reference must be 'train', 'heldout' or a list of distinct ones")
    gens = cfg.get("generators")
    if gens is not None:
        if not isinstance(gens, list) or not gens:
            raise ValueError(f"{where}: generators must be a non-empty list of {{name, model, train, sampling}}")
        gnames = [g.get("name") if isinstance(g, dict) else None for g in gens]
        if any(not isinstance(n, str) or not n.replace("-", "").replace("_", "").isalnum() for n in gnames):
            raise ValueError(f"{where}: every generator needs a plain `name` (letters, digits, - and _)")
        if len(set(gnames)) != len(gnames):
            raise ValueError(f"{where}: duplicate generator names {gnames}")
    toks = cfg["tokenizers"]
    if not toks:
        raise ValueError(f"{where}: the zoo has no tokenizers")
    names = [t.get("name") for t in toks]
    if any(not isinstance(n, str) or not n or "/" in n for n in names):
        raise ValueError(f"{where}: every tokenizer needs a plain `name` (no '/')")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"{where}: duplicate tokenizer names {dup}")
    for t in toks:
        bad = set(t) - {"name", "config", "note"}
        if bad:
            raise ValueError(f"{where}: tokenizer {t['name']!r}: unknown keys {sorted(bad)} (use name, config, note)")


def resolve(raw: dict, *, quick: bool = False, where: str = "zoo config") -> dict:
    """Defaults + file (+ its `quick` section): the resolved zoo, with every tokenizer's full train-robust config
    (validated by `tokbench.tokenizer_training.make_config`) under `tokenizers[i].train_config`."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: a zoo config is a YAML mapping")
    unknown = set(raw) - TOP_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}; known: {', '.join(sorted(TOP_KEYS))}")
    cfg = deep_merge(DEFAULTS, raw)
    if quick:
        q = raw.get("quick")
        if not q:
            raise ValueError(f"{where}: --quick needs a `quick:` section in the config (or use "
                             "benchmarks/experiments/zoo-quick.yaml)")
        cfg = deep_merge(cfg, q)
        cfg["name"] = q.get("name", f"{cfg['name']}-quick")
    cfg["quick"] = None
    cfg["tokenizers"] = _select(cfg["tokenizers"], cfg.pop("select"), where)
    _check(cfg, where)

    res = int(cfg["data"]["resolution"])
    out = []
    for t in cfg["tokenizers"]:
        over = copy.deepcopy(t.get("config") or {})
        base = copy.deepcopy(cfg["tokenizer_defaults"])
        fam = (over.get("model") or {}).get("family")
        if fam and fam != (base.get("model") or {}).get("family"):
            # another architecture: its constructor arguments replace the defaults' instead of extending them
            base.setdefault("model", {})["constructor_kwargs"] = {}
        tc = deep_merge(base, over)
        tc = deep_merge(tc, {"seed": tc.get("seed", cfg["seed"]), "data": {"resolution": res, "holdout": 0},
                             "model": {"name": f"tokbench-zoo-{t['name']}"}})
        tc.setdefault("model", {}).setdefault("constructor_kwargs", {})["image_size"] = res
        tc["eval"] = deep_merge(tc.get("eval") or {}, {"runner": False})
        try:
            full = make_config(tc)
        except ValueError as e:
            raise ValueError(f"{where}: tokenizer {t['name']!r}: {e}") from None
        out.append({"name": t["name"], "note": t.get("note", ""), "train_config": full})
    cfg["tokenizers"] = out

    for gname, recipe in generator_recipes(cfg):
        try:
            RunConfig.from_dict(recipe, name="zoo-generator")
        except ValueError as e:
            raise ValueError(f"{where}: generator {gname or ''}: {e}") from None
    return cfg


def _select(toks: list, names: list | None, where: str) -> list:
    if names is None:
        return toks
    by = {t.get("name"): t for t in toks}
    missing = [n for n in names if n not in by]
    if missing or len(set(names)) != len(names):
        raise ValueError(f"{where}: select names {missing or names} "
                         f"{'are not tokenizers of the zoo' if missing else 'repeat'}; known: {', '.join(map(str, by))}")
    return [by[n] for n in names]


def generator_recipes(cfg: dict) -> list[tuple[str, dict]]:
    """(name, recipe) of every generator family the zoo trains per tokenizer, the primary first. A zoo without a
    `generators` list has one unnamed generator (its stages keep their original names, so old zoos resume)."""
    gens = cfg.get("generators")
    if not gens:
        return [("", cfg["generator"])]
    return [(g["name"], {k: v for k, v in g.items() if k != "name"}) for g in gens]


def gfid_references(cfg: dict) -> list[str]:
    """The gFID reference splits, primary first."""
    r = cfg["gfid"]["reference"]
    return [r] if isinstance(r, str) else list(r or [])


def with_seed(raw: dict, seed: int) -> dict:
    """A replicate of a zoo config: every tokenizer and the generator recipe trained with `seed` (the data split, the
    pFID draws and the gFID sampling seed stay the same, so only training randomness differs), named `<name>-seed<N>`."""
    raw = copy.deepcopy(raw)
    raw["seed"] = int(seed)
    for t in raw.get("tokenizers") or []:
        (t.get("config") or {}).pop("seed", None)
    (raw.get("tokenizer_defaults") or {}).pop("seed", None)
    raw.setdefault("generator", {}).setdefault("train", {})["seed"] = int(seed)
    for g in raw.get("generators") or []:
        g.setdefault("train", {})["seed"] = int(seed)
    raw["name"] = f"{raw.get('name', DEFAULTS['name'])}-seed{seed}"
    if isinstance(raw.get("quick"), dict):
        raw["quick"]["name"] = f"{raw['quick'].get('name', raw['name'] + '-quick')}-seed{seed}"
        (raw["quick"].get("generator") or {}).get("train", {}).pop("seed", None)
    return raw


def locate_beside(name: str, near: Path) -> Path:
    """A file a config names: beside the config, else as given, else in the project root."""
    p = Path(name).expanduser()
    for cand in (near / p, p, Path(__file__).resolve().parents[2] / p):
        if cand.is_file():
            return cand.resolve()
    raise FileNotFoundError(f"{name} not found (tried beside the config {near}, as given and in the project root)")


def read_layered(path: str | Path, key: str, what: str, see: str, _seen: tuple[Path, ...] = ()) -> dict:
    """A YAML mapping with `<key>: other.yaml` resolved: this file deep-merged onto the one it names, recursively
    (mappings merged, lists replaced; cycles refused). The zoo's `extends:` and the paper experiment's `base:`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist (see {see})")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a {what} is a YAML mapping")
    base = raw.pop(key, None)
    if base is None:
        return raw
    bpath = locate_beside(str(base), path.parent)
    if bpath in _seen or bpath == path.resolve():
        raise ValueError(f"{path}: `{key}: {base}` makes a cycle")
    return deep_merge(read_layered(bpath, key, what, see, _seen + (path.resolve(),)), raw)


def read_raw(path: str | Path) -> dict:
    """A zoo YAML as written, with `extends: other.yaml` resolved (`read_layered`); `select` then picks tokenizers
    of the base. A smaller design of a larger zoo is a short file that says only how it differs."""
    return read_layered(path, "extends", "zoo config", "benchmarks/experiments/zoo.yaml")


def load(path: str | Path, *, quick: bool = False) -> dict:
    return resolve(read_raw(path), quick=quick, where=str(path))


def axes(train_config: dict) -> dict:
    """What varies across the zoo, read from a tokenizer's resolved train config (for tables and plots)."""
    m = train_config["model"]
    kw = m["constructor_kwargs"]
    p, r = train_config["perturb"], train_config["regvq"]
    lp = f"α={p['alpha']:g} β={p['beta']:g} δ={p['delta']}" if p["enabled"] else "off"
    reg = [f"prior {r['prior_weight']:g}" if r["prior_weight"] > 0 else "",
           f"mask {r['mask_ratio']:g}" if r["mask_ratio"] > 0 else "",
           f"PCL {r['pcl_weight']:g}" if r["pcl_weight"] > 0 else ""]
    reg = [x for x in reg if x]
    return {"arch": {"tokbench_convvq": "conv", "tokbench_vitvq": "vit"}.get(m["family"], m["family"]),
            "codebook": kw.get("codebook_size"), "lookup_dim": kw.get("lookup_dim"),
            "latent_perturbation": lp, "regvq": ", ".join(reg) if reg else "off"}


def generator_label(cfg: dict, recipe: dict | None = None, name: str = "") -> str:
    """A readable label of a generator recipe (default: the zoo's primary one)."""
    g = recipe if recipe is not None else generator_recipes(cfg)[0][1]
    m = g.get("model") or {}
    size = m.get("size", "custom")
    arch = str(m.get("arch", "gpt")).upper()
    tr = g.get("train") or {}
    budget = f"{tr['steps']} steps" if tr.get("steps") else f"{tr.get('epochs')} epochs"
    head = f"zoo {name} " if name else "zoo "
    kind = f"AR-{size}" if arch == "GPT" else f"{arch}-{size}"
    return f"{head}{kind} ({budget}, batch {tr.get('batch_size')}, unconditional)"
