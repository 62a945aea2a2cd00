"""`tokbench list`: the registered tokenizers."""

from __future__ import annotations

import argparse
import json

NAME = "list"
HELP = "list tokenizer presets (name, family, tokens/image, vocabulary, quantiser, licences, local weights)"
ORDER = 10


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--family", help="only this family")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def rows(family: str | None = None) -> list[dict]:
    from ..registry import build_tokenizer, get_family, presets, weights_available_locally

    out = []
    for name, preset in sorted(presets().items()):
        if family and preset.family != family:
            continue
        info = dict(preset.info)
        row = {"name": name, "family": preset.family, "tokens": info.get("tokens_per_image", ""),
               "vocab": info.get("vocab_size", ""), "quantizer": info.get("quantizer", ""),
               "code_license": info.get("code_license", ""), "weights_license": info.get("weights_license", ""),
               "local": weights_available_locally(preset)}
        if row["tokens"] == "" or row["vocab"] == "":
            try:  # build on the meta device: no memory, no weights
                import torch

                with torch.device("meta"):
                    m = get_family(preset.family).build(preset.get_config())
                row.update(tokens=m.info.tokens_per_image, vocab=m.info.vocab_size, quantizer=m.info.quantizer,
                           code_license=row["code_license"] or m.info.code_license,
                           weights_license=row["weights_license"] or m.info.weights_license)
            except Exception as e:  # noqa: BLE001
                row["error"] = f"{type(e).__name__}: {e}"
        out.append(row)
    return out


def run(args: argparse.Namespace) -> int:
    from ..registry import PLUGIN_ERRORS

    table = rows(args.family)
    if args.json:
        print(json.dumps(table, indent=1))
        return 0
    cols = ["name", "family", "tokens", "vocab", "quantizer", "code_license", "weights_license", "local"]
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in table)) if table else len(c) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols))
    for r in table:
        print("  ".join(str(("yes" if r[c] else "no") if c == "local" else r.get(c, "")).ljust(widths[c]) for c in cols))
    for mod, err in PLUGIN_ERRORS.items():
        print(f"warning: {mod} could not be imported: {err}")
    return 0
