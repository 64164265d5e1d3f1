"""SET evolution as a training callback: prune and regrow every `interval` epochs.

The callback owns no rule: it reads each `SparseLinear`'s weight and mask, calls the
pure functions of `wiringlab.sparse` (prune → regrow → new mask), writes the result
back and resets the optimizer state at every touched entry. Like the reference SET,
it never evolves after the last epoch, so the saved weights are the evaluated ones.

The `distance` rule regrows at random with probability ∝ a kernel of the distance
between output and input units; its (out, in) probability matrices are built once.
The `gradient` (RigL) rule needs dL/dW_eff at empty positions, which the masked
`weight.grad` does not hold. The callback captures it on the last batch of an epoch
that evolves: a forward hook keeps the layer input x and a hook on the output keeps
its gradient g, and the dense gradient is gᵀx, (out, B) @ (B, in). Only that rule
allocates a dense (out, in) gradient, once per evolution.
"""

from __future__ import annotations

import logging

import torch

from ..layers.sparse import SparseLinear, glorot_bound
from ..seeding import make_generator
from ..sparse import apply_evolution, prune_active, regrow, regrown_values, zeta_at
from .callbacks import Callback, TrainState

__all__ = ["SETCallback", "evolve_layer_", "sparse_layers", "distance_probabilities"]

log = logging.getLogger(__name__)


def sparse_layers(model: torch.nn.Module) -> list[SparseLinear]:
    """The `SparseLinear` layers of `model`, in module order."""
    return [m for m in model.modules() if isinstance(m, SparseLinear)]


@torch.no_grad()
def evolve_layer_(layer: SparseLinear, optimizer: torch.optim.Optimizer | None, zeta: float, config,
                  generator: torch.Generator, *, dense_grad: torch.Tensor | None = None,
                  probability: torch.Tensor | None = None) -> int:
    """One SET step on `layer`, in place: prune, regrow as many, re-initialise, and zero
    the gradient and optimizer state at every pruned and regrown entry.

    Args:
        layer: the sparse layer, either layout (its `weight` and `mask` change, through
            `layer.apply_evolution_`).
        optimizer: whose state for `layer.weight` is zeroed at pruned and regrown
            entries (and, in the CSR layout, moved into the new order); None when there
            is none yet.
        zeta: fraction pruned (see `sparse.prune`).
        config: a `SETConfig` (prune, regrow, regrow_init, regrow_scale).
        generator: draws regrown positions and initial values.
        dense_grad, probability: what the `gradient` and `distance` rules need.

    Returns:
        The number of connections moved (pruned = regrown).
    """
    positions = layer.active_positions()  # either layout; the CSR one reads no dense weight
    values = layer.active_values(positions)
    mask = layer.mask.bool()
    pruned = prune_active(config.prune, positions, values, zeta)
    after_prune = apply_evolution(mask, pruned, pruned.new_empty(0))
    regrown = regrow(config.regrow, after_prune, len(pruned), generator,
                     dense_grad=dense_grad, probability=probability)
    new_mask = apply_evolution(mask, pruned, regrown)
    scale = config.regrow_scale if config.regrow_scale is not None else glorot_bound(layer)
    grown = regrown_values(len(regrown), config.regrow_init, scale, generator, dtype=values.dtype,
                           device=values.device)
    layer.apply_evolution_(pruned, regrown, grown, new_mask, optimizer)  # bool: copy_ converts, no float temporary
    return len(pruned)


def distance_probabilities(layers: list[SparseLinear], config) -> list[torch.Tensor]:
    """Per layer, the (out, in) regrowth weights of the `distance` rule: the kernel of
    `config` (a `DistanceRegrowConfig`) at the layer's normalised output–input distances
    (`geometry.layer_distance`, inputs at their pixels when the layer knows `in_shape`)."""
    from ..geometry import layer_distance
    from ..kernels import KernelSpec

    spec = KernelSpec(config.kernel, floor=config.floor, k=config.k, sigma=config.sigma)
    return [spec.evaluate(layer_distance(layer.out_features, layer.in_features, config.geometry, config.metric,
                                         in_shape=layer.in_shape, device=layer.mask.device))
            for layer in layers]


