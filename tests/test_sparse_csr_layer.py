"""CSRSparseLinear (the compressed layout of SET's layer) computes, trains and evolves
exactly as the masked dense SparseLinear, and keeps the layer contracts."""

import copy
import importlib.util
import pickle

import pytest
import torch
import torch.nn.functional as F

from helpers import CSR_KERNELS
from wiringlab.engine.evolution import evolve_layer_
from wiringlab.engine.stacking import stackable
from wiringlab.experiment.config import MLPConfig, SETConfig
from wiringlab.experiment.store import RunFolder
from wiringlab.init import init_parameters_
from wiringlab.layers import CSRSparseLinear, SparseLinear
from wiringlab.models import build_model
from wiringlab.seeding import make_generator

OPTIMIZERS = {
    "sgd-nesterov-fused": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2,
                                                    fused=True),
    "adam": lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=1e-2),
    "adamw-fused": lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=1e-1, fused=True),
    "rmsprop": lambda p: torch.optim.RMSprop(p, lr=1e-2, momentum=0.9, weight_decay=1e-2),
}




def _pair(density=0.08, seed=0, in_f=40, out_f=30, dtype=torch.float64, kernel="torch"):
    layers = []
    for cls, options in ((SparseLinear, {}), (CSRSparseLinear, {"csr_kernel": kernel})):
        layer = cls(in_f, out_f, density=density, dtype=dtype, **options)
        layer.reset_parameters(generator=torch.Generator().manual_seed(seed))
        layers.append(layer)
    return layers


@pytest.mark.parametrize("density", [0.1, 0.05, 0.01])
def test_same_generator_draws_the_same_layer(density):
    dense, csr = _pair(density)
    assert torch.equal(dense.mask, csr.mask) and torch.equal(dense.bias, csr.bias)
    assert torch.equal(dense.effective_weight(), csr.effective_weight())
    assert csr.weight.shape == (dense.num_active,) == (round(density * 1200),)


@pytest.mark.parametrize("kernel", CSR_KERNELS)
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_training_equals_masked_dense(name, kernel):
    """Steps of loss + L1 on the raw weight (which SparseLinear masks by a hook) agree."""
    layers = _pair(density=0.1, kernel=kernel)
    optimizers = [OPTIMIZERS[name](layer.parameters()) for layer in layers]
    g = torch.Generator().manual_seed(5)
    for _ in range(6):
        x = torch.randn(16, 40, generator=g, dtype=torch.float64)
        for layer, optimizer in zip(layers, optimizers):
            loss = F.relu(layer(x)).pow(2).mean() + 1e-3 * layer.weight.abs().sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    dense, csr = layers
    torch.testing.assert_close(csr.effective_weight(), dense.effective_weight())
    torch.testing.assert_close(csr.bias, dense.bias)
    assert not torch.equal(csr.effective_weight(), _pair(density=0.1)[1].effective_weight())  # it did train


def test_gradcheck_through_the_layer():
    _, csr = _pair(density=0.1, in_f=9, out_f=7)
    x = torch.randn(3, 9, dtype=torch.float64, requires_grad=True)
    values, bias = csr.weight.detach().clone().requires_grad_(), csr.bias.detach().clone().requires_grad_()

    def run(inp, v, b):
        return torch.func.functional_call(csr, {"weight": v, "bias": b}, (inp,))

    assert torch.autograd.gradcheck(run, (x, values, bias))


@pytest.mark.parametrize("kernel", CSR_KERNELS)
@pytest.mark.parametrize("regrow_init", ["zero", "uniform"])
@pytest.mark.parametrize("name", ["sgd-nesterov-fused", "adam"])
def test_evolution_matches_masked_dense_and_moves_optimizer_state(name, regrow_init, kernel):
    layers = _pair(density=0.1, kernel=kernel)
    optimizers = [OPTIMIZERS[name](layer.parameters()) for layer in layers]
    g = torch.Generator().manual_seed(3)
    x = torch.randn(16, 40, generator=g, dtype=torch.float64)
    for layer, optimizer in zip(layers, optimizers):
        for _ in range(3):
            optimizer.zero_grad()
            layer(x).pow(2).mean().backward()
            optimizer.step()
        evolve_layer_(layer, optimizer, 0.3, SETConfig(regrow_init=regrow_init), torch.Generator().manual_seed(1))
    (dense, csr), (dense_opt, csr_opt) = layers, optimizers
    assert torch.equal(dense.mask, csr.mask) and csr.num_active == round(0.1 * 1200)
    torch.testing.assert_close(csr.effective_weight(), dense.effective_weight())
    torch.testing.assert_close(csr.weight.grad, dense.weight.grad[dense.mask.bool()])
    moved = 0
    for key, value in csr_opt.state[csr.weight].items():
        if torch.is_tensor(value) and value.dim() == 1 and value.numel() == csr.num_active:
            reference = dense_opt.state[dense.weight][key]
            torch.testing.assert_close(value, reference[dense.mask.bool()], msg=key)
            assert reference[dense.mask == 0].eq(0).all()
            moved += 1
    assert moved >= 1
    for layer, optimizer in zip(layers, optimizers):  # and training goes on identically
        optimizer.zero_grad()
        layer(x).pow(2).mean().backward()
        optimizer.step()
    torch.testing.assert_close(csr.effective_weight(), dense.effective_weight())


