"""TiTok (Yu et al., NeurIPS 2024): a ViT that compresses an image into a 1-D sequence of 32 to 256 tokens.

Two families share this module:
- `titok` (L-32, B-64, S-128; `is_legacy`, two-stage): 4096 x 12 codebook, both codes and queries l2-normalised
  (cosine). The ViT decoder predicts logits over the 1024 MaskGIT-VQ codes; their softmax mixes the MaskGIT codebook
  (`pixel_quantize`), and the MaskGIT conv decoder (`pixel_decoder`, `_nn.maskgit_conv`) makes the pixels.
- `titok_vq8k` (BL-64, BL-128, SL-256; single-stage): 8192 x 64 raw codebook (L2), a ViT decoder that predicts
  16x16x3 pixel patches directly, then a 3x3 conv.

The upstream config (`model.vq_model.*`, `dataset.preprocessing.crop_size`) is the nested dict of the Hugging Face
repos' `config.json`; `build` accepts it bare or under `constructor_kwargs.config` (the fixture format). Presets
read the repo's `config.json` from the local Hub cache (or the weights folder) when it is there, and otherwise use
the configuration recorded from the official yaml. Loading a folder whose `config.json` describes another model fails.
Input [0,1]; `decode_tokens` is unclamped.
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from tokbench.api import CodebookSpace, Tokenizer, TokenizerInfo, TokenLayout, Tokens
from tokbench.nn.vit_blocks import transformer
from tokbench.registry import Family, Preset, register_family, register_preset
from tokbench.weights import CheckpointMismatchError, parse_hf_spec, read_checkpoint, unwrap_state_dict, weights_dir
from tokbench_adapters._nn.maskgit_conv import Codebook, MaskGITConvConfig, MaskGITDecoder, l2_nearest
from tokbench_adapters.maskgit_vq import check_resolution

log = logging.getLogger(__name__)

BENCH_PRESETS = ["titok-l32", "titok-b64", "titok-s128", "titok-bl64-vq8k", "titok-bl128-vq8k", "titok-sl256-vq8k"]

VIT_SIZES = {"small": (512, 8, 8), "base": (768, 12, 12), "large": (1024, 24, 16)}  # width, layers, heads
# MaskGIT-VQ pixel stage hard-coded in upstream TiTok (the official maskgit-vq tokenizer's decoder and codebook)
PIXEL_DECODER_CONF = {"channel_mult": [1, 1, 2, 2, 4], "num_resolutions": 5, "dropout": 0.0, "hidden_channels": 128,
                      "num_channels": 3, "num_res_blocks": 2, "resolution": 256, "z_channels": 256}
PIXEL_CODES = 1024
# the fields of model.vq_model that decide the architecture (a folder's config.json must agree on these)
ARCH_KEYS = ("codebook_size", "token_size", "use_l2_norm", "vit_enc_model_size", "vit_dec_model_size",
             "vit_enc_patch_size", "vit_dec_patch_size", "num_latent_tokens", "finetune_decoder", "is_legacy",
             "quantize_mode")
PAPER = "An Image is Worth 32 Tokens for Reconstruction and Generation (Yu et al., NeurIPS 2024)"


def _expand(p: torch.Tensor, b: int) -> torch.Tensor:
    return p.unsqueeze(0).expand(b, -1, -1)


class TiTokEncoder(nn.Module):
    """Patches + learned latent tokens through a ViT; the latent outputs become N vectors of token_size."""

    def __init__(self, width: int, layers: int, heads: int, patch: int, image_size: int, num_latent: int,
                 token_size: int, is_legacy: bool) -> None:
        super().__init__()
        self.grid, self.width, self.num_latent, self.token_size = image_size // patch, width, num_latent, token_size
        self.is_legacy = is_legacy
        s = width ** -0.5
        self.patch_embed = nn.Conv2d(3, width, patch, stride=patch, bias=True)
        self.class_embedding = nn.Parameter(s * torch.randn(1, width))
        self.positional_embedding = nn.Parameter(s * torch.randn(self.grid ** 2 + 1, width))
        self.latent_token_positional_embedding = nn.Parameter(s * torch.randn(num_latent, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = transformer(width, layers, heads)
        self.ln_post = nn.LayerNorm(width)
        self.conv_out = nn.Conv2d(width, token_size, 1, bias=True)

    def forward(self, x: torch.Tensor, latent_tokens: torch.Tensor) -> torch.Tensor:
        """x (B, 3, H, W) → (B, N, token_size), pre-quantisation."""
        b = x.shape[0]
        h = self.patch_embed(x).flatten(2).transpose(1, 2)
        h = torch.cat([_expand(self.class_embedding, b).to(h.dtype), h], 1) + self.positional_embedding.to(h.dtype)
        lat = _expand(latent_tokens, b).to(h.dtype) + self.latent_token_positional_embedding.to(h.dtype)
        h = self.ln_pre(torch.cat([h, lat], 1))
        for blk in self.transformer:
            h = blk(h)
        lat = self.ln_post(h[:, 1 + self.grid ** 2:])  # B N W
        if self.is_legacy:  # the released L/B/S weights were trained with this raw reshape (no transpose)
            lat = lat.reshape(b, self.width, self.num_latent, 1)
        else:
            lat = lat.transpose(1, 2).unsqueeze(-1)
        return self.conv_out(lat).reshape(b, self.token_size, self.num_latent).transpose(1, 2)


class TiTokDecoder(nn.Module):
    """N code vectors + g² mask tokens through a ViT; the mask-token outputs become MaskGIT-code logits (legacy) or
    pixels (16x16x3 per patch, then a 3x3 conv)."""

    def __init__(self, width: int, layers: int, heads: int, patch: int, image_size: int, num_latent: int,
                 token_size: int, is_legacy: bool, num_logits: int = PIXEL_CODES) -> None:
        super().__init__()
        self.grid, self.width, self.patch, self.is_legacy = image_size // patch, width, patch, is_legacy
        s = width ** -0.5
        self.decoder_embed = nn.Linear(token_size, width, bias=True)
        self.class_embedding = nn.Parameter(s * torch.randn(1, width))
        self.positional_embedding = nn.Parameter(s * torch.randn(self.grid ** 2 + 1, width))
        self.mask_token = nn.Parameter(s * torch.randn(1, 1, width))
        self.latent_token_positional_embedding = nn.Parameter(s * torch.randn(num_latent, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = transformer(width, layers, heads)
        self.ln_post = nn.LayerNorm(width)
        if is_legacy:
            self.ffn = nn.Sequential(nn.Conv2d(width, 2 * width, 1), nn.Tanh(), nn.Conv2d(2 * width, num_logits, 1))
            self.conv_out = None
        else:
            self.ffn = nn.Sequential(nn.Conv2d(width, patch * patch * 3, 1))
            self.conv_out = nn.Conv2d(3, 3, 3, padding=1, bias=True)

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        """q (B, N, token_size) → logits (B, 1024, g, g) (legacy) or an image (B, 3, g·p, g·p)."""
        b, n, _ = q.shape
        x = self.decoder_embed(q) + self.latent_token_positional_embedding[:n].to(q.dtype)
        g2 = self.grid ** 2
        masks = torch.cat([_expand(self.class_embedding, b), self.mask_token.expand(b, g2, -1)], 1)
        masks = masks.to(x.dtype) + self.positional_embedding.to(x.dtype)
        x = self.ln_pre(torch.cat([masks, x], 1))
        for blk in self.transformer:
            x = blk(x)
        x = self.ln_post(x[:, 1:1 + g2]).transpose(1, 2).reshape(b, self.width, self.grid, self.grid)
        x = self.ffn(x.contiguous())
        if self.is_legacy:
            return x
        p, g = self.patch, self.grid  # channels are (p1 p2 c), c fastest
        x = x.view(b, p, p, 3, g, g).permute(0, 3, 4, 1, 5, 2).reshape(b, 3, g * p, g * p)
        return self.conv_out(x)


class TiTokTokenizer(Tokenizer):
    """TiTok: ids (B, N) as a 1-D sequence; decode through the ViT decoder (and the MaskGIT pixel stage)."""

    def __init__(self, vq: Mapping[str, Any], crop_size: int, sizes: Mapping[str, tuple], pixel_conf: Mapping | None,
                 pixel_codes: int, info: TokenizerInfo) -> None:
        super().__init__()
        if vq.get("quantize_mode", "vq") != "vq":
            raise ValueError(f"TiTok quantize_mode={vq['quantize_mode']!r} is continuous (VAE), not a discrete tokenizer")
        for k in ("vit_enc_model_size", "vit_dec_model_size"):
            if vq[k] not in sizes:
                raise ValueError(f"unknown TiTok {k}={vq[k]!r}; known: {', '.join(sizes)}")
        self.is_legacy = bool(vq.get("is_legacy", True))
        self.two_stage = bool(vq.get("finetune_decoder", True))
        self.use_l2_norm = bool(vq["use_l2_norm"])
        if self.two_stage and not self.is_legacy:
            raise ValueError("TiTok: finetune_decoder=True needs the legacy decoder (is_legacy=True), as upstream")
        n, t, k = int(vq["num_latent_tokens"]), int(vq["token_size"]), int(vq["codebook_size"])
        ew, el, eh = sizes[vq["vit_enc_model_size"]]
        dw, dl, dh = sizes[vq["vit_dec_model_size"]]
        self.encoder = TiTokEncoder(ew, el, eh, int(vq["vit_enc_patch_size"]), crop_size, n, t, self.is_legacy)
        self.decoder = TiTokDecoder(dw, dl, dh, int(vq["vit_dec_patch_size"]), crop_size, n, t, self.is_legacy,
                                    num_logits=pixel_codes)
        self.latent_tokens = nn.Parameter(ew ** -0.5 * torch.randn(n, ew))
        self.quantize = Codebook(k, t)
        if self.two_stage:
            conv = MaskGITConvConfig.from_dict(pixel_conf or PIXEL_DECODER_CONF)
            self.pixel_quantize = Codebook(pixel_codes, conv.z_channels)
            self.pixel_decoder = MaskGITDecoder(conv)
        self.layout = TokenLayout.sequence(n)
        self.info = info.with_updates(resolution=crop_size, value_range="[0,1]", vocab_size=k, tokens_per_image=n,
                                      quantizer="vq")

    def effective_codes(self) -> torch.Tensor:
        """The code vectors the model assigns with and decodes from (l2-normalised for L/B/S)."""
        w = self.quantize.weight
        return F.normalize(w, dim=-1) if self.use_l2_norm else w

    @property
    def token_spaces(self) -> list[CodebookSpace]:  # type: ignore[override]
        metric = "cosine" if self.use_l2_norm else "l2"
        return [CodebookSpace(self.quantize.weight.shape[0], codes=self.effective_codes().detach(), metric=metric)]

    def _encode(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        check_resolution(x, self.info)
        z = self.encoder(x, self.latent_tokens).float()  # B N D (upstream quantises in float32)
        q = F.normalize(z, dim=-1) if self.use_l2_norm else z
        ids = l2_nearest(q.reshape(-1, q.shape[-1]), self.effective_codes().float()).view(z.shape[:2])
        return [ids], [z]

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        """Two-stage models: the ViT decoder's logits over the 1024 MaskGIT codes, (B, 1024, g, g)."""
        return self.decoder(self.effective_codes()[ids])

    @torch.no_grad()
    def decode_raw(self, tokens: Tokens) -> torch.Tensor:
        self.check_tokens(tokens)
        ids = tokens.ids[0].to(self.quantize.weight.device)
        out = self.decoder(self.effective_codes()[ids])
        if not self.two_stage:
            return out
        mix = torch.einsum("nchw,cd->ndhw", out.softmax(1), self.pixel_quantize.weight.to(out.dtype))
        return self.pixel_decoder(mix)


