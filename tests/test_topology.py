"""Topology analysis: counts per input unit, radial profile, signed index, uniformity test."""

import math

import pytest
import torch

from wiringlab.analysis.topology import (
    centred_box, connections_per_input, possible_connections_per_count, radial_profile, topology_index,
    topology_summary, uniformity_test,
)
from wiringlab.sparse import random_mask


def _centre_dense_mask(out=64, side=28, seed=0, in_centre=20, in_margin=5):
    """Each output keeps `in_centre` random pixels of the central 14 x 14 and `in_margin`
    of the margin."""
    g = torch.Generator().manual_seed(seed)
    inside = torch.zeros(side, side, dtype=torch.bool)
    inside[7:21, 7:21] = True
    centre, margin = inside.view(-1).nonzero().squeeze(1), (~inside).view(-1).nonzero().squeeze(1)
    mask = torch.zeros(out, side * side, dtype=torch.bool)
    for row in range(out):
        mask[row, centre[torch.randperm(len(centre), generator=g)[:in_centre]]] = True
        mask[row, margin[torch.randperm(len(margin), generator=g)[:in_margin]]] = True
    return mask


def test_index_is_positive_for_centre_dense_and_negative_for_the_inverse():
    mask = _centre_dense_mask()
    dense_centre = connections_per_input(mask, (1, 28, 28))
    complement = connections_per_input(~mask, (1, 28, 28))
    margin_dense = connections_per_input(_centre_dense_mask(in_centre=5, in_margin=60), (1, 28, 28))
    assert topology_index(dense_centre) > 0.5
    assert topology_index(complement) < 0
    assert topology_index(margin_dense) < -0.2
    # exact value: centre 64*20/196 per pixel, margin 64*5/588
    c, m = 64 * 20 / 196, 64 * 5 / 588
    assert topology_index(dense_centre) == pytest.approx((c - m) / (c + m))


@pytest.mark.parametrize("in_shape,density", [((1, 28, 28), 0.1), ((3, 16, 16), 0.1), ((16, 5, 5), 0.3)])
def test_index_of_erdos_renyi_masks_is_near_zero_and_test_is_calibrated(in_shape, density):
    indices, small_p = [], 0
    g = torch.Generator().manual_seed(0)
    fan_out = possible_connections_per_count(64, in_shape)  # channels are summed into each count
    for _ in range(100):
        counts = connections_per_input(random_mask((64, math.prod(in_shape)), density, g), in_shape)
        indices.append(topology_index(counts))
        small_p += uniformity_test(counts, fan_out=fan_out)[1] < 0.05
    assert abs(sum(indices) / len(indices)) < 0.01
    assert 1 <= small_p <= 12  # about 5 of 100 under the null (binomial 1%-99.8% range)


def test_centre_dense_mask_is_not_uniform():
    assert uniformity_test(connections_per_input(_centre_dense_mask(), (28, 28)), fan_out=64)[1] < 1e-12


def test_uncorrected_test_is_conservative_at_high_density():
    mask = random_mask((64, 784), 0.5, torch.Generator().manual_seed(0))
    counts = connections_per_input(mask, (1, 28, 28))
    plain, corrected = uniformity_test(counts), uniformity_test(counts, fan_out=64)
    assert plain[0] == pytest.approx(0.5 * corrected[0])


def test_connections_per_input_layouts():
    mask = torch.zeros(3, 2 * 4 * 5)
    mask[:, 0] = 1  # channel 0, pixel (0, 0)
    mask[0, 20] = 1  # channel 1, pixel (0, 0)
    counts = connections_per_input(mask, (2, 4, 5))
    assert counts.shape == (4, 5) and counts[0, 0] == 4 and counts.sum() == 4
    assert connections_per_input(mask).shape == (40,)
    with pytest.raises(ValueError, match="holds"):
        connections_per_input(mask, (1, 6, 6))


def test_radial_profile_of_centre_dense_map_falls_and_ends_at_the_mean():
    counts = torch.zeros(28, 28, dtype=torch.float64)
    counts[12:16, 12:16] = 1.0
    sides, means = radial_profile(counts)
    assert sides == list(range(2, 29, 2))
    assert means[0] == 1.0 and means[1] == 1.0  # sides 2 and 4 lie inside the blob
    assert torch.all(means[1:] <= means[:-1])
    assert means[-1] == pytest.approx(counts.mean())
    assert radial_profile(torch.ones(5, 5))[0] == [2, 4, 5]


def test_centred_box_and_degenerate_maps():
    assert centred_box((28, 28), (14, 14)) == (slice(7, 21), slice(7, 21))
    assert centred_box((5,), (9,)) == (slice(0, 5),)
    assert topology_index(torch.zeros(28, 28)) == 0.0
    assert topology_index(torch.ones(1, 1)) == 0.0
    line = torch.tensor([0.0, 0.0, 3.0, 3.0, 0.0, 0.0])  # a 1-D layout works too
    assert topology_index(line) == pytest.approx(1.0)
    summary = topology_summary(torch.zeros(4, 4))
    assert summary["topology_index"] == 0.0 and math.isnan(summary["topology_p"])


def test_logger_tests_channel_summed_counts_against_every_possible_connection():
    # A (3, 8, 8) layer's counts per pixel sum 3 inputs: 3 x 32 possible connections each.
    # Against 32 the density looks 3x higher and a uniform mask is rejected (p ~ 1e-10).
    from wiringlab.engine.callbacks import TrainState
    from wiringlab.engine.topology_log import TopologyLogger
    from wiringlab.layers.sparse import SparseLinear

    layer = SparseLinear(192, 32, density=0.1, in_shape=(3, 8, 8))
    logger = TopologyLogger([("linear0", layer)])
    metrics = logger.on_epoch_end(TrainState(layer, None, 1, 1, 0, torch.device("cpu"), None))
    counts = connections_per_input(layer.mask, (3, 8, 8))
    assert metrics["topology_p"] == uniformity_test(counts, fan_out=96)[1]
    assert metrics["topology_p"] != uniformity_test(counts, fan_out=32)[1]


def test_a_centred_box_starts_at_the_floor_of_half_the_margin():
    assert centred_box((5,), (2,)) == (slice(1, 3),)
    assert centred_box((28, 28), (13, 13)) == (slice(7, 20),) * 2


def test_uniformity_test_degrees_of_freedom_and_a_full_layer():
    """Counts (1, 3): χ² = 1 on units - 1 = 1 degree of freedom (p = 0.3173, not 0.6065 on 2);
    a layer with every connection present is exactly uniform."""
    from scipy.stats import chi2

    statistic, p = uniformity_test(torch.tensor([1.0, 3.0]))
    assert statistic == pytest.approx(1.0) and p == pytest.approx(chi2.sf(1.0, 1)) and p == pytest.approx(0.3173, 1e-3)
    assert uniformity_test(torch.full((4,), 10.0), fan_out=10) == (0.0, 1.0)
