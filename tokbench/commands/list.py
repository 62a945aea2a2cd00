"""`tokbench list`: the registered tokenizers.

Building the table means importing every adapter (and torch), several seconds; the torch-free columns are cached
under the tokbench cache folder, keyed by the source files that define presets, so that a repeated `tokbench list`
answers in well under a second. Whether weights are on this machine is always looked up afresh."""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
from pathlib import Path

from ..io import cache_dir, write_json_atomic

NAME = "list"
HELP = "list tokenizer presets (name, family, tokens/image, vocabulary, quantiser, local weights; --wide: licences)"
ORDER = 10
COLUMNS = ["name", "family", "tokens", "vocab", "quantizer", "local"]
WIDE = COLUMNS + ["code_license", "weights_license", "weights"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--family", help="only this family")
    p.add_argument("--wide", action="store_true", help="also licences and weight sources (wider than 120 columns)")
    p.add_argument("--json", action="store_true", help="machine-readable output (every field)")


def _cache_file() -> Path:
    return cache_dir() / "list-rows.json"


def _source_key() -> str:
    """Hash of (path, size, mtime) of every file that can register a preset, and of the tokbench version."""
    # deferred on purpose: start-up time (see tokbench/commands/__init__.py)
    from .. import __version__

    roots = [Path(__file__).resolve().parents[1]]
    spec = importlib.util.find_spec("tokbench_adapters")
    if spec and spec.submodule_search_locations:
        roots += [Path(p) for p in spec.submodule_search_locations]
    h = hashlib.sha256(__version__.encode())
    for root in roots:
        for p in sorted(root.rglob("*")):
            if p.suffix in (".py", ".json") and "__pycache__" not in p.parts:
                st = p.stat()
                h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _build_rows() -> list[dict]:
    """Every preset's static facts (imports every adapter and torch)."""
    # deferred on purpose: start-up time (see tokbench/commands/__init__.py)
    import torch

    from ..registry import get_family, presets

    out = []
    for name, preset in sorted(presets().items()):
        info = dict(preset.info)
        fam = get_family(preset.family)
        row = {"name": name, "family": preset.family, "tokens": info.get("tokens_per_image", ""),
               "vocab": info.get("vocab_size", ""), "quantizer": info.get("quantizer", ""),
               "code_license": info.get("code_license", ""), "weights_license": info.get("weights_license", ""),
               "weights": preset.weights or "", "needs_weights": fam.needs_weights}
        if row["tokens"] == "" or row["vocab"] == "":
            try:  # build on the meta device: no memory, no weights
                with torch.device("meta"):
                    m = fam.build(preset.get_config())
                row.update(tokens=m.info.tokens_per_image, vocab=m.info.vocab_size, quantizer=m.info.quantizer,
                           code_license=row["code_license"] or m.info.code_license,
                           weights_license=row["weights_license"] or m.info.weights_license)
            except Exception as e:  # noqa: BLE001
                row["error"] = f"{type(e).__name__}: {e}"
        out.append(row)
    return out


def _static_rows() -> tuple[list[dict], dict]:
    """(rows, plugin import errors), from the cache when the preset sources are unchanged."""
    key, cache = _source_key(), _cache_file()
    try:
        data = json.loads(cache.read_text())
        if data.get("key") == key:
            return data["rows"], data.get("plugin_errors", {})
    except (OSError, ValueError):
        pass
    # deferred on purpose: start-up time (see tokbench/commands/__init__.py)
    from ..registry import PLUGIN_ERRORS

    rows = _build_rows()
    try:
        write_json_atomic(cache, {"key": key, "rows": rows, "plugin_errors": dict(PLUGIN_ERRORS)}, indent=None)
    except OSError:
        pass  # a read-only cache only costs speed
    return rows, dict(PLUGIN_ERRORS)


def rows(family: str | None = None) -> list[dict]:
    """One dict per preset, with `local`: are its weights on this machine (weights folder, Hub cache, path)."""
    # deferred on purpose: start-up time (see tokbench/commands/__init__.py)
    from ..weight_files import local_file

    static, _ = _static_rows()
    out = []
    for r in static:
        if family and r["family"] != family:
            continue
        r = dict(r)
        r["local"] = (not r.pop("needs_weights")) or bool(r["weights"] and local_file(r["weights"]))
        out.append(r)
    return out


def run(args: argparse.Namespace) -> int:
    table = rows(args.family)
    _, plugin_errors = _static_rows()
    if args.json:
        print(json.dumps(table, indent=1))
        return 0
    cols = WIDE if args.wide else COLUMNS

    def text(r: dict, c: str) -> str:
        return ("yes" if r[c] else "no") if c == "local" else str(r.get(c, ""))

    widths = {c: max([len(c)] + [len(text(r, c)) for r in table]) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols).rstrip())
    for r in table:
        print("  ".join(text(r, c).ljust(widths[c]) for c in cols).rstrip())
    for mod, err in plugin_errors.items():
        print(f"warning: {mod} could not be imported: {err}")
    return 0
