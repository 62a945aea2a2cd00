"""Feature extractors for FID: uint8 B×3×H×W → float64 B×D, each with a `protocol` dict that goes into results.

The default is torch-fidelity's `FeatureExtractorInceptionV3` (the TF-2015 Inception graph, 2048-d pool features,
TF1-exact bilinear resize to 299). Weights come from `--fid-weights` / `TOKBENCH_FID_WEIGHTS`, else torch-fidelity's
hub cache / download. Offline with no weights, a deterministic random-weight Inception is used with a loud warning
and `random_weights: true` in the protocol, so its numbers can never be mixed with real ones.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Callable

import torch

from ..weights import sha256_file

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


def cache_dir() -> Path:
    return Path(os.environ.get("TOKBENCH_CACHE", Path.home() / ".cache" / "tokbench"))


def offline() -> bool:
    """TOKBENCH_OFFLINE or HF_HUB_OFFLINE set: never try a download (it could hang behind a closed network)."""
    return any(os.environ.get(v, "0") not in ("0", "", "false", "False") for v in ("TOKBENCH_OFFLINE", "HF_HUB_OFFLINE"))


def _torch_hub_inception() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE


def random_inception_weights(seed: int = RANDOM_INCEPTION_SEED) -> Path:
    """A deterministic random-weight Inception state dict, written once to the cache.

    PyTorch's default init makes a deep random Inception's features collapse towards zero (every FID reads ~0), so
    conv weights use a scale-preserving He-normal init (fan-in, ReLU gain) and batch norms are identities.
    """
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    path = cache_dir() / "fid" / f"inception-random-he-seed{seed}.pth"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)

    class _Skeleton(FeatureExtractorInceptionV3):
        def load_state_dict(self, *a, **k):  # the architecture only; weights are set below
            return None

    empty = path.with_suffix(".empty")
    torch.save({}, empty)
    try:
        net = _Skeleton("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(empty))
    finally:
        empty.unlink(missing_ok=True)
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
    tmp = path.with_suffix(".tmp")
    torch.save(sd, tmp)
    os.replace(tmp, path)
    return path


def resolve_inception_weights(weights: str | os.PathLike | None = None, *, allow_random: bool = True,
                              allow_download: bool = True) -> tuple[Path, bool]:
    """(path, is_random). Order: explicit path, TOKBENCH_FID_WEIGHTS, torch hub cache, torch-fidelity's download,
    else (offline) the random-weight fallback with a loud warning."""
    if weights is not None:
        p = Path(weights).expanduser()
        if not p.exists():
            raise FileNotFoundError(f"FID weights {p} do not exist")
        return p, False
    env = os.environ.get("TOKBENCH_FID_WEIGHTS")
    if env:
        p = Path(env).expanduser()
        if not p.exists():
            raise FileNotFoundError(f"TOKBENCH_FID_WEIGHTS={env} does not exist")
        return p, False
    hub = _torch_hub_inception()
    if hub.exists():
        return hub, False
    if allow_download and not offline():
        try:
            from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

            torch.hub.load_state_dict_from_url(URL_INCEPTION_V3, progress=False)
            if hub.exists():
                return hub, False
        except Exception as e:  # noqa: BLE001 - offline is an expected state
            log.debug("Inception download failed: %s", e)
    if not allow_random:
        raise FileNotFoundError(
            f"no Inception weights: pass --fid-weights PATH or set TOKBENCH_FID_WEIGHTS to {INCEPTION_FILE} "
            f"(torch-fidelity's release file), or put it at {hub}")
    msg = (f"NO INCEPTION WEIGHTS AVAILABLE (offline?): using a deterministic RANDOM-WEIGHT Inception. FIDs are only "
           f"comparable with other random-weight runs and are flagged in the protocol. For real FIDs pass "
           f"--fid-weights PATH (the file {INCEPTION_FILE}) or put it at {hub}.")
    warnings.warn(msg, stacklevel=2)
    log.warning(msg)
    return random_inception_weights(), True


class InceptionExtractor(FeatureExtractor):
    """torch-fidelity's TF-exact InceptionV3, 2048-d pool_3 features, float64 out."""

    name = "inception-v3-compat"

    def __init__(self, weights: str | os.PathLike | None = None, device: str | torch.device = "cpu", *,
                 allow_random: bool = True, feature: str = "2048"):
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        import torch_fidelity

        path, random = resolve_inception_weights(weights, allow_random=allow_random)
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
            "weights_sha256": sha256_file(path),
            "random_weights": random,
        }

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
