"""The FID engine: pluggable feature extractors, streaming float64 statistics, the Fréchet distance in float64,
cached reference statistics and ADM `.npz` references."""

from .extractors import FeatureExtractor, InceptionExtractor, get_extractor, register_extractor
from .reference import compute_stats, load_npz_stats, protocol_hash, reference_stats, save_stats
from .stats import SQRT_METHOD, StatsAccumulator, frechet_distance

__all__ = ["FeatureExtractor", "InceptionExtractor", "get_extractor", "register_extractor", "compute_stats",
           "load_npz_stats", "protocol_hash", "reference_stats", "save_stats", "SQRT_METHOD", "StatsAccumulator",
           "frechet_distance"]
