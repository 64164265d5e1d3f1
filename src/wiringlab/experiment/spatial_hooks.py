"""Where a run config's spatial priors become callbacks and loss terms.

`execute.build_callbacks` / `execute.build_penalties` call these. Prior layers are found
by pairing the model config's layer configs with the model's linear layers in forward
order (`models.linear_layer_configs` / `models.linear_layers`), so each layer's own
schedule, thresholds and decay settings apply to it.
"""

from __future__ import annotations

from ..engine.spatial import KernelScheduleCallback, PriorLayer, SpatialMetricsCallback
from ..layers.spatial import SpatialLinear
from ..models import linear_layer_configs, linear_layers
from ..regularizers import decay_penalty

__all__ = ["prior_layers", "spatial_callbacks", "spatial_penalties"]


def _layer_pairs(config, model):
    layers, configs = linear_layers(model), linear_layer_configs(config.model)
    if len(layers) != len(configs):
        raise RuntimeError(f"model has {len(layers)} linear layers but its config describes {len(configs)}")
    return [(f"linear{i}", layer, cfg) for i, (layer, cfg) in enumerate(zip(layers, configs))
            if isinstance(layer, SpatialLinear) and cfg.type == "spatial"]


def prior_layers(config, model) -> list[PriorLayer]:
    """Every spatial prior layer of ``model`` (built from ``config``), with its settings."""
    return [PriorLayer(name, layer, cfg.schedule.every, cfg.sparsity_threshold, cfg.weight_threshold)
            for name, layer, cfg in _layer_pairs(config, model)]


def spatial_callbacks(config, model) -> list:
    """The schedule and metrics callbacks of the run's prior layers (none without priors)."""
    priors = prior_layers(config, model)
    if not priors:
        return []
    return [KernelScheduleCallback(priors), SpatialMetricsCallback(priors)]


def spatial_penalties(config, model) -> list:
    """A decay term λ·Σ(W - target)² for every prior layer with ``decay > 0``."""
    return [decay_penalty(layer, cfg.decay, cfg.decay_target)
            for _, layer, cfg in _layer_pairs(config, model) if cfg.decay > 0]
