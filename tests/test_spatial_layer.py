"""SpatialLinear: equals nn.Linear with kernel none; gradients of every mode; contracts."""

import copy
import pickle

import pytest
import torch
from torch import nn

from helpers import assert_same_as_linear
from wiringlab.init import init_parameters_
from wiringlab.kernels import KernelSpec, make_kernel
from wiringlab.layers import SpatialLinear, effective_weight
from wiringlab.schedules import Anneal, Sharpen
from wiringlab.seeding import make_generator

MODES = [("multiply", "learnable"), ("normalized", "learnable"), ("normalized", "fixed"), ("capped", "learnable")]


def test_kernel_none_is_exactly_nn_linear():
    torch.manual_seed(0)
    plain = init_parameters_(nn.Linear(30, 20), make_generator(5, "init"))
    spatial = init_parameters_(SpatialLinear(30, 20, kernel="none"), make_generator(5, "init"))
    assert torch.equal(plain.weight, spatial.weight) and torch.equal(plain.bias, spatial.bias)
    assert_same_as_linear(plain, spatial, torch.randn(7, 30))


@pytest.mark.parametrize("mode,scale", MODES)
def test_gradcheck_float64(mode, scale):
    layer = SpatialLinear(6, 4, kernel="exponential", mode=mode, scale=scale, dtype=torch.float64)
    init_parameters_(layer, make_generator(0, "init"))
    if mode == "capped":  # keep W away from the cap's kinks, where the derivative jumps
        with torch.no_grad():
            layer.weight.copy_(torch.where(layer.weight.abs() < layer.kernel * 0.5, layer.weight, layer.kernel * 2))
    x = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    params = tuple(p for p in layer.parameters())

    def fn(x, *ps):
        return torch.func.functional_call(layer, dict(zip([n for n, _ in layer.named_parameters()], ps)), (x,))

    assert torch.autograd.gradcheck(fn, (x, *params))


def test_multiply_scales_gradient_by_kernel():
    layer = SpatialLinear(5, 3, kernel="linear")
    out_grad = torch.randn(4, 3)
    x = torch.randn(4, 5)
    layer(x).backward(out_grad)
    assert torch.allclose(layer.weight.grad, (out_grad.T @ x) * layer.kernel, atol=1e-6)


def test_capped_passes_unscaled_gradient_inside_and_zero_outside():
    layer = SpatialLinear(4, 2, kernel=torch.full((2, 4), 0.5), mode="capped")
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.1, -0.2, 0.9, -0.7], [0.3, 2.0, -0.4, -3.0]]))
    inside = layer.weight.abs() < 0.5
    assert torch.equal(layer.effective_weight(), layer.weight.clamp(-0.5, 0.5))
    x, out_grad = torch.randn(3, 4), torch.randn(3, 2)
    layer(x).backward(out_grad)
    full = out_grad.T @ x  # the gradient nn.Linear would get
    assert torch.allclose(layer.weight.grad[inside], full[inside], atol=1e-6)
    assert torch.all(layer.weight.grad[~inside] == 0)


def test_normalized_at_init_equals_multiply_and_rows_carry_kernel_magnitude():
    gen = lambda: make_generator(1, "init")  # noqa: E731
    mult = init_parameters_(SpatialLinear(12, 6, kernel="gaussian"), gen())
    norm = init_parameters_(SpatialLinear(12, 6, kernel="gaussian", mode="normalized", scale="fixed"), gen())
    assert torch.allclose(mult.effective_weight(), norm.effective_weight(), atol=1e-6)
    assert "scale" in dict(norm.named_buffers()) and "scale" not in dict(norm.named_parameters())
    with torch.no_grad():
        norm.weight.mul_(10.0)  # the magnitude of W no longer matters, only its direction
    assert torch.allclose(mult.effective_weight(), norm.effective_weight(), atol=1e-6)
    learnable = SpatialLinear(12, 6, kernel="gaussian", mode="normalized")
    assert "scale" in dict(learnable.named_parameters())


