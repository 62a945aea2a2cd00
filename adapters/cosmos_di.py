"""NVIDIA Cosmos-0.1 discrete image tokenizers (DI8x8, DI16x16): FSQ (8,8,8,5,5,5) = 64,000 ids on a grid.

The official weights exist only as TorchScript (`encoder.jit`, `decoder.jit` in the HF repo). Two ways to run them:
- **jit** (default when the weights are a folder with the .jit files): run the files themselves. Each runs in the
  dtype of its own parameters (the official ones are most likely bf16 graphs); we never `.to(dtype)` them, because
  the dtype is baked into the traced graph. The TensorExpr fuser is disabled around each call, as upstream does.
- **torch**: our rebuild `_nn.cosmos.DiscreteImageNet` (official key names), float32. It loads any of: the
  JIT files' state dicts (minus upstream's non-persistent buffers), a plain state dict (the fixture's
  `weights.safetensors`). `upstream_config["runtime"] = "torch"` forces it even when .jit files are given.
In both cases the .jit state dict is loaded strictly into the rebuild, so the key layout is always checked.
Input [-1,1] = 2·(u8/255)−1 in float64, cast straight to the compute dtype (upstream `numpy2tensor`).
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Any

import torch

from tokbench.api import FSQSpace, TokenLayout, Tokenizer, TokenizerInfo, Tokens, TokenSpace
from tokbench.registry import Family, Preset, register_family, register_preset
from tokbench.weights import WeightsNotFoundError, read_checkpoint, unwrap_state_dict
from tokbench_adapters._nn.cosmos import DiscreteImageNet

PAPER = "NVIDIA, Cosmos World Foundation Model Platform for Physical AI, arXiv:2501.03575 (Cosmos Tokenizer)"
CODE_LICENSE = "Apache-2.0"
WEIGHTS_LICENSE = "NVIDIA Open Model License"
JIT_FILES = ("encoder.jit", "decoder.jit")
# upstream buffers registered with persistent=False: TorchScript's state_dict() returns them anyway
NON_PERSISTENT_PREFIXES = ("quantizer.", "inv_quant.", "encoder.patcher.", "decoder.unpatcher.")

BENCH_PRESETS = ["cosmos-di8x8", "cosmos-di16x16"]

_JIT_CACHE: dict[str, tuple[torch.jit.ScriptModule, torch.jit.ScriptModule]] = {}


@contextlib.contextmanager
def texpr_fuser_disabled():
    """Upstream turns the TensorExpr fuser off for reproducible consecutive calls (pytorch#74534)."""
    prev = torch._C._jit_texpr_fuser_enabled()
    torch._C._jit_set_texpr_fuser_enabled(False)
    try:
        yield
    finally:
        torch._C._jit_set_texpr_fuser_enabled(prev)


def jit_folder(path: str | Path) -> Path | None:
    """The folder holding encoder.jit and decoder.jit when `path` is it (or one of the two files), else None."""
    p = Path(path)
    folder = p.parent if p.is_file() and p.name in JIT_FILES else p
    if folder.is_dir() and all((folder / f).is_file() for f in JIT_FILES):
        return folder
    return None


def load_jit_pair(folder: str | Path, *, keep: bool = False) -> tuple[torch.jit.ScriptModule, torch.jit.ScriptModule]:
    """torch.jit.load both files on the CPU; their dtypes stay as stored. `keep=True` (read_weights) parks them so
    that the tokenizer that loads the same folder next takes them instead of reading the files again."""
    key = str(Path(folder).resolve())
    if key in _JIT_CACHE:
        return _JIT_CACHE[key] if keep else _JIT_CACHE.pop(key)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)  # "TorchScript is deprecated"
        mods = tuple(torch.jit.load(str(Path(key) / f), map_location="cpu").eval() for f in JIT_FILES)
    if keep:
        _JIT_CACHE[key] = mods  # type: ignore[assignment]
    return mods  # type: ignore[return-value]


def _param_dtype(module: torch.nn.Module) -> torch.dtype:
    for p in module.parameters():
        return p.dtype
    return torch.float32


