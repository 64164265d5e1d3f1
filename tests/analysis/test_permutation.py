"""Model-level permutations: consistent shuffles keep the function, lone shuffles break it,
positional buffers (a kernel) do not commute, representations and CKA follow."""

import copy

import pytest
import torch
from torch import nn

from helpers import blob_data
from wiringlab.analysis.permutation import (NotAChainError, chain_unit_extras, chain_weights, hidden_representations,
                                            permutation_sensitivity, permute_hidden_units_, unit_chain)
from wiringlab.analysis.similarity import linear_cka, weight_similarity
from wiringlab.engine import train
from wiringlab.experiment.config import LeNetConfig, MLPConfig, SpatialLayerConfig, TrainConfig
from wiringlab.init import init_parameters_
from wiringlab.models import build_model, linear_layers
from wiringlab.seeding import make_generator


def _model(config, shape, classes=5, seed=0):
    model = init_parameters_(build_model(config, shape, classes), make_generator(seed, "init"))
    if any(isinstance(m, nn.BatchNorm1d) for m in model.modules()):  # non-trivial running statistics
        model.train()
        with torch.no_grad():
            for _ in range(3):
                model(torch.randn(64, *shape))
    return model.eval()


def _shuffle_all(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    for index, layer in enumerate(unit_chain(model).layers[:-1]):
        permute_hidden_units_(model, index, torch.randperm(layer.weight.shape[0], generator=g))
    return model


CASES = [
    (MLPConfig(hidden=[24, 16]), (1, 6, 6)),
    (MLPConfig(hidden=[24, 16], batchnorm=True, dropout=0.2), (10,)),
    (LeNetConfig(hidden=[20, 12], channels=(3, 4)), (1, 16, 16)),
]


@pytest.mark.parametrize("config,shape", CASES)
def test_consistent_permutation_keeps_the_function_and_aligns_to_one(config, shape):
    model = _model(config, shape)
    copy_ = _shuffle_all(copy.deepcopy(model))
    x = torch.randn(32, *shape)
    assert torch.allclose(model(x), copy_(x), atol=1e-5)
    result = weight_similarity(chain_weights(model), chain_weights(copy_), chain_unit_extras(model),
                               chain_unit_extras(copy_))
    assert result.aligned_all == pytest.approx(1.0, abs=1e-6)
    assert result.raw_all < 0.9  # the raw cosine does not see that they are the same network
    for a, b in zip(hidden_representations(model, x), hidden_representations(copy_, x)):
        assert linear_cka(a, b) == pytest.approx(1.0, abs=1e-6)


def test_permutation_sensitivity_zero_when_consistent_and_large_when_alone():
    data = blob_data(n_train=256, n_test=256, dim=20, classes=4)
    model = _model(MLPConfig(hidden=[32]), (20,), classes=4)
    train(model, data, TrainConfig(epochs=3, batch_size=64, progress=False,
                                   optimizer={"name": "adam", "lr": 0.01}), seed=0)
    perm = torch.randperm(32, generator=torch.Generator().manual_seed(0))
    before = [p.clone() for p in model.parameters()]
    result = permutation_sensitivity(model, data.x_test, data.y_test, 0, perm)
    assert result.accuracy > 0.9
    assert result.consistent == result.accuracy and result.drop_consistent == 0.0
    assert result.drop_shuffled > 0.2  # the next layer reads the wrong units
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # model untouched


@pytest.mark.parametrize("mode", ["multiply", "normalized"])
def test_a_positional_kernel_does_not_commute_with_a_unit_shuffle(mode):
    layer = SpatialLayerConfig(kernel="exponential", mode=mode)
    model, x = _model(MLPConfig(hidden=[10], layer=layer), (12,), classes=3), torch.randn(16, 12)
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(1))
    kernel = linear_layers(model)[0].kernel.clone()
    consistent = permute_hidden_units_(copy.deepcopy(model), 0, perm)
    assert torch.equal(linear_layers(consistent)[0].kernel, kernel)  # buffers stay in place
    assert not torch.allclose(consistent(x), model(x), atol=1e-3)
    carried = permute_hidden_units_(copy.deepcopy(model), 0, perm, buffers_follow=("kernel",))
    assert torch.allclose(carried(x), model(x), atol=1e-5)
    # alignment reads effective weights, so it sees through a shuffle that carries the kernel
    assert weight_similarity(chain_weights(model), chain_weights(carried)).aligned_all == pytest.approx(1.0)


@pytest.mark.parametrize("layer", [{"type": "sparse", "density": 0.3}, {"type": "spatial", "kernel": "none",
                                                                       "mode": "normalized", "scale": "fixed"}])
def test_buffers_that_belong_to_units_move_with_them(layer):
    # a sparse mask (rows, and the next layer's columns) and a fixed per-unit scale are the
    # unit's, not a position's: a consistent shuffle keeps the function exactly
    model, x = _model(MLPConfig(hidden=[16, 12], layer=layer), (20,), classes=4), torch.randn(32, 20)
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(2))
    expected = model(x)
    shuffled = permute_hidden_units_(copy.deepcopy(model), 0, perm)
    assert torch.allclose(shuffled(x), expected, atol=1e-6)
    labels = expected.argmax(1)  # the model's own predictions: accuracy 1 unless the function moves
    sensitivity = permutation_sensitivity(model, x, labels, 0, perm)
    assert sensitivity.accuracy == 1.0 and sensitivity.drop_consistent == 0.0
    assert torch.equal(model(x), expected)  # restored


def test_chain_errors_name_the_problem():
    model = _model(MLPConfig(hidden=[8]), (4,))
    with pytest.raises(IndexError, match="not a hidden linear layer"):
        permute_hidden_units_(model, 1, torch.arange(5))
    with pytest.raises(ValueError, match="length 3"):
        permute_hidden_units_(model, 0, torch.arange(3))
    with pytest.raises(ValueError, match="does not have"):
        permute_hidden_units_(model, 0, torch.arange(8), buffers_follow=("kernal",))
    branchy = nn.Sequential(nn.Linear(4, 6), nn.Linear(5, 2))
    with pytest.raises(NotAChainError, match="do not form a chain"):
        unit_chain(branchy)


def test_hidden_representations_are_post_activation_block_outputs():
    model = _model(MLPConfig(hidden=[9, 7], activation="tanh"), (5,))
    x = torch.randn(11, 5)
    first, second = hidden_representations(model, x, batch_size=4)
    layers = linear_layers(model)
    assert torch.allclose(first, torch.tanh(layers[0](x)), atol=1e-6)
    assert torch.allclose(second, torch.tanh(layers[1](first)), atol=1e-6)
    assert [e.shape[1] for e in chain_unit_extras(model)] == [1, 1]  # bias only