def test_kernel_tensor_shuffle_and_shape_errors():
    kernel = make_kernel("exponential", torch.rand(3, 5))
    layer = SpatialLinear(5, 3, kernel=kernel)
    assert torch.equal(layer.kernel, kernel) and torch.equal(effective_weight(layer), layer.weight * kernel)
    mixed = SpatialLinear(5, 3, kernel=kernel, shuffle_generator=make_generator(1000, "shuffle"))
    assert torch.equal(mixed.kernel.flatten().sort().values, kernel.flatten().sort().values)
    assert not torch.equal(mixed.kernel, kernel)
    with pytest.raises(ValueError, match="needs"):
        SpatialLinear(5, 4, kernel=kernel)
    with pytest.raises(ValueError, match="allowed: multiply"):
        SpatialLinear(5, 3, mode="masked")


def test_schedule_progress_moves_kernel_and_keeps_shuffle():
    sharpen = Sharpen(KernelSpec("exponential"), 3, 15)
    layer = SpatialLinear(10, 8, kernel=sharpen, shuffle_generator=make_generator(7, "shuffle"))
    start = layer.kernel.clone()
    layer.set_progress(1.0)
    assert torch.equal(layer.kernel, layer.kernel_at(1.0)) and layer.kernel.mean() < start.mean()
    plain = SpatialLinear(10, 8, kernel=sharpen)
    plain.set_progress(1.0)
    assert torch.equal(layer.kernel.flatten().sort().values, plain.kernel.flatten().sort().values)
    assert not torch.equal(layer.kernel, plain.kernel)


@pytest.mark.parametrize("mode,scale", MODES)
def test_contracts_state_dict_deepcopy_pickle(mode, scale):
    kernel = Anneal(KernelSpec("none"), KernelSpec("gaussian"))
    layer = SpatialLinear(9, 5, kernel=kernel, geometry="grid", mode=mode, scale=scale,
                          shuffle_generator=make_generator(3, "shuffle"))
    init_parameters_(layer, make_generator(2, "init"))
    layer.set_progress(0.7)
    x = torch.randn(4, 9)
    fresh = SpatialLinear(9, 5, kernel=kernel, geometry="grid", mode=mode, scale=scale,
                          shuffle_generator=make_generator(3, "shuffle"))
    fresh.load_state_dict(layer.state_dict())
    assert set(layer.state_dict()) == {"weight", "bias", "kernel"} | ({"scale"} if mode == "normalized" else set())
    for other in (fresh, copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))):
        assert torch.equal(layer(x), other(x))
        other.set_progress(1.0)
        layer_end = copy.deepcopy(layer)
        layer_end.set_progress(1.0)
        assert torch.equal(layer_end(x), other(x))


@pytest.mark.parametrize("mode", ["multiply", "normalized", "capped"])
def test_torch_compile_equivalence(mode):
    # aot_eager traces through dynamo and AOTAutograd (fullgraph: no graph breaks) in a few
    # seconds; inductor gives the same numbers but costs ~25 s to compile on 2 CPU cores.
    torch._dynamo.reset()
    layer = SpatialLinear(12, 8, kernel="exponential", mode=mode)
    compiled = torch.compile(layer, backend="aot_eager", fullgraph=True)
    x = torch.randn(4, 12)
    eager_out, compiled_out = layer(x), compiled(x)
    assert torch.allclose(eager_out, compiled_out, atol=1e-6)
    (grad_eager,) = torch.autograd.grad(eager_out.sum(), layer.weight)
    (grad_compiled,) = torch.autograd.grad(compiled_out.sum(), layer.weight)
    assert torch.allclose(grad_eager, grad_compiled, atol=1e-6)


def test_float64_kernels_are_float64_accurate():
    # the distances are computed in the layer's dtype, not in float32 and cast up
    from wiringlab.geometry import layer_distance
    from wiringlab.layers.task_kernel import TaskKernelLinear

    expected = make_kernel("exponential", layer_distance(3, 7, "line", dtype=torch.float64))
    spatial = SpatialLinear(7, 3, kernel="exponential", dtype=torch.float64)
    assert spatial.kernel.dtype == torch.float64 and torch.equal(spatial.kernel, expected)
    tasks = TaskKernelLinear(7, 3, ("a", "b"), kernels={"a": "exponential", "b": "none"}, dtype=torch.float64)
    assert torch.equal(tasks.kernels[0], expected)