# ----------------------------------------------------------------------------------------------------------------------
def _model_config(config: Mapping[str, Any]) -> dict:
    """The nested TiTok config (HF config.json / yaml layout) from either format."""
    kw = config.get("constructor_kwargs", {})
    inner = kw.get("config", config)
    if "model" not in inner or "vq_model" not in inner["model"]:
        raise ValueError("TiTok config needs model.vq_model.* (the HF repo's config.json or a fixture config.json)")
    return inner


def build_for(family: str):
    def build(config: dict) -> TiTokTokenizer:
        inner = _model_config(config)
        vq = dict(inner["model"]["vq_model"])
        crop = int(inner.get("dataset", {}).get("preprocessing", {}).get("crop_size", 256))
        sizes = dict(VIT_SIZES)
        for name, s in config.get("fixture_only_model_sizes", {}).items():  # reduced test models
            sizes[name] = (int(s["width"]), int(s["num_layers"]), int(s["num_heads"]))
        pixel = config.get("derived", {}).get("pixel_stage", {})
        pixel_conf = pixel.get("pixel_decoder_conf")
        pixel_codes = int(pixel.get("pixel_quantize", {}).get("num_embeddings", PIXEL_CODES))
        two = bool(vq.get("finetune_decoder", True))
        info = TokenizerInfo(
            family=family, crop="adm", paper=PAPER, code_license="Apache-2.0 (bytedance/1d-tokenizer)",
            weights_license="Apache-2.0 (the README says the models are for research purposes)",
            notes=("two-stage: ViT decoder → logits over 1024 MaskGIT-VQ codes → softmax mix → MaskGIT pixel decoder; "
                   if two else "single-stage: ViT decoder predicts pixels; ")
            + f"{'cosine (l2-normalised codes)' if vq.get('use_l2_norm') else 'L2'} assignment; input [0,1], "
              "decode unclamped; 1-D tokens without spatial meaning",
        )
        return TiTokTokenizer(vq, crop, sizes, pixel_conf, pixel_codes, info)

    return build


