"""The compressed (CSR) linear map equals masked dense, in values and all gradients."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import CSR_KERNELS
from wiringlab.sparse_ops import CSRPattern, csr_kernels, csr_linear, dense_from_values, values_from_dense


def _case(sparsity, seed, out_f=12, in_f=30, batch=5, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(out_f, in_f, generator=g) >= sparsity
    weight = torch.randn(out_f, in_f, generator=g, dtype=dtype) * mask
    x = torch.randn(batch, in_f, generator=g, dtype=dtype)
    bias = torch.randn(out_f, generator=g, dtype=dtype)
    return mask, weight, x, bias


@pytest.mark.parametrize("kernel", CSR_KERNELS)
@pytest.mark.parametrize("sparsity", [0.9, 0.95, 0.99, 0.5])
@pytest.mark.parametrize("seed", [0, 1])
def test_outputs_and_gradients_equal_masked_dense(sparsity, seed, kernel):
    mask, weight, x, bias = _case(sparsity, seed, out_f=40, in_f=100)
    mask[:, 7] = False  # an input no connection reads: its gradient must be exactly zero
    mask[3] = False  # an output with no connection: bias only
    weight = weight * mask
    pattern = CSRPattern.from_mask(mask)
    values = values_from_dense(weight, mask).requires_grad_()
    xs, bs = x.clone().requires_grad_(), bias.clone().requires_grad_()
    xd, bd = x.clone().requires_grad_(), bias.clone().requires_grad_()
    wd = weight.clone().requires_grad_()
    ys = csr_linear(xs, values, pattern, bs, csr_kernels(kernel))
    yd = F.linear(xd, wd * mask, bd)
    torch.testing.assert_close(ys, yd)
    grad = torch.randn_like(yd)
    ys.backward(grad)
    yd.backward(grad)
    torch.testing.assert_close(xs.grad, xd.grad)
    torch.testing.assert_close(bs.grad, bd.grad)
    torch.testing.assert_close(dense_from_values(values.grad, mask), wd.grad * mask)


@pytest.mark.parametrize("kernel", CSR_KERNELS)
def test_every_row_length_around_the_unrolled_pass(kernel):
    """Rows (and columns) holding 0 to 11 active weights: the kernels take four weights per
    pass and the rest one by one, so every remainder and the empty row are checked."""
    mask = torch.arange(12) < torch.arange(12).unsqueeze(1)  # (12, 12): row r holds r entries, column c 11 - c
    _, weight, x, bias = _case(0.0, 7, out_f=12, in_f=12, batch=9)
    weight = weight * mask
    pattern = CSRPattern.from_mask(mask)
    values = values_from_dense(weight, mask).requires_grad_()
    xs, wd, xd = x.clone().requires_grad_(), weight.clone().requires_grad_(), x.clone().requires_grad_()
    ys, yd = csr_linear(xs, values, pattern, bias, csr_kernels(kernel)), F.linear(xd, wd, bias)
    grad = torch.randn_like(yd)
    ys.backward(grad)
    yd.backward(grad)
    torch.testing.assert_close(ys, yd)
    torch.testing.assert_close(xs.grad, xd.grad)
    torch.testing.assert_close(dense_from_values(values.grad, mask), wd.grad * mask)


@pytest.mark.parametrize("kernel", CSR_KERNELS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_feature_major_copy_is_the_transpose_for_every_width(kernel, dtype):
    """The numba transpose works in blocks of 16 columns: widths 0-40 cover full blocks,
    every remainder and none; transposed views and slices take torch's copy."""
    kernels = csr_kernels(kernel)
    for width in range(41):
        x = torch.randn(7, width, dtype=dtype)
        for view in (x, x.t().contiguous().t(), x[:, ::2], x[1:]):
            copy = kernels.feature_major(view)
            assert copy.is_contiguous() and copy.dtype == dtype
            assert torch.equal(copy, view.t())


