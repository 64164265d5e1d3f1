"""Many models of one architecture as one: parameters and buffers stacked on a leading
member dim M, the forward pass vmapped over members.

After `stack_members`, each member module still exists and its parameters and buffers
*alias* slices of the stacked tensors (same storage). So single-model code — a kernel
schedule that writes `layer.kernel.copy_(...)`, SET rewriting `layer.mask` and
`layer.weight.data` in place, an analysis reading `effective_weight()` — works on a
member unchanged and its writes reach the stack. `resync()` repairs the aliasing if a
callback *replaced* a tensor instead of writing into it.

Pitfall: during `train_stacked` a member's linear weight is a column-major view (the
stack keeps each weight in the layout its gradient arrives in, `adopt_gradient_layouts`),
so a callback must write through indexing or `copy_`: `.view(-1)` raises, and a write
into `.reshape(-1)` or `.flatten()` silently lands in a copy. `unstack` gives the members
contiguous tensors back when training ends.

Not stackable (run alone): models with BatchNorm (running statistics updated inside
vmap) or dropout (per-member random masks from a generator), and models whose
modules differ in anything but tensor values (see `structure_signature`).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.func import functional_call, vmap

from ..layers import SeededDropout

__all__ = ["StackedMembers", "stack_members", "structure_signature", "stackable"]


def structure_signature(model: nn.Module) -> tuple:
    """Everything but tensor values: module types, non-tensor attributes, tensor shapes.
    Two models with equal signatures compute the same function of their tensors.

    A module may name attributes that only decide what its tensors hold, never how the
    forward pass computes (`stack_value_attributes`, e.g. a spatial layer's kernel
    schedule, which a per-member callback evaluates into the kernel buffer); those may
    differ between members."""
    parts = []
    for name, module in model.named_modules():
        values = set(getattr(module, "stack_value_attributes", ()))
        attrs = tuple(sorted((k, repr(v)) for k, v in vars(module).items()
                             if not k.startswith("_") and k not in ("training", *values)
                             and not isinstance(v, torch.Tensor)))
        parts.append((name, type(module).__qualname__, attrs))
    tensors = [(n, tuple(t.shape), t.dtype) for n, t in (*model.named_parameters(), *model.named_buffers())]
    return tuple(parts), tuple(tensors)


def stackable(model: nn.Module) -> str | None:
    """None if `model` can be stacked, else the reason it cannot."""
    for module in model.modules():
        if getattr(module, "cannot_stack", None):
            return module.cannot_stack
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            return "BatchNorm updates running statistics per call"
        if isinstance(module, (nn.Dropout, SeededDropout)) and module.p > 0:
            return "dropout draws per-member masks"
        if any(t.layout != torch.strided for t in (*module.parameters(recurse=False), *module.buffers(recurse=False))):
            return "non-strided (sparse) tensors cannot be vmapped"
    return None


class StackedMembers:
    """M models as stacked tensors plus a vmapped functional forward.

    Attributes:
        members: the M member modules (tensors alias the stack).
        params: {name: leaf tensor (M, ...)} — what the optimizer updates.
        buffers: {name: tensor (M, ...)}.
    """

    def __init__(self, models: list[nn.Module]) -> None:
        signatures = {structure_signature(m) for m in models}
        if len(signatures) != 1:
            raise ValueError("members differ in structure; only tensor values may differ")
        for model in models:
            reason = stackable(model)
            if reason:
                raise ValueError(f"model cannot be stacked: {reason}")
        self.members = list(models)
        self.template = copy.deepcopy(models[0]).to("meta")
        with torch.no_grad():
            self.params = {n: torch.stack([dict(m.named_parameters())[n] for m in models]).requires_grad_()
                           for n, _ in models[0].named_parameters()}
            self.buffers = {n: torch.stack([dict(m.named_buffers())[n] for m in models])
                            for n, _ in models[0].named_buffers()}
        self.resync(force=True)

    def __len__(self) -> int:
        return len(self.members)

    def _alias(self, member: int, force: bool) -> None:
        model = self.members[member]
        for name, param in model.named_parameters():
            view = self.params[name].detach()[member]
            if force or param.data_ptr() != view.data_ptr():
                if not force:
                    view.copy_(param.detach())
                param.data = view
        for name, buf in model.named_buffers():
            view = self.buffers[name][member]
            if force or buf.data_ptr() != view.data_ptr():
                if not force:
                    view.copy_(buf)
                owner, _, leaf = name.rpartition(".")
                model.get_submodule(owner)._buffers[leaf] = view

    @torch.no_grad()
    def resync(self, force: bool = False) -> None:
        """Point every member tensor back at its slice of the stack (copying values a
        callback put in a replaced tensor into the stack first)."""
        for member in range(len(self.members)):
            self._alias(member, force)

    def adopt_gradient_layouts(self, loss_fn) -> dict[str, bool]:
        """Store each stacked parameter in the memory layout its gradient arrives in.

        Why: vmapped `F.linear` delivers a weight's gradient as (M, in, out) viewed as
        (M, out, in); autograd then adds it into a zeroed (M, out, in) buffer (or copies it
        into a fresh one): 15% of a CPU step for 8 members of a 784-1000-1000-10 MLP. A
        parameter stored in the gradient's layout takes the gradient over without a copy.
        Call before the optimizer exists; members are re-pointed at the new storage, so
        their weights may become column-major views (`unstack` makes them contiguous).

        Args:
            loss_fn: computes a scalar from `self.forward` (one probe backward; its
                gradients are dropped). Nothing random may run in it.

        Returns:
            {name: True where the parameter's layout now equals its gradient's}, so that
            only those gradients are dropped between steps (`StackedOptimizer.zero_grad`).
        """
        seen = {}
        handles = [p.register_hook(lambda g, n=n: seen.__setitem__(n, g.stride())) for n, p in self.params.items()]
        try:
            loss_fn().backward()
        finally:
            for handle in handles:
                handle.remove()
        with torch.no_grad():
            for name, p in self.params.items():
                p.grad = None
                stride = seen.get(name)
                if stride is not None and not _same_layout(p.shape, stride, p.stride()) \
                        and _member_major_dense(p.shape, stride):
                    self.params[name] = torch.empty_strided(p.shape, stride, dtype=p.dtype, device=p.device) \
                        .copy_(p).requires_grad_()
        self.resync(force=True)
        return {n: n in seen and _same_layout(p.shape, seen[n], p.stride()) for n, p in self.params.items()}

    @torch.no_grad()
    def unstack(self) -> None:
        """Give each member parameter stored in another layout a contiguous copy of its
        own (after training: a column-major view would refuse `.view`). Contiguous
        parameters and all buffers keep aliasing the stack."""
        self.resync()
        for model in self.members:
            for param in model.parameters():
                if not param.is_contiguous():
                    param.data = param.data.contiguous()

    def member_parameters(self, member: int) -> list[torch.Tensor]:
        """Member `member`'s parameters in the stack's parameter order."""
        named = dict(self.members[member].named_parameters())
        return [named[n] for n in self.params]

    def _call(self, params, buffers, x):
        return functional_call(self.template, (params, buffers), (x,))

    def forward(self, x: torch.Tensor, shared_input: bool = False) -> torch.Tensor:
        """Logits (M, B, classes) for inputs (M, B, ...) or, with shared_input, (B, ...)."""
        in_dims = (0, 0, None if shared_input else 0)
        return vmap(self._call, in_dims=in_dims, randomness="error")(self.params, self.buffers, x)

    def train(self, mode: bool = True) -> None:
        self.template.train(mode)
        for m in self.members:
            m.train(mode)


def _same_layout(shape, a, b) -> bool:
    """Strides `a` and `b` address `shape` alike (a size-1 dim's stride is never used)."""
    return all(x == y for n, x, y in zip(shape, a, b) if n > 1)


def _member_major_dense(shape, stride) -> bool:
    """Whether `stride` lays `shape` out densely, without overlap, with the member dim 0
    outermost (so that each run of members is one dense block)."""
    order = sorted((d for d in range(len(shape)) if shape[d] > 1), key=lambda d: stride[d])  # innermost first
    expected = 1
    for d in order:
        if stride[d] != expected:
            return False
        expected *= shape[d]
    return not order or order[-1] == 0 or shape[0] == 1


def stack_members(models: list[nn.Module]) -> StackedMembers:
    """Stack `models` (same structure, same device) into one `StackedMembers`."""
    return StackedMembers(models)
