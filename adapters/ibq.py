"""IBQ, Index Backpropagation Quantization (Shi et al., ICCV 2025; TencentARC SEED-Voken).

The taming network (4 blocks per encoder level at full size) with a large learned codebook, and one difference that
matters: ids are the **argmax of the plain dot product** z·e (upstream takes the argmax of a softmax over logits
z·e; no normalisation, no distance), so large-norm codes win. The reported numbers use the LitEma weights stored in the
Lightning checkpoint as `model_ema.<key without dots>`, including the EMA codebook; the filter takes those.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import torch
from torch import nn

from tokbench.api import TokenizerInfo
from tokbench.nn.taming import TamingConfig
from tokbench.registry import Family, Preset, register_family, register_preset
from tokbench.weights import CheckpointMismatchError, unwrap_state_dict
from tokbench_adapters.taming_vqgan import TamingVQTokenizer, image_size_of

log = logging.getLogger(__name__)

FAMILY = "ibq"
BENCH_PRESETS = ["ibq-1024", "ibq-8192", "ibq-16384", "ibq-262144"]
PAPER = ("Shi et al. Scalable Image Tokenization with Index Backpropagation Quantization (IBQ). ICCV 2025 "
         "(arXiv 2412.02692)")
LICENSE = "Apache-2.0"


class IBQTokenizer(TamingVQTokenizer):
    metric = "dot"

    def _make_quantizer(self) -> None:
        super()._make_quantizer()
        nn.init.normal_(self.quantize.embedding.weight)  # upstream: nn.Embedding's default N(0, 1)


def build_ibq(config: dict) -> IBQTokenizer:
    kw = config["constructor_kwargs"]
    if kw.get("l2_normalize", False):
        raise NotImplementedError("IBQ with l2_normalize=True is not an official configuration; not supported")
    net = TamingConfig.from_ddconfig(kw["ddconfig"])
    info = TokenizerInfo(family=FAMILY, value_range="[-1,1]", quantizer="vq", paper=PAPER, code_license=LICENSE,
                         weights_license=LICENSE + " (SEED-Voken model cards)",
                         notes="ids = argmax of the dot product z.e (no normalisation); EMA weights")
    return IBQTokenizer(net, kw["n_embed"], kw["embed_dim"], image_size_of(config), info)


def select_lit_ema(sd: dict[str, torch.Tensor], *, use_ema: bool = True, what: str = "checkpoint") -> dict[str, torch.Tensor]:
    """A Lightning state dict with LitEma copies → the generator state dict.

    Generator keys are those outside `loss.*` and `model_ema.*`; with `use_ema`, each takes
    `model_ema.<key with dots removed>` (the weights behind the published numbers). A checkpoint with EMA copies for
    only some keys is refused rather than silently mixed. A flat state dict without EMA copies passes through."""
    gen = {k: v for k, v in sd.items() if not k.startswith(("loss.", "model_ema."))}
    ema_keys = [k for k in sd if k.startswith("model_ema.") and k not in ("model_ema.decay", "model_ema.num_updates")]
    if not use_ema or not ema_keys:
        return gen
    dotless = {"model_ema." + k.replace(".", ""): k for k in gen}
    if len(dotless) != len(gen):
        raise CheckpointMismatchError(f"{what}: generator keys collide once their dots are removed")
    missing = [k for m, k in dotless.items() if m not in sd]
    if missing:
        raise CheckpointMismatchError(f"{what}: EMA copies (model_ema.*) are present but missing for {len(missing)} "
                                      f"generator keys, e.g. {missing[:5]}; pass a checkpoint with complete EMA weights")
    return {k: sd[m] for m, k in dotless.items()}


def ibq_filter(raw: Any, config: dict) -> dict[str, torch.Tensor]:
    """Lightning `.ckpt` → `state_dict` → EMA generator weights; `loss.*` and `model_ema.decay/num_updates` dropped."""
    sd = unwrap_state_dict(raw, prefer=("state_dict",))
    return select_lit_ema(sd, use_ema=bool(config.get("use_ema_weights", True)), what=FAMILY)


def _config(n_embed: int) -> dict:
    return {
        "upstream_repo": "https://github.com/TencentARC/SEED-Voken",
        "upstream_commit": "b9a17eac8e2c0779c12a5429b0bfd6c502788484",
        "class": "src.IBQ.models.ibqgan.IBQ",
        "constructor_kwargs": {
            "ddconfig": {"double_z": False, "z_channels": 256, "resolution": 256, "in_channels": 3, "out_ch": 3,
                         "ch": 128, "ch_mult": [1, 1, 2, 2, 4], "num_res_blocks": 4, "attn_resolutions": [16],
                         "dropout": 0.0},
            "n_embed": n_embed, "embed_dim": 256, "l2_normalize": False, "use_entropy_loss": True, "beta": 0.25,
            "use_ema": True,
        },
        "input_range": "[-1,1]",
        "image_size": 256,
        "use_ema_weights": True,
    }


register_family(Family(FAMILY, build_ibq, ibq_filter,
                       description="IBQ (SEED-Voken), dot-product VQ on a taming network, EMA weights, input [-1,1]"))

for _n in (1024, 8192, 16384, 262144):
    _repo = f"TencentARC/IBQ-Tokenizer-{_n}"
    register_preset(Preset(
        name=f"ibq-{_n}", family=FAMILY, config=copy.deepcopy(_config(_n)),
        weights=f"hf://{_repo}/imagenet256_{_n}.ckpt",
        manual_url=f"https://huggingface.co/{_repo}",
        info={"paper": PAPER, "code_license": LICENSE, "weights_license": LICENSE + " (SEED-Voken model cards)",
              "quantizer": "vq", "vocab_size": _n, "tokens_per_image": 256,
              "notes": f"IBQ ImageNet 256, {_n} x 256 codebook, dot-product assignment, EMA weights "
                       "(Lightning .ckpt: convert once with `tokbench convert --trust-checkpoint`)"},
        description=f"IBQ ImageNet 256, {_n} codes",
    ))
