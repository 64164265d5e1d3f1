"""Cross-network similarity: weight matching recovers permutations; CKA invariances and guards."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from wiringlab.analysis.similarity import (flat_cosine, linear_cka, match_weights, permute_chain, permute_inputs,
                                           weight_similarity)

SHAPES = [(24, 10), (16, 24), (12, 16), (3, 12)]  # a 10-24-16-12-3 MLP


def _chain(seed: int, shapes=SHAPES) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=g) for shape in shapes]


def _random_perms(seed: int, shapes=SHAPES) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randperm(out, generator=g) for out, *_ in shapes[:-1]]


def test_matching_recovers_a_planted_permutation_exactly():
    weights = _chain(0)
    planted = _random_perms(1)
    shuffled = permute_chain(weights, planted)
    found = match_weights(weights, shuffled)
    for p, q in zip(planted, found):
        assert torch.equal(q, torch.argsort(p))  # undoes the plant
    assert all(torch.equal(a, b) for a, b in zip(permute_chain(shuffled, found), weights))


def test_permuted_copy_aligns_to_one_while_raw_does_not():
    weights = _chain(2)
    copy = permute_chain(weights, _random_perms(3))
    result = weight_similarity(weights, copy)
    assert result.aligned_all == pytest.approx(1.0, abs=1e-9)
    assert all(c == pytest.approx(1.0, abs=1e-9) for c in result.aligned)
    assert abs(result.raw_all) < 0.5 and all(abs(c) < 0.6 for c in result.raw[:3])


def test_extras_break_ties_between_units_with_equal_weights():
    weights = _chain(4, [(4, 3), (2, 4)])
    weights[0][1] = weights[0][0]  # units 0 and 1 differ only in their bias
    bias = torch.tensor([[0.0], [5.0], [1.0], [2.0]])
    perm = torch.tensor([1, 0, 3, 2])
    found = match_weights(weights, permute_chain(weights, [perm]), [bias], [bias[perm]])
    assert torch.equal(found[0], torch.argsort(perm))


def test_permute_inputs_moves_blocks_of_flattened_channels():
    weight = torch.arange(2 * 6, dtype=torch.float32).reshape(2, 6)  # 3 channels x 2 positions
    moved = permute_inputs(weight, torch.tensor([2, 0, 1]))
    assert moved[0].tolist() == [4, 5, 0, 1, 2, 3]
    with pytest.raises(ValueError, match="cannot permute 6 inputs"):
        permute_inputs(weight, torch.arange(4))


def test_flat_cosine_against_numpy_and_guards():
    a, b = _chain(5, [(3, 4), (2, 3)]), _chain(6, [(3, 4), (2, 3)])
    x = np.concatenate([t.numpy().ravel() for t in a]).astype(float)
    y = np.concatenate([t.numpy().ravel() for t in b]).astype(float)
    assert flat_cosine(a, b) == pytest.approx(x @ y / np.linalg.norm(x) / np.linalg.norm(y), abs=1e-12)
    assert math.isnan(flat_cosine(torch.zeros(3), torch.ones(3)))
    with pytest.raises(ValueError, match="shapes differ"):
        flat_cosine(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match="differ in shape"):
        match_weights(_chain(0), _chain(0, [(24, 10), (16, 24), (12, 16), (4, 12)]))


def _reference_cka(x, y) -> float:
    """HSIC with the centring matrix H (Kornblith et al. 2019, eq. 2-3), float64 numpy."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = len(x)
    h = np.eye(n) - np.ones((n, n)) / n
    hsic = lambda k, m: np.trace(k @ h @ m @ h)  # noqa: E731
    kx, ky = x @ x.T, y @ y.T
    return hsic(kx, ky) / math.sqrt(hsic(kx, kx) * hsic(ky, ky))


@pytest.mark.parametrize("n,p,q", [(50, 8, 5), (6, 20, 30), (2, 3, 3)])  # features and n x n Gram paths
def test_cka_matches_the_centring_matrix_reference(n, p, q):
    g = torch.Generator().manual_seed(n)
    x = torch.randn(n, p, generator=g)
    y = x[:, :1] @ torch.randn(1, q, generator=g) + torch.randn(n, q, generator=g)
    assert linear_cka(x, y) == pytest.approx(_reference_cka(x, y), abs=1e-10)


def test_cka_is_one_for_identical_and_invariant_to_rotation_and_scale():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(100, 12, generator=g, dtype=torch.float64)
    y = torch.tanh(x @ torch.randn(12, 9, generator=g, dtype=torch.float64))
    q, _ = torch.linalg.qr(torch.randn(12, 12, generator=g, dtype=torch.float64))
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    base = linear_cka(x, y)
    assert 0.0 < base < 1.0
    assert linear_cka(x @ q, y) == pytest.approx(base, abs=1e-12)
    assert linear_cka(x * 1e-6, y * 3e4) == pytest.approx(base, abs=1e-12)
    assert linear_cka(x @ torch.diag(torch.linspace(0.1, 10, 12, dtype=torch.float64)), y) != pytest.approx(base)


def test_cka_is_finite_for_tiny_batches_and_constant_features():
    g = torch.Generator().manual_seed(8)
    x, y = torch.randn(2, 5, generator=g), torch.randn(2, 4, generator=g)
    # two inputs: both centred Grams are |d|²·[[1, -1], [-1, 1]], so CKA is 1 whatever x and y are
    assert linear_cka(x, y) == pytest.approx(1.0, abs=1e-12)
    assert _reference_cka(x, y) == pytest.approx(1.0, abs=1e-12)
    z = torch.randn(40, 6, generator=g)
    with_constant = torch.cat([z, torch.full((40, 1), 3.7)], dim=1)
    assert linear_cka(with_constant, z) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(torch.full((40, 3), 2.0), z) == 0.0  # a dead layer shares no variance
    assert linear_cka(z[:1], z[:1]) == 0.0
    with pytest.raises(ValueError, match="same inputs"):
        linear_cka(z, z[:5])


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31))
def test_similarity_is_invariant_to_permuting_either_network(seed):
    a, b = _chain(seed), _chain(seed + 1)
    base = weight_similarity(a, b)
    shuffled = permute_chain(b, _random_perms(seed + 2))
    again = weight_similarity(a, shuffled)
    assert again.aligned_all == pytest.approx(base.aligned_all, abs=1e-9)
    assert again.aligned == pytest.approx(base.aligned, abs=1e-9)
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(30, 7, generator=g), torch.randn(30, 5, generator=g)
    assert linear_cka(x[:, torch.randperm(7, generator=g)], y) == pytest.approx(linear_cka(x, y), abs=1e-12)


def test_cka_of_dead_layers_whose_constant_is_not_exact_in_binary_is_zero():
    """0.1 and 1/3 have no exact binary mean: rounding leaves centred values of ~1e-17 that
    must not count as variance (else two dead layers read as identical, CKA 1)."""
    from wiringlab.analysis.similarity import linear_cka

    x, y = torch.full((40, 3), 0.1, dtype=torch.float64), torch.full((40, 2), 1 / 3, dtype=torch.float64)
    assert linear_cka(x, y) == 0.0
    assert linear_cka(x.float(), y.float()) == 0.0


def test_weights_of_a_diverged_run_are_refused_by_name():
    a = [torch.randn(4, 3), torch.randn(2, 4)]
    b = [a[0].clone(), a[1].clone()]
    b[0][1, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        match_weights(a, b)
