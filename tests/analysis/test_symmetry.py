"""Within-network symmetry: pairwise cosines against a slow loop, overlaps, histograms."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from wiringlab.analysis.symmetry import (cosine_histogram, cosine_matrix, cosine_trajectories, overlap_stats,
                                         pair_indices, pairwise_cosines)


def _slow_pairwise(weight: torch.Tensor) -> list[float]:
    rows = [w.double().flatten() for w in weight]
    out = []
    for i in range(len(rows)):
        for j in range(i + 1, len(rows)):
            a, b = rows[i], rows[j]
            denominator = math.sqrt(float(a @ a)) * math.sqrt(float(b @ b))
            out.append(float(a @ b) / denominator if denominator else 0.0)
    return out


@pytest.mark.parametrize("shape", [(7, 5), (12, 30), (6, 3, 3, 3), (2, 9)])
def test_pairwise_cosines_match_slow_loop(shape):
    weight = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    weight[1] = 0.0  # a dead unit: cosine 0 with everyone
    fast = pairwise_cosines(weight)
    assert fast.shape == (shape[0] * (shape[0] - 1) // 2,)
    assert fast.tolist() == pytest.approx(_slow_pairwise(weight), abs=1e-12)


def test_pair_order_and_matrix_agree():
    weight = torch.randn(5, 4, generator=torch.Generator().manual_seed(2))
    rows, cols = pair_indices(5)
    assert (rows < cols).all() and len(rows) == 10
    assert torch.equal(cosine_matrix(weight)[rows, cols], pairwise_cosines(weight))


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_two_identical_units_overlap_exactly(sign):
    weight = torch.randn(6, 20, generator=torch.Generator().manual_seed(3))
    weight[4] = sign * 2.5 * weight[2]  # same direction (or opposite): an overlap whatever the scale
    stats = overlap_stats(pairwise_cosines(weight), threshold=0.95)
    assert stats.max_abs_cos == pytest.approx(1.0, abs=1e-12)
    assert stats.n_overlaps == 1 and stats.share == pytest.approx(1 / 15)
    assert cosine_matrix(weight)[2, 4] == pytest.approx(sign, abs=1e-12)


def test_overlap_counts_strictly_above_threshold():
    cosines = torch.tensor([0.1, -0.96, 0.95, 0.97, -0.2], dtype=torch.float64)
    stats = overlap_stats(cosines, threshold=0.95)
    assert (stats.n_pairs, stats.n_overlaps) == (5, 2)
    assert stats.max_abs_cos == pytest.approx(0.97) and stats.mean_abs_cos == pytest.approx(3.18 / 5)
    assert overlap_stats(cosines, threshold=0.5).n_overlaps == 3
    assert math.isnan(overlap_stats(torch.zeros(0), 0.9).share)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        overlap_stats(cosines, threshold=1.5)


def test_threshold_one_counts_duplicates_up_to_rounding():
    """No cosine exceeds 1, and duplicates miss it by a few ulps: at 1, "|cos| > 1" would count none."""
    weight = torch.randn(6, 50, generator=torch.Generator().manual_seed(0))
    weight[1], weight[3], weight[5] = weight[0], 3 * weight[2], -0.7 * weight[4]
    cosines = pairwise_cosines(weight)
    assert overlap_stats(cosines, threshold=1.0).n_overlaps == 3


def test_histogram_counts_every_pair():
    cosines = pairwise_cosines(torch.randn(30, 4, generator=torch.Generator().manual_seed(4)))
    counts, edges = cosine_histogram(cosines, bins=10)
    assert int(counts.sum()) == len(cosines) and len(edges) == 11
    assert edges[0] == -1 and edges[-1] == 1


def test_trajectories_rows_are_snapshots():
    snapshots = [torch.randn(8, 5, generator=torch.Generator().manual_seed(s)) for s in range(3)]
    trajectories = cosine_trajectories(snapshots)
    assert trajectories.shape == (3, 28)
    assert torch.equal(trajectories[2], pairwise_cosines(snapshots[2]))
    with pytest.raises(ValueError, match="same number of units"):
        cosine_trajectories([torch.randn(8, 5), torch.randn(9, 5)])
    with pytest.raises(ValueError, match="out, in"):
        pairwise_cosines(torch.randn(5))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), units=st.integers(2, 12), fan_in=st.integers(1, 10))
def test_cosines_ignore_row_scale_and_permute_with_units(seed, units, fan_in):
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(units, fan_in, generator=g, dtype=torch.float64)
    scales = torch.rand(units, 1, generator=g, dtype=torch.float64) * 10 + 0.1
    perm = torch.randperm(units, generator=g)
    base = cosine_matrix(weight)
    assert torch.allclose(cosine_matrix(weight * scales), base, atol=1e-12)
    assert torch.allclose(cosine_matrix(weight[perm]), base[perm][:, perm], atol=1e-12)


def test_relative_sparsity_of_a_diverged_tensor_is_nan_not_zero():
    from wiringlab.analysis.sparsity import count_relative_below, relative_sparsity

    assert relative_sparsity(torch.tensor([0.0, 0.0, 0.0, 1.0])) == 0.75
    for bad in (float("nan"), float("inf")):
        assert math.isnan(relative_sparsity(torch.tensor([0.0, 0.0, 0.0, 1.0, bad])))
        below, total = count_relative_below(torch.tensor([0.0, bad]), 0.01)
        assert math.isnan(below) and total == 2