def test_state_dict_is_dense_and_loads_into_either_layout(tmp_path):
    dense, csr = _pair(density=0.05, seed=1)
    state = csr.state_dict()
    assert state["weight"].shape == (30, 40) and set(state) == {"weight", "bias", "mask"}
    other_dense, other_csr = _pair(density=0.05, seed=7)
    other_dense.load_state_dict(state)
    other_csr.load_state_dict(dense.state_dict())
    folder = RunFolder(tmp_path)
    folder.write_weights(csr.state_dict())
    loaded = _pair(density=0.05, seed=8)[1]
    loaded.load_state_dict(folder.read_weights())
    x = torch.randn(4, 40, dtype=torch.float64)
    for layer in (other_dense, other_csr, loaded):
        torch.testing.assert_close(layer(x), csr(x))
    with pytest.raises(RuntimeError, match="cannot fill"):
        _pair(density=0.1)[1].load_state_dict(state)  # other density: other nnz


@pytest.mark.parametrize("kernel", CSR_KERNELS)
@pytest.mark.parametrize("copier", [copy.deepcopy, lambda m: pickle.loads(pickle.dumps(m)),
                                    lambda m: m.float().double()])
def test_copies_keep_the_pattern(copier, kernel):
    _, csr = _pair(density=0.05, kernel=kernel)
    other = copier(csr)
    x = torch.randn(4, 40, dtype=torch.float64)
    torch.testing.assert_close(other(x), csr(x))
    assert other.crow.dtype == torch.int32
    assert other.csr_kernel == kernel and other._kernels.name == kernel and f"csr_kernel='{kernel}'" in repr(other)


@pytest.mark.parametrize("kernel", CSR_KERNELS)
def test_a_compiled_layer_still_pickles(kernel):
    _, csr = _pair(density=0.05, kernel=kernel)
    csr.compile()  # nn.Module.compile adds an attribute that nn.Module's own __getstate__ drops
    restored = pickle.loads(pickle.dumps(csr))
    x = torch.randn(4, 40, dtype=torch.float64)
    torch.testing.assert_close(restored(x), csr.forward(x))


def test_sweeps_check_the_numba_kernels_before_anything_runs(tmp_path, monkeypatch):
    import sys

    from wiringlab.experiment import ConfigError, expand
    from wiringlab.experiment.errors import MissingExtraError
    from wiringlab.experiment.recipe import Recipe
    from wiringlab.experiment.sweep import run_sweep

    recipe = Recipe(name="nb", seeds=[0], base={
        "data": {"name": "synthetic", "options": {"n_train": 64, "n_test": 32, "input_shape": [20]}},
        "model": {"hidden": [32], "layer": {"type": "sparse", "density": 0.05, "csr_kernel": "numba"}},
        "train": {"epochs": 1}})
    specs = expand(recipe)
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "wiringlab.csr_kernels_numba", None)  # as if numba were missing
        with pytest.raises(MissingExtraError, match="wiringlab\\[numba\\]"):
            run_sweep(recipe, specs, tmp_path / "a")
    if importlib.util.find_spec("numba") is not None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # train.device auto would pick a GPU
        with pytest.raises(ConfigError, match="csr_kernel: numba runs on the CPU"):
            run_sweep(recipe, specs, tmp_path / "b")
    assert not list(tmp_path.glob("*/runs/*"))  # nothing was trained or recorded


def test_factory_passes_the_kernel_and_run_ids_ignore_its_default():
    from wiringlab.experiment.config import RunConfig
    from wiringlab.experiment.recipe import run_id

    layer = {"type": "sparse", "density": 0.05}
    model = build_model(MLPConfig(hidden=[64], layer={**layer, "csr_kernel": "torch"}), (20,), 4)
    assert [m.csr_kernel for m in model.modules() if isinstance(m, CSRSparseLinear)] == ["torch"]
    base = RunConfig(model={"kind": "mlp", "layer": layer})
    assert run_id(base, "x") == run_id(RunConfig(model={"kind": "mlp", "layer": {**layer, "csr_kernel": "torch"}}), "x")
    assert run_id(base, "x") != run_id(RunConfig(model={"kind": "mlp", "layer": {**layer, "csr_kernel": "numba"}}), "x")


def test_csr_models_are_not_stacked():
    model = build_model(MLPConfig(hidden=[64], layer={"type": "sparse", "density": 0.05}), (20,), 4)
    init_parameters_(model, make_generator(0, "init"))
    assert "CSR" in stackable(model)
