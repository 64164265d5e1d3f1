"""Spatial clustering statistics: spatial variance on hand-made maps, class-mean maps, Welch tests."""

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats
from torch import nn

from wiringlab.analysis.clustering import (center_over_classes, class_mean_maps, class_variances, compare_over_images,
                                           grid_cells, module_io, spatial_variance, to_grid, welch_t_test)


@pytest.mark.parametrize("n,unit", [(9, 0), (9, 4), (100, 37), (84, 83), (1, 0)])
def test_single_hot_pixel_has_variance_zero(n, unit):
    a = torch.zeros(n)
    a[unit] = 2.5
    assert spatial_variance(a) == 0.0


@pytest.mark.parametrize("k", [2, 3, 10])
def test_uniform_map_has_the_discrete_uniform_variance(k):
    assert spatial_variance(torch.ones(k * k)).item() == pytest.approx((k * k - 1) / 6)


def test_spread_map_has_more_variance_than_a_blob():
    hot, blob, spread = torch.zeros(100), torch.zeros(100), torch.zeros(100)
    hot[44] = 1.0
    blob[[44, 45, 54, 55]] = 1.0  # a 2x2 blob: each cell 1/√2 from the centroid → V = 0.5
    spread[[0, 9, 90, 99]] = 1.0  # the four corners
    v = spatial_variance(torch.stack([hot, blob, spread]))
    assert v[0] == 0 and v[1].item() == pytest.approx(0.5) and v[2].item() == pytest.approx(2 * 4.5**2)


def test_mass_is_the_positive_part_or_abs_and_no_mass_is_nan():
    a = torch.tensor([1.0, 0.0, 0.0, -1.0])  # 2x2 grid; the negative unit is ignored by "positive"
    assert spatial_variance(a) == 0.0
    assert spatial_variance(a, mass="abs").item() == pytest.approx(0.5)  # cells (0,0), (1,1): ±(0.5, 0.5)
    assert math.isnan(spatial_variance(-torch.ones(4)).item())
    with pytest.raises(ValueError, match="positive, abs"):
        spatial_variance(a, mass="square")


def _blob_activations(n_per_class=20, classes=3, n=25, seed=0):
    """Each class lights a different cell neighbourhood of a 5x5 grid, plus noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    acts = torch.rand(len(labels), n, generator=g) * 0.1
    for c, centre in enumerate([6, 12, 18][:classes]):
        acts[labels == c, centre] += 1.0
    return acts, labels


def test_permuting_grid_positions_changes_variance_permuting_classes_does_not():
    acts, labels = _blob_activations()
    base = class_variances(acts, labels, 3)
    perm_units = torch.randperm(25, generator=torch.Generator().manual_seed(1))
    moved = class_variances(acts[:, perm_units], labels, 3)
    assert not torch.allclose(moved, base)  # the same values at other places: other dispersion
    relabel = torch.tensor([2, 0, 1])
    relabelled = class_variances(acts, relabel[labels], 3)
    torch.testing.assert_close(relabelled[relabel], base)  # each class keeps its variance
    assert relabelled.nanmean().item() == pytest.approx(base.nanmean().item())  # overall unchanged
    centred = class_variances(acts, labels, 3, centered=True)
    torch.testing.assert_close(class_variances(acts, relabel[labels], 3, centered=True)[relabel], centred)


def test_class_mean_maps_match_a_loop_and_center_over_classes():
    acts, labels = _blob_activations()
    means = class_mean_maps(acts, labels, 4)  # class 3 has no images
    for c in range(3):
        torch.testing.assert_close(means[c], acts[labels == c].double().mean(0))
    assert torch.isnan(means[3]).all()
    centred = center_over_classes(means)
    torch.testing.assert_close(centred[:3].sum(0), torch.zeros(25, dtype=torch.float64))


def test_grid_cells_and_to_grid_use_the_most_square_grid():
    assert grid_cells(10).tolist()[-1] == [2.0, 1.0]  # 10 units: 3x4 grid, unit 9 at row 2, col 1
    grid = to_grid(torch.arange(10.0))
    assert grid.shape == (3, 4) and grid[2, 1] == 9 and torch.isnan(grid[2, 2:]).all()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=30), st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=30))
def test_welch_matches_scipy(a, b):
    ours = welch_t_test(a, b)
    x, y = np.asarray(a), np.asarray(b)
    assume(np.ptp(x) + np.ptp(y) == 0 or np.ptp(x) + np.ptp(y) > 1e-3)  # no catastrophic cancellation
    if x.var() == 0 and y.var() == 0:
        assert math.isnan(ours.statistic) and math.isnan(ours.p)
        return
    ref = stats.ttest_ind(x, y, equal_var=False)
    assert ours.statistic == pytest.approx(ref.statistic, rel=1e-9, abs=1e-12)
    assert ours.p == pytest.approx(ref.pvalue, rel=1e-7, abs=1e-12)
    assert ours.df == pytest.approx(ref.df, rel=1e-9)


def test_welch_of_constant_samples_is_undefined_and_one_constant_side_is_exact():
    both = welch_t_test([0.1] * 3, [0.11] * 5)  # numpy's mean of [0.1] * 3 is 0.10000000000000002
    assert math.isnan(both.statistic) and math.isnan(both.p)
    one = welch_t_test([0.1] * 3, [0.1, 0.2, 0.3])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's "precision loss" on the constant side
        ref = stats.ttest_ind([0.1] * 3, [0.1, 0.2, 0.3], equal_var=False)
    assert one.statistic == pytest.approx(ref.statistic) and one.p == pytest.approx(ref.pvalue)


def test_welch_needs_two_finite_values_per_side():
    result = welch_t_test([1.0, float("nan")], [1.0, 2.0, 3.0])
    assert result.n_a == 1 and math.isnan(result.p) and result.mean_b == 2.0


def test_comparison_names_the_class_that_drives_the_difference():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(4).repeat_interleave(50)
    control = 10 + torch.randn(200, generator=g, dtype=torch.float64)
    treated = 10 + torch.randn(200, generator=g, dtype=torch.float64)
    treated[labels == 3] -= 3.0  # only class 3 is more clustered in the treatment
    result = compare_over_images(treated, labels, control, labels, 4)
    assert result.overall.statistic < 0 and result.overall.p < 1e-3 and result.driver == 3
    assert result.per_class[3].p < 1e-10 and result.overall.n_a == 200


def test_module_io_returns_what_the_block_sees_in_eval_mode():
    block = nn.Sequential(nn.Linear(6, 4), nn.BatchNorm1d(4), nn.ReLU())
    model = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), block, nn.Linear(4, 2)).train()
    x = torch.randn(9, 5)
    inputs, outputs = module_io(model, block, x, batch_size=4)
    assert model.training and block[1].training  # mode restored
    model.eval()
    torch.testing.assert_close(inputs, torch.tanh(model[0](x)))
    torch.testing.assert_close(outputs, block(inputs))  # running statistics, not batch statistics
    assert inputs.shape == (9, 6) and outputs.shape == (9, 4)
