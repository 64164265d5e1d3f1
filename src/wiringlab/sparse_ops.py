"""A linear map whose weight is stored compressed (CSR): forward and both gradients
touch only the active connections.

    y = x @ W^T + b,   W (out, in) with nnz active entries in a fixed pattern
    dL/dx = dL/dy @ W                  -- sparse x dense through the transposed pattern
    dL/dW[i, j] = sum_b dL/dy[b, i] x[b, j]   only at active (i, j): a sampled dense-dense product

Evidence (issue 8): on a 2-core CPU, CSR kernels for forward plus both gradients beat
dense from about 85% sparsity. `bench/sparse_step.py` measures the crossover here.

Layout, for speed (measured with torch.profiler on 2 CPU threads): torch's CSR kernels
want the dense operand feature-major, (in, B) contiguous, and otherwise copy it — a
(3072, 128) transpose costs ~1.3 ms, as much as the 90%-sparse product itself. So the
forward transposes x once, keeps that copy for the weight gradient, and returns
y as a transposed view of a (out, B) result: elementwise ops keep that layout, so the
next CSR layer's transpose is free. Indices are int32, which MKL takes without a copy.
The kernels make the feature-major copy (`feature_major`): the numba set with its own
transpose, 4x faster than torch's strided copy of a (128, 3072) batch.

The pattern is fixed between topology changes; SET evolution rebuilds it from the new
active positions (`CSRPattern.from_positions`). Values are a 1-D tensor (nnz,) in row-major order of the mask — the
order of `mask.nonzero()` — so optimizer state over values stays aligned with it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import torch
from torch.autograd.function import once_differentiable

__all__ = ["CSRPattern", "csr_linear", "csr_kernels", "values_from_dense", "dense_from_values"]


@dataclass(frozen=True)
class CSRPattern:
    """Row pointers and columns of W and of W^T, plus the map between their orders.

    Attributes:
        shape: (out, in).
        crow, col: CSR of W (values in row-major order).
        t_crow, t_col: CSR of W^T.
        t_perm: W^T's k-th value is W's value number t_perm[k].
    """

    shape: tuple[int, int]
    crow: torch.Tensor
    col: torch.Tensor
    t_crow: torch.Tensor
    t_col: torch.Tensor
    t_perm: torch.Tensor

    @property
    def nnz(self) -> int:
        return int(self.col.numel())

    @classmethod
    def from_mask(cls, mask: torch.Tensor) -> "CSRPattern":
        """Build the pattern of a boolean (out, in) mask."""
        return cls.from_positions(mask.reshape(-1).nonzero().squeeze(1), tuple(mask.shape))

    @classmethod
    def from_positions(cls, positions: torch.Tensor, shape: tuple[int, int]) -> "CSRPattern":
        """Build the pattern whose active entries are the sorted flat indices `positions`
        into an (out, in) matrix (what `mask.view(-1).nonzero()` gives)."""
        out_f, in_f = shape
        rows, cols = positions // in_f, positions % in_f
        crow = _pointers(rows, out_f)
        t_perm = torch.sort(cols.to(torch.int32), stable=True).indices  # by column; rows stay ascending
        t_crow = _pointers(cols.index_select(0, t_perm), in_f)  # index_select: 2-3x faster than [ ] on CPU
        index = torch.int32 if out_f * in_f < 2**31 else torch.int64
        return cls((out_f, in_f), crow.to(index), cols.to(index), t_crow.to(index),
                   rows.index_select(0, t_perm).to(index), t_perm)

    def positions(self) -> torch.Tensor:
        """Sorted flat int64 indices of the active entries (row-major, the values' order)."""
        rows = torch.repeat_interleave(torch.arange(self.shape[0], device=self.crow.device), self.crow.diff())
        return rows * self.shape[1] + self.col.long()

    def matrix(self, values: torch.Tensor) -> torch.Tensor:
        """W as a sparse CSR tensor over `values`."""
        return torch.sparse_csr_tensor(self.crow, self.col, values, self.shape, check_invariants=False)

    def transposed(self, values: torch.Tensor) -> torch.Tensor:
        """W^T as a sparse CSR tensor (values reordered by t_perm)."""
        return torch.sparse_csr_tensor(self.t_crow, self.t_col, values.index_select(0, self.t_perm), self.shape[::-1],
                                       check_invariants=False)


def _pointers(sorted_rows: torch.Tensor, n_rows: int) -> torch.Tensor:
    counts = torch.bincount(sorted_rows, minlength=n_rows)
    return torch.cat([counts.new_zeros(1), counts.cumsum(0)])


def values_from_dense(weight: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The active entries of `weight` in the pattern's (row-major) order."""
    return weight[mask.bool()]


def dense_from_values(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A dense (out, in) weight with `values` at the active positions, zeros elsewhere."""
    dense = values.new_zeros(mask.shape)
    dense[mask.bool()] = values
    return dense


class TorchCSRKernels:
    """The three products through torch's sparse kernels (MKL on CPU, cuSPARSE on CUDA)."""

    name = "torch"

    @staticmethod
    def feature_major(x: torch.Tensor) -> torch.Tensor:
        return x.t().contiguous()  # (in, B); free when x is itself a transposed view

    @staticmethod
    def matmul(pattern: CSRPattern, values: torch.Tensor, dense_t: torch.Tensor) -> torch.Tensor:
        return torch.sparse.mm(pattern.matrix(values), dense_t)  # (out, B)

    @staticmethod
    def matmul_transposed(pattern: CSRPattern, values: torch.Tensor, dense_t: torch.Tensor) -> torch.Tensor:
        return torch.sparse.mm(pattern.transposed(values), dense_t)  # (in, B)

    @staticmethod
    def sampled(pattern: CSRPattern, values: torch.Tensor, a_t: torch.Tensor, b_t: torch.Tensor) -> torch.Tensor:
        # b = b_t.t(): the kernel reads mat2ᵀ contiguous, which b_t already is.
        # zeros, not empty: beta=0 still propagates NaN from the input's values (torch 2.13)
        return torch.sparse.sampled_addmm(pattern.matrix(torch.zeros_like(values)), a_t, b_t.t(), beta=0.0).values()


class NumbaCSRKernels:
    """The three products through `csr_kernels_numba` (CPU only; `pip install 'wiringlab[numba]'`).

    Raises:
        MissingExtraError (an ImportError): numba is not installed.
    """

    name = "numba"

    def __init__(self) -> None:
        try:
            csr_kernels_numba = importlib.import_module(f"{__package__}.csr_kernels_numba")
        except ImportError as err:
            from .experiment.errors import MissingExtraError

            raise MissingExtraError("csr_kernel: numba needs numba, which is not installed: "
                                    "pip install 'wiringlab[numba]' (or use csr_kernel: torch)") from err
        self._k = csr_kernels_numba

    def _arrays(self, *tensors: torch.Tensor | None):
        """numpy views of `tensors` (None passes through: the kernels' "no permutation")."""
        if any(t is not None and t.device.type != "cpu" for t in tensors):
            raise ValueError("csr_kernel: numba runs on CPU tensors only; use csr_kernel: torch on a GPU")
        self._k.set_threads(torch.get_num_threads())
        return [None if t is None else t.detach().contiguous().numpy() for t in tensors]

    # torch.compile must not trace into numba (a cold numba dispatcher crashes dynamo): each
    # product is a graph break, as torch's own sparse kernels are opaque calls too.
    @torch.compiler.disable
    def feature_major(self, x):
        if x.t().is_contiguous():  # x is a transposed view (or one row or column): free
            return x.t()
        out = x.new_empty(x.shape[1], x.shape[0])  # (in, B)
        self._k.transpose(*self._arrays(x, out))  # a strided x is first made row-major by torch
        return out

    @torch.compiler.disable
    def matmul(self, pattern, values, dense_t):
        out = dense_t.new_empty(pattern.shape[0], dense_t.shape[1])
        self._k.csr_times_dense(*self._arrays(pattern.crow, pattern.col, values, None, dense_t, out))
        return out

    @torch.compiler.disable
    def matmul_transposed(self, pattern, values, dense_t):
        out = dense_t.new_empty(pattern.shape[1], dense_t.shape[1])
        self._k.csr_times_dense(*self._arrays(pattern.t_crow, pattern.t_col, values, pattern.t_perm, dense_t, out))
        return out

    @torch.compiler.disable
    def sampled(self, pattern, values, a_t, b_t):
        out = torch.empty_like(values)
        self._k.sampled_dot(*self._arrays(pattern.crow, pattern.col, a_t, b_t, out))
        return out


CSR_KERNELS = {"torch": TorchCSRKernels, "numba": NumbaCSRKernels}


def csr_kernels(name: str):
    """The kernel set called `name` ("torch" or "numba").

    Raises:
        ValueError: unknown name. MissingExtraError: "numba" without numba installed.
    """
    if name not in CSR_KERNELS:
        raise ValueError(f"unknown csr_kernel {name!r}; choose one of {sorted(CSR_KERNELS)}")
    return CSR_KERNELS[name]()


class _CSRLinear(torch.autograd.Function):
    """Pitfall: first derivatives only. The backward's products are not themselves
    differentiable (numba's run outside autograd), so a second derivative (an
    input-gradient penalty, `create_graph=True`) raises rather than coming out wrong."""

    @staticmethod
    def forward(ctx, x, values, bias, pattern: CSRPattern, kernels):
        x_t = kernels.feature_major(x)  # (in, B)
        y_t = kernels.matmul(pattern, values, x_t)  # (out, B)
        if bias is not None:
            y_t += bias.unsqueeze(1)
        ctx.pattern, ctx.kernels = pattern, kernels
        ctx.save_for_backward(x_t, values)
        return y_t.t()  # (B, out), column-major

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y):
        x_t, values = ctx.saved_tensors
        pattern, kernels = ctx.pattern, ctx.kernels
        grad_t = kernels.feature_major(grad_y)  # (out, B)
        grad_x = grad_values = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = kernels.matmul_transposed(pattern, values, grad_t).t()  # (B, in)
        if ctx.needs_input_grad[1]:
            grad_values = kernels.sampled(pattern, values, grad_t, x_t)  # (nnz,), the pattern's order
        if ctx.needs_input_grad[2]:
            grad_bias = grad_t.sum(1)
        return grad_x, grad_values, grad_bias, None, None


def csr_linear(x: torch.Tensor, values: torch.Tensor, pattern: CSRPattern,
               bias: torch.Tensor | None = None, kernels=None) -> torch.Tensor:
    """`x @ W^T + bias` for W given by (`pattern`, `values`); differentiable in x, values, bias.

    Args:
        x: (B, in) dense input (other leading dims are flattened and restored).
        values: (nnz,) active weights in the pattern's row-major order.
        pattern: the `CSRPattern` of W.
        bias: (out,) or None.
        kernels: the products' implementation, `csr_kernels("torch")` (default) or
            `csr_kernels("numba")`.

    Returns:
        (B, out) output, equal to `F.linear(x, dense_from_values(values, mask), bias)`, in
        the values' dtype (an input of another dtype, e.g. bf16 under autocast, is cast).
    """
    if x.dtype != values.dtype:  # under bf16 autocast: torch's CPU CSR kernels have no bf16
        x = x.to(values.dtype)
    lead = x.shape[:-1]
    with torch.autocast(device_type=x.device.type, enabled=False):  # autocast would cast the CSR matmul
        y = _CSRLinear.apply(x.reshape(-1, x.shape[-1]), values, bias, pattern, kernels or TorchCSRKernels)
    return y.reshape(*lead, pattern.shape[0])