def checkpoint_filter(raw: Any, config: dict) -> dict[str, torch.Tensor]:
    """`model.safetensors` (HF) and `tokenizer_titok_*.bin` are the flat `TiTok.state_dict()`: nothing to rename."""
    sd = unwrap_state_dict(raw)
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def read_weights(path: Path, config: dict, trust_checkpoint: bool) -> Any:
    """A Hugging Face snapshot folder: check that its config.json describes the model we built, then read
    `model.safetensors`. A single file is read as is."""
    path = Path(path)
    if path.is_dir() and (path / "config.json").exists():
        theirs = json.loads((path / "config.json").read_text())
        check_same_architecture(theirs, config, where=str(path / "config.json"))
    return read_checkpoint(path, trust_checkpoint=trust_checkpoint)


def check_same_architecture(theirs: Mapping, ours: Mapping, where: str) -> None:
    a = _model_config(theirs)
    b = _model_config(ours)
    va, vb = a["model"]["vq_model"], b["model"]["vq_model"]
    defaults = {"is_legacy": True, "quantize_mode": "vq", "finetune_decoder": True}
    diff = [f"{k}: {va.get(k, defaults.get(k))!r} there, {vb.get(k, defaults.get(k))!r} here" for k in ARCH_KEYS
            if va.get(k, defaults.get(k)) != vb.get(k, defaults.get(k))]
    ca = a.get("dataset", {}).get("preprocessing", {}).get("crop_size", 256)
    cb = b.get("dataset", {}).get("preprocessing", {}).get("crop_size", 256)
    if ca != cb:
        diff.append(f"crop_size: {ca!r} there, {cb!r} here")
    if diff:
        raise CheckpointMismatchError(f"{where} describes a different TiTok model than the one built ("
                                      + "; ".join(diff) + "): use the matching preset, or pass that config.json "
                                      "as upstream_config")


