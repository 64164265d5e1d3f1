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
    norms = [m for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    if norms:  # non-trivial running statistics, and scales and shifts that are not 1 and 0
        model.train()
        with torch.no_grad():
            for _ in range(3):
                model(torch.randn(64, *shape))
            g = torch.Generator().manual_seed(seed)
            for norm in norms:
                norm.weight.copy_(0.5 + torch.rand(norm.weight.shape, generator=g))
                norm.bias.copy_(torch.randn(norm.bias.shape, generator=g))
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
    (LeNetConfig(hidden=[9], channels=(5, 6), conv_batchnorm=True, batchnorm=True), (2, 14, 14)),
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
    with pytest.raises(IndexError, match=r"not a hidden layer of the chain \(hidden layers: 0..0: linear0\)"):
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


def test_a_lenet_chain_is_its_convolutions_then_its_linear_layers():
    model = _model(LeNetConfig(hidden=[20, 12], channels=(3, 4)), (1, 16, 16))
    chain = unit_chain(model)
    assert chain.names == ["conv0", "conv1", "linear0", "linear1", "linear2"]
    assert chain.paths == ["features.0", "features.4", "stack.hidden.0.0", "stack.hidden.1.0", "stack.classifier"]
    assert chain.layers[2:] == linear_layers(model)  # linearN keeps its meaning
    assert [w.shape for w in chain_weights(model)][:2] == [(3, 1, 5, 5), (4, 3, 5, 5)]


def test_a_convolution_channel_shuffle_moves_filters_and_the_next_layers_inputs():
    model = _model(LeNetConfig(hidden=[9], channels=(5, 6), conv_batchnorm=True), (1, 16, 16))
    x = torch.randn(8, 1, 16, 16)
    conv0, conv1, linear0 = unit_chain(model).layers[:3]
    norm0 = model.features[1]
    perm = torch.tensor([4, 2, 0, 1, 3])
    expected = (conv0.weight[perm].clone(), conv0.bias[perm].clone(), norm0.running_mean[perm].clone(),
                conv1.weight[:, perm].clone())
    shuffled = permute_hidden_units_(copy.deepcopy(model), 0, perm)
    s0, s1 = unit_chain(shuffled).layers[:2]
    got = (s0.weight, s0.bias, shuffled.features[1].running_mean, s1.weight)
    assert all(torch.equal(a, b) for a, b in zip(got, expected))
    assert torch.allclose(shuffled(x), model(x), atol=1e-5)
    # the last convolution's channels are blocks of h*w flattened inputs of linear0
    perm1 = torch.randperm(6, generator=torch.Generator().manual_seed(3))
    shuffled = permute_hidden_units_(copy.deepcopy(model), 1, perm1)
    blocks = linear0.weight.reshape(9, 6, -1)  # (out, channels, h*w)
    assert torch.equal(unit_chain(shuffled).layers[2].weight, blocks[:, perm1].reshape(9, -1))
    assert torch.allclose(shuffled(x), model(x), atol=1e-5)
    alone = permute_hidden_units_(copy.deepcopy(model), 1, perm1, consistent=False)
    assert not torch.allclose(alone(x), model(x), atol=1e-3)


def test_matching_recovers_planted_channel_permutations():
    model = _model(LeNetConfig(hidden=[11], channels=(6, 7), conv_batchnorm=True), (1, 16, 16))
    g = torch.Generator().manual_seed(4)
    planted = [torch.randperm(n, generator=g) for n in (6, 7, 11)]
    copy_ = copy.deepcopy(model)
    for index, perm in enumerate(planted):
        permute_hidden_units_(copy_, index, perm)
    found = weight_similarity(chain_weights(model), chain_weights(copy_), chain_unit_extras(model),
                              chain_unit_extras(copy_)).permutations
    assert all(torch.equal(q, torch.argsort(p)) for p, q in zip(planted, found))


def test_a_convolutions_representation_is_its_stage_output_after_pooling():
    model = _model(LeNetConfig(hidden=[9], channels=(3, 4), activation="tanh"), (1, 16, 16))
    x = torch.randn(7, 1, 16, 16)
    conv0, conv1, hidden = hidden_representations(model, x, batch_size=3)
    assert torch.allclose(conv0, model.features[:4](x).flatten(1), atol=1e-6)  # (n, 3*8*8)
    assert torch.allclose(conv1, model.features(x).flatten(1), atol=1e-6)
    assert torch.allclose(hidden, torch.tanh(linear_layers(model)[0](conv1)), atol=1e-6)


def test_a_plain_sequential_layer_is_read_after_its_activation_not_at_the_output():
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2)).eval()
    x = torch.randn(6, 5)
    first, second = hidden_representations(model, x)
    assert torch.allclose(first, model[:2](x)) and torch.allclose(second, model[:4](x))


@pytest.mark.parametrize("model, message", [
    (nn.Sequential(nn.Conv2d(4, 6, 3, groups=2), nn.Flatten(), nn.Linear(6, 2)), "grouped convolution"),
    (nn.Sequential(nn.ConvTranspose2d(4, 6, 3), nn.Flatten(), nn.Linear(6, 2)), "transposed convolution"),
    (nn.Sequential(nn.Conv2d(1, 6, 3), nn.Conv2d(3, 4, 3)), "conv0 and conv1 do not form a chain"),
    # a convolution reads channels one to one: twice as many inputs is no chain, unlike a flattened map
    (nn.Sequential(nn.Conv2d(1, 3, 3), nn.Conv2d(6, 4, 3)), "conv0 and conv1 do not form a chain"),
])
def test_convolutions_that_are_not_a_chain_are_named(model, message):
    with pytest.raises(NotAChainError, match=message):
        unit_chain(model)


def test_chain_weights_are_copies_that_later_edits_of_the_model_leave_alone():
    model = _model(MLPConfig(hidden=[6]), (4,))
    weights = chain_weights(model)
    before = [w.clone() for w in weights]
    permute_hidden_units_(model, 0, torch.tensor([5, 4, 3, 2, 1, 0]))
    assert all(torch.equal(a, b) for a, b in zip(weights, before))
