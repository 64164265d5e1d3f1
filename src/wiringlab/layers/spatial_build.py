"""A `SpatialLayerConfig` at a `LayerSite` → a `SpatialLinear`.

The config names the kernel, its parameters, the geometry, the mode and the schedule;
this file turns it into the pure objects of `wiringlab.kernels` / `wiringlab.schedules`
and builds the layer. The shuffled control draws its permutation from
``make_generator(shuffle_seed, "shuffle/linear<index>")`` on the CPU, so a control is
the same for every training seed and every device, and each layer gets its own.
"""

from __future__ import annotations

from ..kernels import KernelSpec
from ..schedules import Anneal, KernelSchedule, Sharpen, Static
from ..seeding import make_generator
from .spatial import SpatialLinear

__all__ = ["kernel_spec", "schedule_from_config", "build_spatial_linear"]


def kernel_spec(config, name: str | None = None) -> KernelSpec:
    """The `KernelSpec` of kernel ``name`` (default: the config's kernel) with the config's
    floor, k and sigma ("kernel" also means the config's kernel)."""
    name = config.kernel if name in (None, "kernel") else name
    return KernelSpec(name, floor=config.floor, k=config.k, sigma=config.sigma)


def schedule_from_config(config) -> KernelSchedule:
    """The schedule a `SpatialLayerConfig` describes."""
    schedule = config.schedule
    if schedule.kind == "static":
        return Static(kernel_spec(config))
    if schedule.kind == "anneal":
        return Anneal(kernel_spec(config, schedule.start), kernel_spec(config, schedule.end), schedule.shape)
    if schedule.kind == "sharpen":
        return Sharpen(kernel_spec(config), schedule.k_start, schedule.k_end, schedule.shape)
    raise ValueError(f"unknown schedule kind {schedule.kind!r}")


def build_spatial_linear(config, site, device, dtype) -> SpatialLinear:
    """`LAYER_BUILDERS["spatial"]`: the layer ``config`` describes at ``site``."""
    generator = None
    if config.shuffle_seed is not None:
        generator = make_generator(config.shuffle_seed, f"shuffle/linear{site.index}")
    return SpatialLinear(
        site.in_features, site.out_features, kernel=schedule_from_config(config),
        geometry=config.geometry, metric=config.metric, in_shape=site.in_shape,
        shuffle_generator=generator, mode=config.mode, scale=config.scale, device=device, dtype=dtype,
    )
