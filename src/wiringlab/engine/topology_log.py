"""Per-epoch record of where sparse layers' connections go (the input of the topology report).

At the start of training and after every epoch (after SET evolution, so epoch e shows
the topology that epoch e + 1 trains with), the callback counts the active
connections leaving each input unit of every `SparseLinear`
(`analysis.topology.connections_per_input`) and rewrites
``<run_dir>/topology.safetensors``: one tensor per layer, named as in
effective_weights.safetensors ("linear0", ...), of shape (epochs + 1, H, W) for a layer
on images or (epochs + 1, in) otherwise. For the first layer with a spatial layout it
returns the index, chi-square statistic and p-value as epoch metrics.
"""

from __future__ import annotations

import torch

from ..analysis.topology import connections_per_input, possible_connections_per_count, topology_summary
from ..layers.sparse import SparseLinear
from .callbacks import Callback, TrainState

__all__ = ["TopologyLogger", "TOPOLOGY_FILE"]

TOPOLOGY_FILE = "topology.safetensors"


class TopologyLogger(Callback):
    """Record connection counts per input unit of `named_layers` once per epoch.

    Args:
        named_layers: (name, layer) pairs, e.g. [("linear0", first_sparse_layer)].

    Attributes:
        history: {name: [counts at epoch 0, counts after epoch 1, ...]}.
    """

    def __init__(self, named_layers: list[tuple[str, SparseLinear]]) -> None:
        self.named_layers = list(named_layers)
        self.history: dict[str, list[torch.Tensor]] = {name: [] for name, _ in self.named_layers}
        self._logged = next(((name, possible_connections_per_count(layer.out_features, layer.in_shape))
                             for name, layer in self.named_layers if layer.in_shape is not None), None)

    def _record(self, state: TrainState) -> None:
        for name, layer in self.named_layers:
            self.history[name].append(connections_per_input(layer.mask, layer.in_shape).to(torch.float32))
        if state.run_dir is not None:
            from safetensors.torch import save

            from ..experiment.store import atomic_write_bytes

            tensors = {name: torch.stack(counts).contiguous() for name, counts in self.history.items()}
            atomic_write_bytes(state.run_dir / TOPOLOGY_FILE, save(tensors))

    def on_train_start(self, state: TrainState) -> None:
        self._record(state)

    def on_epoch_end(self, state: TrainState) -> dict[str, float] | None:
        self._record(state)
        if self._logged is None:
            return None
        name, fan_out = self._logged
        return topology_summary(self.history[name][-1].to(torch.float64), fan_out)
