"""The result file: one JSON per measurement (tokenizer, suite, data, protocol), written atomically by `tokbench run`;
read by `tokbench leaderboard`, `tokbench correlate` and the zoo reports, all through `tokbench.results.result`
(typed `Result`, canonical metric keys).

File name (`tokbench.result_identity`): `<out>/<tokenizer>__<suite>__<data8>-<protocol8>.json`, a failed run
`<tokenizer>__<suite>__<data8>.failed.json` beside it (names with `/` and spaces replaced by `_`); older
`<tokenizer>__<suite>.json` files are still read.

```
{
  "schema": "tokbench.result/1",
  "status": "ok" | "failed",
  "reason": "why it failed (failed only)",          "error_type": "WeightsNotFoundError" …
  "data_key": "<data8> (failed only: the data it was asked to measure)",
  "tokenizer": {"name": "llamagen-vq16", "info": {TokenizerInfo: family, preset, resolution, crop, value_range,
                 vocab_size, tokens_per_image, quantizer, paper, code_license, weights_license, weight_source, notes},
                "layout": {"groups": [...]}, "token_spaces": [{"kind", "vocab_size", "metric"|"bits"|"levels"}],
                "weights": {"source": spec, "path": local file, "sha256": file hash} | null},
  "suite": {"name": "imagenet256", "file": "tokbench/suites/imagenet256.yaml" (packaged) or the path given,
            "definition": {the suite as run}},
  "protocol": {                                       # everything that makes numbers comparable (leaderboard key)
      "data": {dataset.describe(): kind, root, num_images, content_hash, resolution, crop …},
      "num_images": N evaluated (after skipped bad images), "resolution": 256, "crop": "adm",
      "uint8": "floor(255*x01+0.5) after clamp", "decode_dtype": "float32",
      "fid": {"extractor": {extractor.protocol incl. weights_sha256, random_weights}, "reference": {"cache_key", "n"},
              "sqrt": SQRT_METHOD, "statistics": "float64 sums"},
      "pfid": {"settings": [{alpha, delta, beta, mode, scales, exclude_self, seeds}], "rng": RNG_PROTOCOL,
               "rule": RULE_PROTOCOL, "realised_share": REALISED_SHARE},
      "codebook": {"window": 256, "on": "clean tokens"},
      "psnr": PSNR_PROTOCOL, "ssim": SSIM_PROTOCOL, "metrics": ["rfid", "pfid", …],
      "hash": sha256 of all the above (rows of a leaderboard must share it)
  },
  "run": {"run_hash": protocol hash + tokenizer + batching (resume key), "device", "dtype", "world_size",
          "batch_size", "chunk_size", "versions": {"tokbench", "torch", "torch_fidelity", "python"},
          "started", "finished", "timings_s": {"encode", "decode", "perturb", "features", "metrics", "total"},
          "images_per_s", "bad_images": [{"index", "path", "reason"}], "resumed_chunks": k,
          "data": {"images_found", "images_used", "unreadable_skipped": [{"path", "reason"}], "bad_images_skipped"}},
  "metrics": {
      "rfid": float | null,
      "pfid": [{"alpha", "delta" (as given: int or fraction), "delta_abs": {"space0": int, …}, "mode" (requested
                codebook rule), "rule" (realised, e.g. "feature", "hamming", "fsq-grid"), "rules": {"space0": rule, …},
                "exclude_self", "scales", "beta", "seeds": [0, 1, 2], "values": [pFID per seed], "mean",
                "std" (sample std, 0 for one seed), "replacement_rate": [realised per seed; null = undefined, no
                eligible token], "replacement_rate_mean"}],
      "pfid_curve": {"delta=<δ>,mode=<m>": [[alpha, mean, std], …]}   (when several α share a δ),
      "psnr": float, "ssim": float, "image_quality": {…ImageQuality.summary()},
      "codebook": {CodebookStats.summary(): usage, perplexity, entropy_norm, usage_per_window, headline_over,
                   window, units: {"space0": {vocab_size, tokens, used, usage, dead, perplexity, entropy_bits,
                   entropy_norm, bit_entropy…}, "scale3/space0": …}}
  },
  "gfid": optional, {value, generator, num_samples, reference, key, protocol}: written by the gFID stage of
          `run_suite` (runner/gfid_step.py) as soon as it is measured, or by the zoo pipeline
}
```
Absent metrics (not asked) are null / missing; a metric is never written as a number it did not measure.
"""

from __future__ import annotations

import os

from ..io import portable_path, stable_hash, write_json_atomic  # noqa: F401 - re-exported (one implementation)
from ..result_identity import (data_key, identity, latest_per_identity, result_file, result_key,  # noqa: F401
                               result_path, safe_name)
from ..results.result import SCHEMA, read  # noqa: F401 - SCHEMA re-exported (defined once, beside the reader)

UINT8_RULE = "floor(255*x01+0.5) after clamp to [0,1]"
RNG_PROTOCOL = "counter-based: lowbias32 hash of (seed, stream, global image index, flat token position)"
RULE_PROTOCOL = ("image perturbed iff u_img < beta; token re-drawn iff u <= alpha; rank j = floor(u_j*delta) among "
                 "the delta nearest (rank 0 = itself; exclude_self: floor(u_j*(delta-1)) among the others): codebook "
                 "feature rule (nearest to the encoder feature, RobustTok's) or code rule (nearest to the assigned "
                 "code), binary Hamming shells, FSQ ±1 steps")
REALISED_SHARE = ("a re-drawn token may draw itself back: expected share of changed tokens alpha*(delta-1)/delta, or "
                  "alpha with exclude_self (FSQ clipping at the grid edge lowers both); the measured share is "
                  "replacement_rate")


def read_result(path: str | os.PathLike) -> dict:
    """The result file's dict (`tokbench.results.result.read`, the one reader; ValueError when not a result)."""
    return read(path).to_dict()

