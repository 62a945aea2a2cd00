"""Reading images into 8-bit RGB and the ADM centre crop.

Every metric in tokbench starts from the same uint8 tensor: the reference image *is* the tokenizer input. Odd files
(grayscale, palette, RGBA, 16-bit) are converted to 8-bit RGB the same way every time; a file that cannot be decoded
raises `BadImageError` naming it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFile

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
CROP_METHODS = ("adm", "none")


class BadImageError(RuntimeError):
    """An image file that cannot be read; `path` names it."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"cannot read image {path}: {reason}")
        self.path = str(path)
        self.reason = reason


def to_rgb8(im: Image.Image) -> Image.Image:
    """Any PIL image → 8-bit RGB.

    - 16-bit / 32-bit integer grayscale (modes I;16*, I) is scaled by 255/65535 with rounding, not clipped;
    - float grayscale (F) is taken as 0..255 and clipped;
    - palette images go through RGBA when they carry transparency, and alpha is dropped (as ADM/LlamaGen's
      `convert("RGB")` does: the colour values are kept, no compositing);
    - everything else uses PIL's own conversion.
    """
    mode = im.mode
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(im, dtype=np.float64)
        arr = np.clip(np.floor(arr * (255.0 / 65535.0) + 0.5), 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if mode == "F":
        arr = np.clip(np.floor(np.asarray(im, dtype=np.float64) + 0.5), 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode != "RGB":
        im = im.convert("RGB")
    return im


def read_image(path: str | Path) -> Image.Image:
    """Decode a file fully into 8-bit RGB, or raise BadImageError (truncated, corrupt, not an image)."""
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with Image.open(path) as im:
            im.load()
            return to_rgb8(im)
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as e:
        raise BadImageError(path, f"{type(e).__name__}: {e}") from e


def center_crop_adm(im: Image.Image, size: int) -> Image.Image:
    """The ADM / LlamaGen `center_crop_arr`: halve with BOX while the short side is ≥ 2·size, resize the short side
    to `size` with BICUBIC (rounded sizes), then centre-crop size × size."""
    while min(*im.size) >= 2 * size:
        im = im.resize(tuple(x // 2 for x in im.size), resample=Image.BOX)
    scale = size / min(*im.size)
    im = im.resize(tuple(round(x * scale) for x in im.size), resample=Image.BICUBIC)
    arr = np.asarray(im)
    top = (arr.shape[0] - size) // 2
    left = (arr.shape[1] - size) // 2
    return Image.fromarray(arr[top : top + size, left : left + size])


def pil_to_uint8(im: Image.Image) -> torch.Tensor:
    """8-bit RGB PIL image → uint8 3 × H × W tensor."""
    arr = np.asarray(im, dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an RGB image, got array of shape {arr.shape}")
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def prepare(im: Image.Image, resolution: int | None, crop: str = "adm") -> torch.Tensor:
    """Crop/resize to the tokenizer's resolution and return uint8 3×H×W. `crop="none"` keeps the image as it is."""
    if crop not in CROP_METHODS:
        raise ValueError(f"unknown crop {crop!r}; known: {CROP_METHODS}")
    if resolution is not None and crop == "adm":
        im = center_crop_adm(im, resolution)
    return pil_to_uint8(im)


def to_uint8(x01: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] → uint8 by round-half-up after clamping: floor(255·x + 0.5). For [−1, 1] models this
    equals LlamaGen's clamp(127.5·x + 128) truncated. NaNs are an error, never silently mapped."""
    if torch.isnan(x01).any():
        raise FloatingPointError("NaN in decoded images")
    return torch.floor(x01.clamp(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8)
