"""Hidden units of a model as a permutable chain: weights, representations, shuffles.

A wiringlab MLP or LeNet is a chain of weight layers, convolutions then linear layers, in
which layer l+1 reads the units of layer l (after BatchNorm, activation, pooling and
dropout, which act unit by unit). A linear layer's units are its outputs; a convolution's
are its output channels (one filter each), and a linear layer reading a flattened C×H×W
map reads channel c as the block of H·W inputs c·H·W … (c+1)·H·W − 1. Permuting layer l's
units (its weight rows, bias and BatchNorm parameters and statistics) together with
layer l+1's inputs leaves the function unchanged for plain layers. A layer whose effective
weight multiplies `weight` by a fixed positional buffer (a spatial kernel) does not commute
with such a shuffle: `permutation_sensitivity` measures how much that matters.

No I/O; the only randomness is the permutation the caller passes in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from ..layers import effective_weight
from ..models import CONV_LAYERS, WEIGHT_LAYERS, named_weight_layers, run_with_hooks
from .similarity import permute_inputs

__all__ = ["NotAChainError", "UnitChain", "chain_layers", "unit_chain", "chain_weights", "chain_unit_extras",
           "permute_hidden_units_", "hidden_representations", "accuracy", "PermutationSensitivity",
           "permutation_sensitivity"]

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


class NotAChainError(ValueError):
    """The model's convolutions and linear layers do not feed one another, so units cannot be permuted through."""


@dataclass
class UnitChain:
    """The weight layers of a model in forward order, the norm layer after each, and names."""

    layers: list[nn.Module]
    norms: list[nn.Module | None]  # one per layer; None where no BatchNorm follows
    names: list[str]  # "conv0", "conv1", "linear0", ...: numbered per kind, so linearN = linear_layers(model)[N]
    paths: list[str]  # module names in the model, e.g. "features.0", "stack.hidden.0.0"


def _norm_after(model: nn.Module) -> dict[int, nn.Module]:
    found = {}
    for module in model.modules():
        if isinstance(module, nn.Sequential):
            items = list(module)
            for first, second in zip(items, items[1:]):
                if isinstance(second, _NORMS):
                    found[id(first)] = second
    return found


