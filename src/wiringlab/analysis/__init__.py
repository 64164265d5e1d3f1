"""Analyses: tensors and numbers in, numbers and arrays out; no I/O, no global state."""

from .permutation import (
    PermutationSensitivity, chain_unit_extras, chain_weights, hidden_representations,
    permutation_sensitivity, permute_hidden_units_, unit_chain, chain_layers,
)
from .similarity import WeightSimilarity, flat_cosine, linear_cka, match_weights, permute_chain, weight_similarity
from .weight_matching import matching_objective, rebasin_weights
from .symmetry import OverlapStats, cosine_histogram, cosine_trajectories, overlap_stats, pairwise_cosines

__all__ = [
    "PermutationSensitivity", "chain_unit_extras", "chain_weights", "hidden_representations",
    "permutation_sensitivity", "permute_hidden_units_", "unit_chain", "chain_layers",
    "WeightSimilarity", "flat_cosine", "linear_cka", "match_weights", "permute_chain", "weight_similarity",
    "matching_objective", "rebasin_weights",
    "OverlapStats", "cosine_histogram", "cosine_trajectories", "overlap_stats", "pairwise_cosines",
]
