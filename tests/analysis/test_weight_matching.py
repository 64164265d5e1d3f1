"""Full weight matching (coordinate descent): against brute force, the forward pass and planted shuffles."""

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from wiringlab.analysis.similarity import flat_cosine, match_weights, permute_chain
from wiringlab.analysis.weight_matching import matching_objective, rebasin_weights

SHAPES = [(24, 10), (16, 24), (12, 16), (3, 12)]  # a 10-24-16-12-3 MLP
CONV = [(6, 3, 3, 3), (5, 6, 3, 3), (4, 5 * 4), (2, 4)]  # conv, conv, linear on a flattened 5×2×2 map, classifier


def _chain(seed: int, shapes=SHAPES) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=g, dtype=torch.float64) for shape in shapes]


def _perms(seed: int, shapes=SHAPES) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randperm(out, generator=g) for out, *_ in shapes[:-1]]


def _noisy_copy(weights, seed: int, noise: float, shapes=SHAPES):
    g = torch.Generator().manual_seed(seed + 100)
    noisy = [w + noise * torch.randn(w.shape, generator=g, dtype=w.dtype) for w in weights]
    return permute_chain(noisy, _perms(seed, shapes))


def test_the_objective_is_the_inner_product_of_a_with_the_permuted_chain():
    a, b, perms = _chain(0), _chain(1), _perms(2)
    direct = sum(float((x * y).sum()) for x, y in zip(a, permute_chain(b, perms)))
    assert matching_objective(a, b, perms) == pytest.approx(direct, rel=1e-12)
    ea, eb = [torch.randn(n, 2, dtype=torch.float64) for n in (24, 16, 12)], [torch.randn(n, 2, dtype=torch.float64)
                                                                           for n in (24, 16, 12)]
    extra = sum(float((x * y[p]).sum()) for x, y, p in zip(ea, eb, perms))
    assert matching_objective(a, b, perms, ea, eb) == pytest.approx(direct + extra, rel=1e-12)


@pytest.mark.parametrize("shapes", [SHAPES, CONV], ids=["mlp", "conv-then-flattened-linear"])
def test_a_planted_permutation_is_undone(shapes):
    weights = _chain(3, shapes)
    planted = _perms(4, shapes)
    found = rebasin_weights(weights, permute_chain(weights, planted))
    assert all(torch.equal(q, torch.argsort(p)) for p, q in zip(planted, found))


@pytest.mark.parametrize("seed", range(4))
def test_without_extras_never_less_aligned_than_the_forward_pass(seed):
    """J is then the aligned inner product, so the aligned cosine follows it. (With extras, J
    counts them too: a step may gain on biases and lose on weights.)"""
    a = _chain(10 + seed)
    b = _noisy_copy(a, seed, noise=1.2)  # noisy enough that the forward pass mismatches units
    forward, full = match_weights(a, b), rebasin_weights(a, b)
    assert matching_objective(a, b, full) >= matching_objective(a, b, forward) - 1e-9
    assert flat_cosine(a, permute_chain(b, full)) >= flat_cosine(a, permute_chain(b, forward)) - 1e-12


def test_with_noise_it_recovers_more_planted_units_than_the_forward_pass():
    recovered = {"forward": 0, "full": 0}
    for seed in range(6):
        a = _chain(20 + seed)
        b = _noisy_copy(a, seed, noise=1.2)
        truth = [torch.argsort(p) for p in _perms(seed)]
        for name, perms in (("forward", match_weights(a, b)), ("full", rebasin_weights(a, b))):
            recovered[name] += sum(int((p == t).sum()) for p, t in zip(perms, truth))
    assert recovered["full"] > recovered["forward"]


def _brute_layer_optimum(a, b, perms, index) -> float:
    """The best J over every permutation of layer `index`, the others fixed (brute force)."""
    best = -float("inf")
    for candidate in itertools.permutations(range(a[index].shape[0])):
        trial = list(perms)
        trial[index] = torch.tensor(candidate)
        best = max(best, matching_objective(a, b, trial))
    return best


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000))
def test_no_single_layer_permutation_improves_the_result(seed):
    """Coordinate-wise optimal, checked by enumerating all 5! orders of each hidden layer."""
    shapes = [(5, 4), (5, 5), (3, 5)]
    a, b = _chain(seed, shapes), _chain(seed + 1, shapes)
    perms = rebasin_weights(a, b)
    reached = matching_objective(a, b, perms)
    for index in range(len(perms)):
        assert _brute_layer_optimum(a, b, perms, index) <= reached + 1e-9


def test_invariant_to_a_shuffle_of_b():
    a, b = _chain(30), _chain(31)
    shuffled = permute_chain(b, _perms(32))
    aligned = permute_chain(b, rebasin_weights(a, b))
    aligned_shuffled = permute_chain(shuffled, rebasin_weights(a, shuffled))
    assert all(torch.equal(x, y) for x, y in zip(aligned, aligned_shuffled))


def test_refuses_what_match_weights_refuses():
    a = _chain(0)
    bad = [w.clone() for w in a]
    bad[1][0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        rebasin_weights(a, bad)
    with pytest.raises(ValueError, match="differ in shape"):
        rebasin_weights(a, _chain(0, [(24, 10), (16, 24), (12, 16), (4, 12)]))