def chain_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(module name, module) of every convolution and linear layer, in registration order.

    Raises:
        NotAChainError: a transposed or grouped convolution, whose channels do not permute
            as independent units.
    """
    found = []
    for path, module in model.named_modules():
        if isinstance(module, nn.modules.conv._ConvTransposeNd):
            raise NotAChainError(f"`{path}` is a transposed convolution; permutation analyses handle "
                                 "Conv1d/2d/3d and linear layers")
        if isinstance(module, CONV_LAYERS) and module.groups != 1:
            raise NotAChainError(f"`{path}` is a grouped convolution (groups={module.groups}); its channels "
                                 "cannot be permuted one by one")
        if isinstance(module, WEIGHT_LAYERS):
            found.append((path, module))
    return found


def _check_links(layers: list[nn.Module], names: list[str]) -> None:
    for index, (layer, following) in enumerate(zip(layers, layers[1:])):
        out, fan_in = layer.weight.shape[0], following.weight.shape[1]
        reads_units = fan_in == out if isinstance(following, CONV_LAYERS) else fan_in % out == 0
        if not reads_units:
            raise NotAChainError(f"{names[index]} and {names[index + 1]} do not form a chain ({out} units feed "
                                 f"{fan_in} inputs); permutation analyses need layer l+1 to read layer l")


def unit_chain(model: nn.Module) -> UnitChain:
    """The model's convolutions and linear layers (`chain_layers`) as a chain, with their BatchNorms.

    Raises:
        NotAChainError: consecutive layers do not connect (a convolution's input channels
            are not the previous layer's units, or a linear layer's inputs are not a
            multiple of them), or a convolution is transposed or grouped.
        ValueError: a linear layer keeps its weight compressed (`CSRSparseLinear`).
    """
    found = chain_layers(model)
    paths, layers = [path for path, _ in found], [layer for _, layer in found]
    if any(isinstance(layer, nn.Linear) and layer.weight.dim() != 2 for layer in layers):
        raise ValueError("permutation analyses edit (out, in) weight rows; a layer stores its weight "
                         "compressed (CSR): build the model with csr_threshold: null "
                         "(execute.build_run_model(..., dense=True)) and load the weights into it")
    names_by_id = {id(module): name for name, module in named_weight_layers(model)}
    names = [names_by_id[id(layer)] for layer in layers]
    _check_links(layers, names)
    norms = _norm_after(model)
    return UnitChain(layers, [norms.get(id(layer)) for layer in layers], names, paths)


@torch.no_grad()
def chain_weights(model: nn.Module) -> list[torch.Tensor]:
    """The effective weights of the chain, W_0 … W_L: (out, in) for a linear layer, (out, in,
    kh, kw) for a 2-d convolution. Copies: a plain layer's effective weight is its parameter,
    which a later `load_state_dict` or permutation would change in place."""
    return [effective_weight(layer).detach().clone() for layer in unit_chain(model).layers]


@torch.no_grad()
def chain_unit_extras(model: nn.Module) -> list[torch.Tensor | None]:
    """Per hidden layer, an (out, k) tensor of the units' other parameters (bias,
    BatchNorm weight and bias), used as extra matching features; None when there are none."""
    chain = unit_chain(model)
    extras = []
    for layer, norm in zip(chain.layers[:-1], chain.norms[:-1]):
        columns = [layer.bias] if layer.bias is not None else []
        if norm is not None and norm.affine:
            columns += [norm.weight, norm.bias]
        extras.append(torch.stack([c.detach() for c in columns], dim=1) if columns else None)  # (out, k)
    return extras


def _permute_rows_(tensor: torch.Tensor | None, perm: torch.Tensor) -> None:
    if tensor is not None:
        tensor.copy_(tensor.index_select(0, perm))


@torch.no_grad()
def permute_hidden_units_(model: nn.Module, layer: int, perm: torch.Tensor, *, consistent: bool = True,
                          buffers_follow: Sequence[str] = ()) -> nn.Module:
    """Reorder the units of hidden layer `layer` of the chain in place.

    Moves the layer's parameters that have one entry per unit (raw `weight` rows, `bias`,
    e.g. a learnable per-unit scale), and its BatchNorm's weight, bias and running
    statistics. With `consistent`, also reorders the next layer's raw `weight` inputs
    (a linear layer's columns, or blocks of them for a flattened map; a convolution's input
    channels), so a plain network computes exactly the same function.
    Buffers move when they belong to units, as a layer's `unit_buffers` name them (a
    `SparseLinear`'s mask: its rows, and the next layer's mask columns; a `SpatialLinear`'s
    fixed scale); buffers that belong to positions (a spatial kernel, a locality prior)
    stay, which is what breaks the symmetry.

    Args:
        model: the model (modified in place).
        layer: index in `unit_chain(model).layers` (convolutions first, then linear
            layers; for an MLP, the index among `linear_layers(model)`); not the classifier.
        perm: LongTensor; unit `perm[i]` becomes unit i.
        consistent: also permute the next layer's inputs.
        buffers_follow: names of further buffers that move with the units, besides each
            layer's `unit_buffers` (e.g. ("kernel",), to carry a kernel along as a control).

    Returns:
        `model`.

    Raises:
        IndexError: `layer` is the classifier or out of range.
        ValueError: `perm` has the wrong length.
    """
    chain = unit_chain(model)
    if not 0 <= layer < len(chain.layers) - 1:
        hidden = f"0..{len(chain.layers) - 2}: {', '.join(chain.names[:-1])}" if len(chain.layers) > 1 else "none"
        raise IndexError(f"layer {layer} is not a hidden layer of the chain (hidden layers: {hidden})")
    target, norm = chain.layers[layer], chain.norms[layer]
    if len(perm) != target.weight.shape[0]:
        raise ValueError(f"permutation of length {len(perm)} for a layer of {target.weight.shape[0]} units")
    unknown = [name for name in buffers_follow if not hasattr(target, name)]
    if unknown:
        raise ValueError(f"buffers_follow names {unknown}, which layer {layer} ({type(target).__name__}) does not have")
    perm = perm.to(target.weight.device)
    for parameter in target.parameters(recurse=False):  # weight, bias, any per-unit parameter (a scale)
        if parameter.dim() >= 1 and parameter.shape[0] == len(perm):
            _permute_rows_(parameter, perm)
    for buffer in _unit_buffers(target, buffers_follow):
        _permute_rows_(buffer, perm)
    if norm is not None:
        for tensor in (norm.weight, norm.bias, norm.running_mean, norm.running_var):
            _permute_rows_(tensor, perm)
    if consistent:
        following = chain.layers[layer + 1]
        following.weight.copy_(permute_inputs(following.weight, perm))
        for buffer in _unit_buffers(following, buffers_follow):
            if buffer.dim() >= 2:
                buffer.copy_(permute_inputs(buffer, perm))
    return model


def _unit_buffers(layer: nn.Module, further: Sequence[str]) -> list[torch.Tensor]:
    """The buffers of `layer` that move with its units: its `unit_buffers` that it holds
    as buffers (a learnable scale is a parameter, moved with the parameters), and `further`."""
    buffers = dict(layer.named_buffers(recurse=False))
    names = dict.fromkeys((*getattr(layer, "unit_buffers", ()), *further))
    return [buffers[name] for name in names if buffers.get(name) is not None]


def _holds_chain_layer(module: nn.Module) -> bool:
    return any(isinstance(m, WEIGHT_LAYERS) for m in module.modules())


def _units_output(model: nn.Module, layer: nn.Module) -> nn.Module:
    """The module whose output is `layer`'s units as the next layer reads them: in the
    `nn.Sequential` that holds `layer`, the last module before the next weight layer
    (linear → BatchNorm → activation → dropout; conv → BatchNorm → activation → pooling).
    `layer` itself when no Sequential holds it."""
    for module in model.modules():
        if isinstance(module, nn.Sequential):
            items = list(module)
            start = next((i for i, item in enumerate(items) if item is layer), None)
            if start is not None:
                end = start + 1
                while end < len(items) and not _holds_chain_layer(items[end]):
                    end += 1
                return items[end - 1]
    return layer


@torch.no_grad()
def hidden_representations(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> list[torch.Tensor]:
    """The units of every hidden layer of the chain on inputs `x`, in eval mode.

    A unit's value is what the next layer reads (`_units_output`): for wiringlab models a
    linear layer's post-activation block output, a convolution's stage output after
    pooling, flattened channel-major; a layer outside an `nn.Sequential` contributes its
    own (pre-activation) output.

    Returns:
        One (n, features) tensor per hidden layer of `unit_chain(model)`, on `x`'s device.
    """
    layers = unit_chain(model).layers[:-1]
    outputs: list[list[torch.Tensor]] = [[] for _ in layers]
    hooks = [(_units_output(model, layer), lambda _m, _i, out, slot=slot: slot.append(out.detach().flatten(1)))
             for layer, slot in zip(layers, outputs)]
    run_with_hooks(model, x, batch_size, hooks)
    return [torch.cat(chunks) for chunks in outputs]


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> float:
    """Share of correct argmax predictions on (x, y), in eval mode."""
    was_training = model.training
    model.eval()
    correct = sum(int((model(x[s : s + batch_size]).argmax(1) == y[s : s + batch_size]).sum())
                  for s in range(0, len(x), batch_size))
    model.train(was_training)
    return correct / max(len(x), 1)


@dataclass(frozen=True)
class PermutationSensitivity:
    accuracy: float  # the model as trained
    shuffled: float  # layer's units permuted, next layer's inputs not
    consistent: float  # layer's units and next layer's inputs permuted together

    @property
    def drop_shuffled(self) -> float:
        return self.accuracy - self.shuffled

    @property
    def drop_consistent(self) -> float:
        """0 for a plain layer; > 0 when a positional buffer (a kernel) breaks the symmetry."""
        return self.accuracy - self.consistent


def permutation_sensitivity(model: nn.Module, x: torch.Tensor, y: torch.Tensor, layer: int, perm: torch.Tensor,
                            *, batch_size: int = 1024, buffers_follow: Sequence[str] = ()) -> PermutationSensitivity:
    """Accuracy on (x, y) before and after permuting hidden layer `layer`'s units by
    `perm`, without and with the matching permutation of the next layer's inputs.

    `model` is permuted in place and restored by the inverse permutation (an exact
    reordering of values), so it is unchanged afterwards, without copying the model.
    """
    inverse = torch.argsort(perm)
    results = []
    for consistent in (False, True):
        permute_hidden_units_(model, layer, perm, consistent=consistent, buffers_follow=buffers_follow)
        try:
            results.append(accuracy(model, x, y, batch_size))
        finally:
            permute_hidden_units_(model, layer, inverse, consistent=consistent, buffers_follow=buffers_follow)
    return PermutationSensitivity(accuracy(model, x, y, batch_size), results[0], results[1])
