"""Many models of one architecture as one: parameters and buffers stacked on a leading
member dim M, the forward pass vmapped over members.

After `stack_members`, each member module still exists and its parameters and buffers
*alias* slices of the stacked tensors (same storage). So single-model code — a kernel
schedule that writes `layer.kernel.copy_(...)`, SET rewriting `layer.mask` and
`layer.weight.data` in place, an analysis reading `effective_weight()` — works on a
member unchanged and its writes reach the stack. `resync()` repairs the aliasing if a
callback *replaced* a tensor instead of writing into it.

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


def stack_members(models: list[nn.Module]) -> StackedMembers:
    """Stack `models` (same structure, same device) into one `StackedMembers`."""
    return StackedMembers(models)