@pytest.mark.parametrize("kernel", CSR_KERNELS)
def test_gradcheck_float64(kernel):
    mask, weight, x, bias = _case(0.8, 3, out_f=6, in_f=9, batch=3)
    mask[0, 0] = True  # at least one entry
    pattern = CSRPattern.from_mask(mask)
    values = values_from_dense(weight, mask).requires_grad_()
    inputs = (x.requires_grad_(), values, bias.requires_grad_())
    kernels = csr_kernels(kernel)
    assert torch.autograd.gradcheck(lambda a, v, b: csr_linear(a, v, pattern, b, kernels), inputs)


@pytest.mark.parametrize("kernel", CSR_KERNELS)
def test_a_second_derivative_raises_instead_of_coming_out_wrong(kernel):
    # an input-gradient penalty needs d(dL/dx)/dW: the backward's products have no graph
    mask, weight, x, bias = _case(0.5, 4, out_f=4, in_f=5, batch=3)
    pattern = CSRPattern.from_mask(mask)
    values = values_from_dense(weight, mask).requires_grad_()
    x.requires_grad_()
    loss = torch.tanh(csr_linear(x, values, pattern, bias, csr_kernels(kernel))).sum()
    (grad_x,) = torch.autograd.grad(loss, x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        (loss + grad_x.square().sum()).backward()


@pytest.mark.parametrize("kernel", CSR_KERNELS)
def test_float32_products_match_torch_kernels_and_are_deterministic(kernel):
    """Real sizes (a 95%-sparse 256 x 768 layer, batch 64), float32: the kernel sets agree
    to float rounding, and a kernel set gives the same bits every call."""
    mask, weight, x, bias = _case(0.95, 5, out_f=256, in_f=768, batch=64, dtype=torch.float32)
    pattern = CSRPattern.from_mask(mask)
    values = values_from_dense(weight, mask)
    grad = torch.randn(64, 256, generator=torch.Generator().manual_seed(6))

    def products(kernels):
        v, a = values.clone().requires_grad_(), x.clone().requires_grad_()
        csr_linear(a, v, pattern, bias, kernels).backward(grad)
        return csr_linear(x, values, pattern, bias, kernels), a.grad, v.grad

    ours, again = products(csr_kernels(kernel)), products(csr_kernels(kernel))
    reference = products(csr_kernels("torch"))
    for a, b, c in zip(ours, again, reference):
        assert torch.equal(a, b)
        torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-5)


def test_unknown_kernel_and_missing_numba_say_what_to_do(monkeypatch):
    from wiringlab.experiment.errors import MissingExtraError

    with pytest.raises(ValueError, match="choose one of"):
        csr_kernels("cusparse")
    monkeypatch.setitem(__import__("sys").modules, "wiringlab.csr_kernels_numba", None)  # import fails
    with pytest.raises(MissingExtraError, match=r"pip install 'wiringlab\[numba\]'"):
        csr_kernels("numba")


@settings(max_examples=25, deadline=None)
@given(out_f=st.integers(1, 20), in_f=st.integers(1, 20), seed=st.integers(0, 10_000),
       density=st.floats(0.0, 1.0))
def test_pattern_round_trip_and_transpose(out_f, in_f, seed, density):
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(out_f, in_f, generator=g) < density
    weight = torch.randn(out_f, in_f, generator=g) * mask
    pattern = CSRPattern.from_mask(mask)
    values = values_from_dense(weight, mask)
    assert pattern.nnz == int(mask.sum())
    torch.testing.assert_close(pattern.matrix(values).to_dense(), weight)
    torch.testing.assert_close(pattern.transposed(values).to_dense(), weight.t())
    torch.testing.assert_close(dense_from_values(values, mask), weight)


def test_leading_dims_and_no_bias():
    mask, weight, x, _ = _case(0.7, 4, dtype=torch.float32)
    pattern = CSRPattern.from_mask(mask)
    x3 = torch.randn(2, 3, mask.shape[1])
    y = csr_linear(x3, values_from_dense(weight, mask), pattern)
    torch.testing.assert_close(y, F.linear(x3, weight))
