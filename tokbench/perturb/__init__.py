"""Latent perturbation for pFID: re-draw a share α of the tokens among their δ nearest neighbours (RobustTok), for
every token space (codebook, binary/LFQ, FSQ) and layout (grid, sequence, multi-scale, sub-codebooks)."""

from .engine import (DEFAULT_MODE, PerturbResult, PerturbSetting, Perturber, expected_change_rate, neighbour_rule,
                     neighbour_rules, neighbourhood_radius, rule_summary, select_replacements)
from .neighbours import code_neighbour_table, feature_candidates
from .training import generator_redraw

__all__ = ["DEFAULT_MODE", "neighbour_rule", "neighbour_rules", "rule_summary", "PerturbResult", "PerturbSetting", "Perturber", "expected_change_rate", "neighbourhood_radius",
           "select_replacements", "code_neighbour_table", "feature_candidates", "generator_redraw"]