register_family(Family("titok", build_for("titok"), checkpoint_filter, read_weights=read_weights,
                       description="TiTok L/B/S: 1-D tokens, 4096 x 12 cosine VQ, two-stage MaskGIT pixel decoder"))
register_family(Family("titok_vq8k", build_for("titok_vq8k"), checkpoint_filter, read_weights=read_weights,
                       description="TiTok BL/SL VQ-8k: 1-D tokens, 8192 x 64 L2 VQ, single-stage pixel decoder"))


# ----------------------------------------------------------------------------------------------------------------------
def _official(enc: str, dec: str, n: int, vq8k: bool) -> dict:
    vq = {"codebook_size": 8192 if vq8k else 4096, "token_size": 64 if vq8k else 12, "use_l2_norm": not vq8k,
          "commitment_cost": 0.25, "vit_enc_model_size": enc, "vit_dec_model_size": dec, "vit_enc_patch_size": 16,
          "vit_dec_patch_size": 16, "num_latent_tokens": n, "finetune_decoder": not vq8k}
    if vq8k:
        vq["is_legacy"] = False
    return {"class": "modeling.titok.TiTok",
            "constructor_kwargs": {"config": {"model": {"vq_model": vq}, "dataset": {"preprocessing": {"crop_size": 256}}}}}


