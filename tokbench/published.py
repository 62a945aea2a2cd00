"""Published numbers of the presets and the protocols they were measured under.

`results/published.csv` holds one row per (preset, published number set): rFID / pFID / gFID with, per metric, its
protocol code and the source file under `results/published-sources/` that quotes it (a test checks every number
against its quoted source). PROTOCOLS spells out each code (reference set, N, crop, evaluator, uint8 rule, weights)
and what tokbench cannot reproduce of it; FAMILY_PROTOCOLS says which protocol each family's paper used and which
user issues trace back to a protocol mismatch (docs: `results/published-sources/PROTOCOLS.md`).

`paper_suite(preset)` turns a preset's published rFID/pFID protocol into a suite, so that
`tokbench run --tokenizer P --protocol paper --data IMAGENET_VAL` measures P as its paper did, as far as tokbench can;
the leaderboard then shows ours, the paper's, the difference and the protocol differences.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .suite_files import suite_definition

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED_CSV = ROOT / "results" / "published.csv"
SOURCES_DIR = ROOT / "results" / "published-sources"


@dataclass(frozen=True)
class Protocol:
    """How a published number was measured. `tokbench_gap`: what tokbench's own pipeline does differently (empty:
    nothing known)."""

    code: str
    metric: str  # rfid | pfid | gfid
    reference: str
    n: str
    crop: str
    evaluator: str
    uint8: str
    weights: str = ""
    tokbench_crop: str | None = "adm"  # the tokbench crop that matches (None: tokbench has none)
    tokbench_gap: str = ""

    def describe(self) -> str:
        parts = [f"reference {self.reference}", f"N {self.n}", f"crop {self.crop}", f"evaluator {self.evaluator}",
                 f"uint8 {self.uint8}"]
        if self.weights:
            parts.append(f"weights {self.weights}")
        return f"{self.code}: " + "; ".join(parts)


_TF = "ADM TensorFlow evaluator (tokbench: torch Inception with the pt_inception-2015-12-05 weights, not the TF graph)"
PROTOCOLS: dict[str, Protocol] = {p.code: p for p in [
    Protocol("R-TAM", "rfid", "ImageNet val (50k)", "50000", "SmallestMaxSize(256) + CenterCrop(256) (inferred)",
             "torch-fidelity", "not stated (evaluation code never released, taming#87)", "no EMA",
             tokbench_crop=None, tokbench_gap="crop: tokbench has only the ADM crop; evaluation code unreleased"),
    Protocol("R-LG", "rfid", "the same val-50k ADM crops (npz)", "50000", "ADM center_crop_arr 256", "ADM TF",
             "rounded clamp(127.5x+128)", "ema if present", tokbench_gap=_TF),
    Protocol("R-1D", "rfid", "the same val-50k crops", "50000", "Resize(256, bicubic, antialias) + CenterCrop(256)",
             "torch-fidelity-style InceptionV3, pytorch-fid weights", "reconstructions rounded, reference truncated",
             "EMA", tokbench_crop=None, tokbench_gap="crop (torchvision resize, not ADM); reference truncated"),
    Protocol("R-MB", "rfid", "the same val-50k crops", "50000", "Resize(256, bilinear) + CenterCrop(256)",
             "torch-fidelity-style InceptionV3", "both sides truncated", "EMA (unverified for the release)",
             tokbench_crop=None, tokbench_gap="crop (torchvision resize); truncation instead of rounding"),
    Protocol("R-SV-O", "rfid", "ImageNet val", "50000", "Resize(256) + CenterCrop(256)",
             "pytorch-fid InceptionV3 on float [0,1] inputs (np.cov + scipy sqrtm)", "none (float inputs)", "EMA",
             tokbench_crop=None, tokbench_gap="crop; float instead of uint8 inputs; pytorch-fid resize"),
    Protocol("R-SV-I", "rfid", "ImageNet val", "50000", "SmallestMaxSize(256) + CenterCrop(256) (albumentations)",
             "pytorch-fid InceptionV3 on float [0,1] inputs", "none (float inputs)", "EMA", tokbench_crop=None,
             tokbench_gap="crop; float instead of uint8 inputs"),
    Protocol("R-XQ", "rfid", "the same val-50k ADM crops", "50000 (+ DistributedSampler padding)",
             "ADM center_crop_arr 256", "ADM TF (in the training loop)", "rounded",
             "raw training weights (not EMA), best-rFID checkpoint", tokbench_gap=_TF),
    Protocol("R-LC", "rfid", "the raw uncropped ImageNet val JPEG folder", "unverified (drop_last)",
             "model input SmallestMaxSize(256) + CenterCrop(256)", "clean-fid mode='clean'", "truncated PNG",
             "no EMA", tokbench_crop=None, tokbench_gap="uncropped reference and clean-fid: not reproducible here"),
    Protocol("R-UT", "rfid", "HF dataset FoundationVision/imagenet_reference_batch + CenterCrop(256)",
             "unverified", "CenterCrop(256)", "torch-fidelity inception-v3-compat", "rounded PNG",
             tokbench_crop=None, tokbench_gap="reference set differs (not ImageNet val 50k)"),
    Protocol("R-3P", "rfid", "as the citing source states (often unstated)", "unverified", "unverified",
             "unverified", "unverified", tokbench_crop=None,
             tokbench_gap="third-party number: its protocol is not known well enough to reproduce"),
    Protocol("P-RT", "pfid", "the same clean val-50k ADM crops", "50000", "ADM center_crop_arr 256", "ADM TF",
             "rounded clamp(127.5x+128)", "as rFID",
             tokbench_gap=_TF + "; (α, δ) of the published table unpublished (tokbench/suites/robusttok-pfid.yaml); "
                               "upstream decodes under fp16 autocast, tokbench in float32"),
    Protocol("G-ADM", "gfid", "VIRTUAL_imagenet256_labeled.npz (ADM train statistics)", "50000 (50 per class)",
             "-", "ADM TF", "uint8 PNG/npz", tokbench_crop=None),
    Protocol("G-TAM", "gfid", "full ImageNet train set", "50000", "-", "torch-fidelity", "uint8", tokbench_crop=None),
    Protocol("G-MB", "gfid", "metrics/stats/train_imagenet256_stats.npz (= VIRTUAL unverified)",
             "50000 (50 per class)", "-", "ADM TF (vendored)", "uint8", tokbench_crop=None),
    Protocol("G-?", "gfid", "not stated", "unverified", "-", "not stated", "unverified", tokbench_crop=None),
]}

# Per family: the protocol of its paper's rFID (and pFID), and user issues whose reproduction gap is protocol.
FAMILY_PROTOCOLS: dict[str, dict] = {
    "taming_vqgan": {"rfid": "R-TAM", "gfid": "G-TAM", "issues": ["CompVis/taming-transformers#87 (no eval code)",
                                                                  "CompVis/taming-transformers#155 (gFID vs train)"]},
    "llamagen_vq": {"rfid": "R-LG", "pfid": "P-RT", "gfid": "G-ADM",
                    "issues": ["FoundationVision/LlamaGen#34 (rFID 4.28 against VIRTUAL vs 2.19 against val)",
                               "FoundationVision/LlamaGen#53 (gFID scored against the rFID reference)"]},
    "maskgit_vq": {"rfid": "R-3P", "pfid": "P-RT", "gfid": "G-ADM",
                   "issues": ["MaskBit's evaluator gives 1.96 for the re-hosted tokenizer (R-MB)"]},
    "titok": {"rfid": "R-1D", "gfid": "G-ADM",
              "issues": ["bytedance/1d-tokenizer#105 (S-128 rFID 3.91 vs 1.71; open)",
                         "bytedance/1d-tokenizer#65 (gFID 8.7: fewer than 50,000 samples)",
                         "bytedance/1d-tokenizer#46 (rFID vs gFID references differ)"]},
    "titok_vq8k": {"rfid": "R-1D", "issues": []},
    "var": {"rfid": "R-3P", "pfid": "P-RT", "gfid": "G-ADM",
            "issues": ["openai/guided-diffusion#161 (VAR rFID 2.70 through the ADM pipeline vs 0.90/0.92 quoted)",
                       "FoundationVision/VAR#38 (demo config and torchmetrics instead of the ADM evaluator)"]},
    "xqgan": {"rfid": "R-XQ", "pfid": "P-RT", "gfid": "G-ADM",
              "issues": ["lxa9867/ImageFolder#28 (pFID code and noise values unreleased)",
                         "lxa9867/ImageFolder#3 (paper rFID used LlamaGen's implementation, R-LG)"]},
    "imagefolder": {"rfid": "R-XQ", "pfid": "P-RT", "gfid": "G-ADM", "issues": ["lxa9867/ImageFolder#28"]},
    "ibq": {"rfid": "R-SV-I", "gfid": "G-?", "issues": ["TencentARC/SEED-Voken#13 (128-px rFID above 10)"]},
    "open_magvit2": {"rfid": "R-SV-O", "gfid": "G-?", "issues": ["TencentARC/SEED-Voken#13"]},
    "maskbit": {"rfid": "R-MB", "gfid": "G-MB", "issues": []},
    "vqgan_plus": {"rfid": "R-MB", "issues": []},
    "unitok": {"rfid": "R-UT", "gfid": "G-ADM", "issues": []},
    "vqgan_lc": {"rfid": "R-LC", "gfid": "G-?", "issues": ["zh460045050/VQGAN-LC#7 (GPT-LC top-k 100,000 vs 10,000)",
                                                           "showlab/D-AR#3 (uncropped val JPEGs as reference)"]},
    "cosmos_di": {"rfid": "R-3P", "issues": ["NVIDIA/Cosmos-Tokenizer#5 (targets H > 512)"]},
    "mage": {"rfid": "R-3P", "issues": ["LTH14/mage#8 (JPEG reference: 13.74 vs 11.1)"]},
}

METRICS = ("rfid", "pfid", "gfid")


@lru_cache(maxsize=4)
def _load(path: str) -> tuple[dict, ...]:
    p = Path(path)
    if not p.is_file():
        return ()
    with p.open(newline="") as f:
        return tuple(dict(r) for r in csv.DictReader(f))


def published_rows(preset: str | None = None, path: str | Path = PUBLISHED_CSV) -> list[dict]:
    """Rows of results/published.csv (all, or one preset's); [] when the file is not there (installed package)."""
    rows = _load(str(path))
    return [dict(r) for r in rows if preset is None or r["tokenizer"] == preset]


def headline(preset: str, metric: str, path: str | Path = PUBLISHED_CSV) -> dict | None:
    """The first published value of `metric` for a preset: {value, protocol, source} or None."""
    for r in published_rows(preset, path):
        v = r.get(metric, "")
        if v not in ("", None):
            return {"value": float(v), "protocol": r.get(f"{metric}_protocol", ""),
                    "source": r.get(f"{metric}_source", "")}
    return None


def protocol_gap(code: str) -> str:
    p = PROTOCOLS.get(code.split(":")[0].strip()) if code else None
    return p.tokbench_gap if p else "protocol unknown"


def paper_suite(preset: str, family: str, data: str | None = None) -> dict:
    """A suite dict measuring `preset` under its paper's rFID (and pFID) protocol, as far as tokbench can: ImageNet val
    50k at the native resolution, the family's crop when tokbench has it, reference = the same crops, and RobustTok's
    pFID settings (tokbench/suites/robusttok-pfid.yaml) where the paper published a pFID. Raises when the crop cannot be
    reproduced (say so rather than measure under another protocol silently)."""
    fam = FAMILY_PROTOCOLS.get(family)
    if fam is None:
        raise ValueError(f"no published protocol recorded for family {family!r} ({preset}); run a suite instead")
    proto = PROTOCOLS[fam["rfid"]]
    if proto.tokbench_crop is None and fam.get("pfid") and headline(preset, "pfid") is not None:
        proto = PROTOCOLS[fam["pfid"]]  # the rFID's protocol is unknown, the pFID's (RobustTok's) is not
    if proto.tokbench_crop is None:
        raise ValueError(f"{preset}: its paper's rFID protocol {proto.code} uses crop '{proto.crop}', which tokbench "
                         f"does not implement ({proto.tokbench_gap}); `--protocol paper` would not measure it as the "
                         "paper did")

    metrics = ["rfid", "usage", "psnr", "ssim"]
    pfid = None
    if headline(preset, "pfid") is not None:
        rt = suite_definition("robusttok-pfid")
        pfid, metrics = rt["pfid"], metrics + ["pfid"]
    return {"name": f"paper-{proto.code}", "description": f"{preset} under its paper's protocol: {proto.describe()}",
            "data": data or "~/data/imagenet/val", "num_images": 50000, "resolution": None, "crop": proto.tokbench_crop,
            "tokenizers": [preset], "metrics": metrics, **({"pfid": pfid} if pfid else {}),
            "fid": {"extractor": "inception-v3-compat", "weights": None}, "batch_size": 64, "chunk_size": 1024,
            "usage_window": 256}


def protocols_markdown() -> str:
    """docs/published-protocols.md: per family, the protocol of its published numbers, what tokbench cannot reproduce
    of it, and the user issues that trace back to protocol (a test keeps the committed file equal to this)."""
    out = ["# Published numbers: which protocol each family's paper used", "",
           "Generated from `tokbench/published.py` (a test keeps this file equal to it). The numbers themselves, "
           "each with its source, are in `results/published.csv`; the quoted source texts in "
           "`results/published-sources/`. `tokbench run --tokenizer P --protocol paper --data IMAGENET_VAL` measures "
           "P under its paper's rFID/pFID protocol where tokbench can reproduce it, and refuses where it cannot.", "",
           "## Protocols", "",
           "| code | metric | reference | N | crop | evaluator | uint8 | weights | what tokbench does differently |",
           "|---|---|---|---|---|---|---|---|---|"]
    for p in PROTOCOLS.values():
        out.append(f"| {p.code} | {p.metric} | {p.reference} | {p.n} | {p.crop} | {p.evaluator} | {p.uint8} | "
                   f"{p.weights or '-'} | {p.tokbench_gap or '-'} |")
    out += ["", "## Families", "",
            "| family | rFID | pFID | gFID | `--protocol paper` | user issues that trace back to protocol |",
            "|---|---|---|---|---|---|"]
    for fam, d in sorted(FAMILY_PROTOCOLS.items()):
        rp = PROTOCOLS[d["rfid"]]
        can = ("yes (ADM crop)" if rp.tokbench_crop else "under P-RT (the pFID's protocol; rFID's unknown)"
               if d.get("pfid") else f"refused: {rp.tokbench_gap}")
        out.append(f"| {fam} | {d['rfid']} | {d.get('pfid', '-')} | {d.get('gfid', '-')} | {can} | "
                   f"{'; '.join(d['issues']) or '-'} |")
    out += ["", "Codes: R-* reconstruction, P-RT RobustTok's pFID, G-* generation; R-3P = a third-party number whose "
            "protocol is not known. The gFID protocols are recorded, not reproduced: tokbench's gFID trains its own "
            "generators."]
    return "\n".join(out) + "\n"
