"""Figures of the locality-prior report section (`report.locality`): the prior of a centre and a
corner unit, class-mean activation maps of control and treatment, per-class variance bars."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
import torch

from ..analysis.clustering import center_over_classes, class_mean_maps, grid_cells, to_grid
from ..geometry import grid_shape
from .figures import save_figure

import matplotlib.pyplot as plt  # noqa: E402  (after .figures, which selects the Agg backend)

__all__ = ["centre_unit", "plot_priors", "plot_class_maps", "plot_variance_bars"]


def centre_unit(n: int) -> int:
    """The unit nearest the centre of its most-square grid (the first of equals)."""
    rows, cols = grid_shape(n)
    centre = torch.tensor([(rows - 1) / 2, (cols - 1) / 2], dtype=torch.float64)
    return int((grid_cells(n) - centre).square().sum(1).argmin())


def _wrap(label: str, width: int = 30) -> str:
    return "\n".join(textwrap.wrap(label, width))


def plot_priors(layers: list[tuple[str, torch.nn.Module]], path: Path) -> Path:
    """Per treatment config, the prior row of its centre and its corner (unit 0) output unit,
    drawn on the input grid."""
    fig, axes = plt.subplots(len(layers), 2, figsize=(6.0, 2.6 * len(layers)), squeeze=False, layout="constrained")
    for row, (label, layer) in zip(axes, layers):
        kernel = layer.kernel.detach().cpu()  # (out, in)
        rows, cols = grid_shape(kernel.shape[0])
        for ax, unit, name in zip(row, (centre_unit(kernel.shape[0]), 0), ("centre", "corner")):
            image = ax.imshow(to_grid(kernel[unit]).numpy(), vmin=0.0, vmax=float(kernel.max()), cmap="viridis",
                              interpolation="nearest")
            ax.set_title(f"{name} unit {unit} (cell {unit // cols},{unit % cols} of {rows}x{cols})", fontsize=7)
            ax.set_xticks([]), ax.set_yticks([])
            fig.colorbar(image, ax=ax, shrink=0.8)
        row[0].set_ylabel(_wrap(label), fontsize=7)
    fig.suptitle("locality prior P of one output unit over the input grid", fontsize=9)
    return save_figure(fig, path)


def _map_rows(control: dict, treated: dict) -> list[tuple[str, torch.Tensor]]:
    rows = []
    for kind in ("raw", "centered"):
        for side in ("input", "output"):
            for name, net in (("control", control), ("treatment", treated)):
                means = class_mean_maps(net[side], net["labels"], net["num_classes"])  # (C, n)
                rows.append((f"{name}\n{side}, {kind}", center_over_classes(means) if kind == "centered" else means))
    return rows


def plot_class_maps(pair, control: dict, treated: dict, seed: int, path: Path) -> Path:
    """Class-mean activation maps (columns: classes) of the prior block's input and output, raw
    and centered over classes, control and treatment networks of one seed (rows). Each row has
    one colour scale over its classes (its colour bar at the right), so classes compare within a
    row; centered rows are symmetric around 0; empty grid cells are blank."""
    rows = _map_rows(control, treated)
    classes = rows[0][1].shape[0]
    fig, axes = plt.subplots(len(rows), classes, figsize=(1.0 * classes + 1.2, 1.05 * len(rows) + 0.8), squeeze=False)
    for axes_row, (name, maps) in zip(axes, rows):
        grid = to_grid(maps).numpy()  # (C, rows, cols)
        finite = np.isfinite(grid).any()
        signed = "centered" in name
        limit = float(np.nanmax(np.abs(grid))) if finite else 1.0
        low, high = (-limit, limit) if signed else ((float(np.nanmin(grid)), float(np.nanmax(grid))) if finite
                                                      else (0.0, 1.0))
        for c, ax in enumerate(axes_row):
            image = ax.imshow(grid[c], cmap="RdBu_r" if signed else "viridis", vmin=low, vmax=high,
                              interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
        fig.colorbar(image, ax=list(axes_row), shrink=0.8, pad=0.01).ax.tick_params(labelsize=5)
        axes_row[0].set_ylabel(name, fontsize=6)
    for c, ax in enumerate(axes[0]):
        ax.set_title(f"class {c}", fontsize=7)
    fig.suptitle(_wrap(f"class-mean maps, seed {seed}: {pair.control} (control) vs {pair.treatment}", 90), fontsize=8)
    return save_figure(fig, path)


def _bars(ax, nets: dict, offset: float, width: float, label: str) -> None:
    values = torch.stack([n["class_variance"][0] for n in nets.values()]).numpy()  # (networks, C)
    mean = np.nanmean(values, axis=0)
    std = np.nanstd(values, axis=0, ddof=1) if len(values) > 1 else np.zeros_like(mean)
    ax.bar(np.arange(len(mean)) + offset, mean, width, yerr=std, capsize=2, label=f"{label} (n={len(values)})")


def plot_variance_bars(analysed: list, path: Path) -> Path:
    """Per pair, per class: mean per-image spatial variance, mean ± std over networks, treatment
    and control; the title gives the across-seeds test and the per-seed tests' direction."""
    fig, axes = plt.subplots(len(analysed), 1, figsize=(7.5, 3.0 * len(analysed)), squeeze=False,
                             layout="constrained")
    for ax, (pair, treated, control, (seed_tests, across)) in zip(axes[:, 0], analysed):
        _bars(ax, control, -0.2, 0.4, "control")
        _bars(ax, treated, 0.2, 0.4, "treatment")
        lower = sum(1 for t in seed_tests if t.overall.statistic < 0 and t.overall.p < 0.05)
        p = "–" if math.isnan(across.p) else f"{across.p:.3g}"
        ax.set_title(_wrap(f"{pair.treatment} vs {pair.control}: across seeds t={across.statistic:.3g}, p={p}; "
                           f"treatment lower at p<0.05 in {lower}/{len(seed_tests)} seeds", 100), fontsize=7)
        ax.set_ylabel("spatial variance (cells²)", fontsize=7)
        ax.set_xticks(range(len(next(iter(treated.values()))["class_variance"][0])))
        ax.legend(fontsize=6)
    axes[-1, 0].set_xlabel("class")
    return save_figure(fig, path)