class _DenseGradientCapture:
    """Hooks that record dL/dW_eff = gᵀx of one forward/backward pass per layer."""

    def __init__(self, layers: list[SparseLinear]) -> None:
        self.grads: dict[int, torch.Tensor] = {}
        self._handles = [layer.register_forward_hook(self._on_forward) for layer in layers]

    def _on_forward(self, layer, inputs, output) -> None:
        if not output.requires_grad:
            return
        # in the weight's dtype: under bf16 autocast one of x and g is bf16, the other fp32
        x = inputs[0].detach().reshape(-1, layer.in_features).to(layer.weight.dtype)  # (B, in)

        def on_grad(g: torch.Tensor) -> None:
            dense = g.detach().reshape(-1, layer.out_features).to(x.dtype).t() @ x  # (out, in)
            key = id(layer)
            self.grads[key] = self.grads[key] + dense if key in self.grads else dense

        output.register_hook(on_grad)

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


class SETCallback(Callback):
    """Evolve `layers` every `config.interval` epochs (not after the last epoch).

    Args:
        layers: the sparse layers to evolve (e.g. `sparse_layers(model)`).
        config: a `SETConfig`.
        probabilities: per layer, the probability matrix of the `distance` rule; None
            builds them from `config.distance` (`distance_probabilities`).

    Returns from `on_epoch_end` (epochs that evolve): {"set_zeta": ζ used}.
    """

    def __init__(self, layers: list[SparseLinear], config, probabilities: list[torch.Tensor] | None = None) -> None:
        if not layers:
            raise ValueError("SET evolution needs SparseLinear layers; the model has none "
                             "(set model.layer.type=sparse)")
        self.layers, self.config = list(layers), config
        if probabilities is None and config.regrow == "distance":
            probabilities = distance_probabilities(self.layers, config.distance)
        self.probabilities = probabilities or [None] * len(self.layers)
        self.generator: torch.Generator | None = None
        self._capture: _DenseGradientCapture | None = None

    def _evolves_after(self, epoch: int, epochs: int) -> bool:
        return epoch % self.config.interval == 0 and epoch < epochs

    def on_train_start(self, state: TrainState) -> None:
        self.generator = make_generator(state.seed, "evolution", state.device)
        # built with the callback, perhaps before the model moved to its device
        self.probabilities = [None if p is None else p.to(layer.mask.device)
                              for p, layer in zip(self.probabilities, self.layers, strict=True)]

    def on_step_start(self, state: TrainState) -> None:
        if self.config.regrow != "gradient":
            return
        epoch, position = divmod(state.step, state.steps_per_epoch)
        if position == state.steps_per_epoch - 1 and self._evolves_after(epoch + 1, state.epochs):
            self._capture = _DenseGradientCapture(self.layers)

    def on_step_end(self, state: TrainState) -> None:
        if self._capture is not None:
            self._capture.remove()

    def on_epoch_end(self, state: TrainState) -> dict[str, float] | None:
        if not self._evolves_after(state.epoch, state.epochs):
            return None
        zeta = zeta_at(self.config.zeta, self.config.zeta_schedule, state.progress)
        grads = self._capture.grads if self._capture is not None else {}
        if self.config.regrow == "gradient" and len(grads) != len(self.layers):
            raise RuntimeError("regrow=gradient: no dense gradient was captured in this epoch's last step")
        for layer, probability in zip(self.layers, self.probabilities):
            evolve_layer_(layer, state.optimizer, zeta, self.config, self.generator,
                          dense_grad=grads.get(id(layer)), probability=probability)
        self._capture = None
        return {"set_zeta": zeta}