class CosmosDITokenizer(Tokenizer):
    """Cosmos-DI; ids B × (H/s) × (W/s), s = spatial_compression (8 or 16)."""

    def __init__(self, config: dict) -> None:
        super().__init__()
        if "constructor_kwargs" not in config:
            raise ValueError("cosmos_di config needs 'constructor_kwargs' (DiscreteImageTokenizer arguments, as in the "
                             "fixture config.json)")
        kw = dict(config["constructor_kwargs"])
        self.runtime_request = config.get("runtime", "auto")
        if self.runtime_request not in ("auto", "jit", "torch"):
            raise ValueError(f"runtime must be 'auto', 'jit' or 'torch', not {self.runtime_request!r}")
        self.net = DiscreteImageNet(**kw)
        resolution = int(config.get("image_size", 256))
        s = int(kw.get("spatial_compression", 16))
        if resolution % s:
            raise ValueError(f"image_size {resolution} is not a multiple of spatial_compression {s}")
        self.compression = s
        side = resolution // s
        self.layout = TokenLayout.grid(side, side)
        self.info = TokenizerInfo(
            family="cosmos_di", resolution=resolution, value_range="[-1,1]", vocab_size=self.fsq.codebook_size,
            tokens_per_image=side * side, quantizer="fsq", paper=PAPER, code_license=CODE_LICENSE,
            weights_license=WEIGHTS_LICENSE,
            notes=f"FSQ levels {list(self.fsq.levels)}, id = sum_d digit_d * basis_d (dim 0 least significant); "
                  "upstream's wrapper runs bf16 and pads to multiples of 16",
        )
        self._jit: tuple | None = None  # plain attribute: the ScriptModules stay out of state_dict / .to(dtype)

    # --- runtime ------------------------------------------------------------------------------------------------
    def attach_jit(self, folder: str | Path) -> "CosmosDITokenizer":
        """Run the TorchScript files of `folder` (encoder.jit, decoder.jit) instead of the rebuild."""
        found = jit_folder(folder)
        if found is None:
            raise WeightsNotFoundError(f"{folder} does not hold both {' and '.join(JIT_FILES)}")
        self.__dict__["_jit"] = load_jit_pair(found)
        return self

    @property
    def runtime(self) -> str:
        """'jit' when TorchScript files are attached (or come with the loaded weights) and not overridden."""
        if self.runtime_request == "torch":
            return "torch"
        if self._jit is None:
            w = getattr(self, "weights", None)  # set by load_tokenizer
            folder = jit_folder(w.path) if w is not None else None
            if folder is not None:
                self.attach_jit(folder)
            elif self.runtime_request == "jit":
                raise RuntimeError("runtime='jit' but no encoder.jit/decoder.jit were loaded: pass the folder as weights "
                                   "or call attach_jit(folder)")
        return "jit" if self._jit is not None else "torch"

    def _jit_modules(self) -> tuple[torch.jit.ScriptModule, torch.jit.ScriptModule]:
        enc, dec = self._jit  # type: ignore[misc]
        for m in (enc, dec):  # follow the tokenizer's device; never its dtype
            for p in m.parameters():
                if p.device != self.device:
                    m.to(self.device)
                break
        return enc, dec

    @property
    def fsq(self):
        return self.net.quantizer

    @property
    def token_spaces(self) -> list[TokenSpace]:  # type: ignore[override]
        return [FSQSpace(self.fsq.codebook_size, levels=self.fsq.levels)]

    @property
    def compute_dtype(self) -> torch.dtype:
        if self.runtime == "jit":
            return _param_dtype(self._jit[0])  # type: ignore[index]
        return _param_dtype(self.net)

    def to_model_input(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 → 2·(x/255)−1 in float64 → the compute dtype directly (upstream `numpy2tensor`)."""
        self.check_images(images)
        x = images.to(self.device, torch.float64)
        return (2 * (x / 255.0) - 1).to(self.compute_dtype)

    # --- encode / decode ----------------------------------------------------------------------------------------
    def _encode(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
        if tuple(x.shape[-2:]) != (self.info.resolution,) * 2:
            raise ValueError(f"cosmos_di expects {self.info.resolution}x{self.info.resolution} images, got "
                             f"{tuple(x.shape[-2:])} (upstream's encode would silently floor sizes that are not "
                             f"multiples of {self.compression})")
        if self.runtime == "jit":
            enc, _ = self._jit_modules()
            with texpr_fuser_disabled():
                if self.keep_features:  # the same three calls as enc.forward, keeping the FSQ input
                    prequant = enc.quant_conv(enc.encoder(x))
                    ids = enc.quantizer(prequant)[0]
                    feats = [self._continuous_codes(prequant)]
                else:
                    ids = enc(x)[0]
                    feats = None
            return [ids.long()], feats
        ids, _, cont = self.net.encode(x)
        return [ids], [cont]

    def _continuous_codes(self, prequant: torch.Tensor) -> torch.Tensor:
        """bound(z)/half_width in float32: B × h × w × 6, nearest grid point per dimension = the digit."""
        return self.fsq.quantize(prequant.float())[2]

    def decode_raw(self, tokens: Tokens) -> torch.Tensor:
        self.check_tokens(tokens)
        ids = tokens.ids[0].to(self.device)
        if self.runtime == "jit":
            _, dec = self._jit_modules()
            with texpr_fuser_disabled():
                return dec(ids).float()
        return self.net.decode_ids(ids).float()


# ----------------------------------------------------------------------------------------------------------------------
# Weights
# ----------------------------------------------------------------------------------------------------------------------
def read_weights(path: Path, config: dict, trust_checkpoint: bool) -> Any:
    """A folder with encoder.jit + decoder.jit (HF snapshot layout) → their combined state dict; anything else is read
    as an ordinary checkpoint (e.g. a plain state dict in safetensors)."""
    folder = jit_folder(path)
    if folder is not None:
        enc, dec = load_jit_pair(folder, keep=True)
        return {**enc.state_dict(), **dec.state_dict()}
    if Path(path).suffix == ".jit":
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning)
            return dict(torch.jit.load(str(path), map_location="cpu").state_dict())  # e.g. autoencoder.jit
    if Path(path).is_dir():
        raise WeightsNotFoundError(f"folder {path} does not hold both {' and '.join(JIT_FILES)} (the Cosmos-DI files)")
    return read_checkpoint(path, trust_checkpoint=trust_checkpoint)


def checkpoint_filter(raw: Any, config: dict) -> dict[str, torch.Tensor]:
    """JIT/state-dict keys → `CosmosDITokenizer` keys (`net.` prefix); upstream's non-persistent buffers dropped."""
    sd = unwrap_state_dict(raw)
    if any(k.startswith("net.") for k in sd):
        sd = {k[len("net."):]: v for k, v in sd.items() if k.startswith("net.")}
    return {f"net.{k}": v for k, v in sd.items() if not k.startswith(NON_PERSISTENT_PREFIXES)}


register_family(Family("cosmos_di", CosmosDITokenizer, checkpoint_filter, read_weights,
                       description="NVIDIA Cosmos-0.1 discrete image tokenizers (TorchScript or rebuilt network)"))


def _official_kwargs(spatial_compression: int) -> dict:
    return {"attn_resolutions": [32], "channels": 128, "channels_mult": [2, 4, 4], "dropout": 0.0, "in_channels": 3,
            "spatial_compression": spatial_compression, "num_res_blocks": 2, "out_channels": 3, "resolution": 1024,
            "patch_size": 4, "patch_method": "haar", "z_channels": 256, "z_factor": 1, "quantizer": "FSQ",
            "embedding_dim": 6, "levels": [8, 8, 8, 5, 5, 5], "num_quantizers": 4, "name": "DI",
            "encoder": "Default", "decoder": "Default"}


for _s in (8, 16):
    _repo = f"nvidia/Cosmos-0.1-Tokenizer-DI{_s}x{_s}"
    register_preset(Preset(
        f"cosmos-di{_s}x{_s}", "cosmos_di",
        {"constructor_kwargs": _official_kwargs(_s), "image_size": 256, "input_range": "[-1,1]"},
        weights=f"hf://{_repo}", manual_url=f"https://huggingface.co/{_repo}",
        info={"notes": f"Cosmos-0.1 DI{_s}x{_s}: FSQ (8,8,8,5,5,5) = 64,000 ids, {(256 // _s) ** 2} tokens at 256 px; "
                       "weights = the HF snapshot folder (encoder.jit + decoder.jit, run in their own dtype, most "
                       "likely bf16; licence acceptance on HF may be needed); id = sum_d digit_d * basis_d"},
    ))