def _cached_repo_config(spec: str) -> dict | None:
    """The repo's config.json when it is already on this machine (weights folder or Hub cache); never downloads."""
    repo_id, _, revision = parse_hf_spec(spec)
    local = weights_dir() / repo_id.replace("/", "--") / "config.json"
    if local.exists():
        return json.loads(local.read_text())
    try:
        import huggingface_hub as hf

        path = hf.try_to_load_from_cache(repo_id, "config.json", revision=revision)
    except Exception:  # noqa: BLE001 - no cache is the common case
        return None
    return json.loads(Path(path).read_text()) if isinstance(path, str) else None


def _preset_config(spec: str, fallback: dict):
    def get() -> dict:
        cfg = copy.deepcopy(fallback)
        theirs = _cached_repo_config(spec)
        if theirs is not None:
            check_same_architecture(theirs, fallback, where=f"config.json of {spec}")
            cfg["constructor_kwargs"]["config"] = theirs
            log.info("%s: using the repo's config.json found on this machine", spec)
        return cfg

    return get


_PRESETS = [
    # name, family, repo, enc, dec, tokens, vq8k, published rFID (1d-tokenizer evaluator, ImageNet val 50k)
    ("titok-l32", "titok", "yucornetto/tokenizer_titok_l32_imagenet", "large", "large", 32, False, 2.21),
    ("titok-b64", "titok", "yucornetto/tokenizer_titok_b64_imagenet", "base", "base", 64, False, 1.70),
    ("titok-s128", "titok", "yucornetto/tokenizer_titok_s128_imagenet", "small", "small", 128, False, 1.71),
    ("titok-bl64-vq8k", "titok_vq8k", "yucornetto/tokenizer_titok_bl64_vq8k_imagenet", "base", "large", 64, True, 2.06),
    ("titok-bl128-vq8k", "titok_vq8k", "yucornetto/tokenizer_titok_bl128_vq8k_imagenet", "base", "large", 128, True,
     1.49),
    ("titok-sl256-vq8k", "titok_vq8k", "yucornetto/tokenizer_titok_sl256_vq8k_imagenet", "small", "large", 256, True,
     1.03),
]

for _name, _family, _repo, _enc, _dec, _n, _vq8k, _rfid in _PRESETS:
    _spec = f"hf://{_repo}"
    register_preset(Preset(
        name=_name, family=_family, config=_preset_config(_spec, _official(_enc, _dec, _n, _vq8k)), weights=_spec,
        manual_url=f"https://huggingface.co/{_repo}",
        info={"weight_source": _spec,
              "notes": f"published rFID {_rfid} (1d-tokenizer evaluator, ImageNet val 50k); "
                       + ("single-stage VQ-8k, L2" if _vq8k else "two-stage (MaskGIT pixel decoder), cosine")
                       + "; input [0,1], decode unclamped"},
        description=f"TiTok {_name[6:].upper()}: {_n} 1-D tokens, "
                    + ("8192 x 64 VQ (L2)" if _vq8k else "4096 x 12 VQ (cosine)"),
    ))
