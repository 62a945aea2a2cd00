"""torch-fidelity's FID Inception architecture with no weights file: the target of the fid-helper conversion and of
the random-weight fallback (a module of its own so that neither imports the other)."""

from __future__ import annotations

import os
import tempfile

import torch


def inception_skeleton(features: list[str] | None = None):
    """torch-fidelity's FeatureExtractorInceptionV3 architecture without loading any weights file."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class _Skeleton(FeatureExtractorInceptionV3):
        def load_state_dict(self, *a, **k):  # the architecture only: the caller loads the weights
            return None

    fd, empty = tempfile.mkstemp(suffix=".pth")  # torch-fidelity torch.loads the path before load_state_dict
    os.close(fd)
    try:
        torch.save({}, empty)
        return _Skeleton("inception-v3-compat", features or ["2048"], feature_extractor_weights_path=empty)
    finally:
        os.unlink(empty)
