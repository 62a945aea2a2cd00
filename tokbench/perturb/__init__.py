"""Latent perturbation for pFID: re-draw a share α of the tokens among their δ nearest neighbours (RobustTok), for
every token space (codebook, binary/LFQ, FSQ) and layout (grid, sequence, multi-scale, sub-codebooks)."""

from .engine import (PerturbResult, PerturbSetting, Perturber, expected_change_rate, neighbourhood_radius,
                     select_replacements)
from .neighbours import code_neighbour_table, feature_candidates

__all__ = ["PerturbResult", "PerturbSetting", "Perturber", "expected_change_rate", "neighbourhood_radius",
           "select_replacements", "code_neighbour_table", "feature_candidates"]
