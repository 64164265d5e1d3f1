"""Report section: within-network weight-space symmetry from the runs' snapshots.

For every completed run with a ``snapshots/`` folder (run config `snapshots:`), and
every snapshotted layer: the pairwise cosines of the units' incoming effective weights
at each snapshot (`wiringlab.analysis.symmetry`). Writes

- ``symmetry.csv``: one row per (run, layer, epoch): pairs, overlaps (|cos| > threshold),
  their share, the largest and the mean |cos|;
- a table in table.md: per config and layer, mean ± std over seeds at the first two
  snapshots (epoch 0 is init), a middle one and the last;
- ``figures/symmetry_hist_<config>_<layer>.png``: histograms of the cosines over training
  (small multiples, seeds pooled);
- ``figures/symmetry_scatter_<config>_<layer>.png``: each pair's cos(t) against cos(0).

The threshold and scatter epochs come from the recipe's `analysis.symmetry`.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from ..analysis.symmetry import cosine_trajectories, overlap_stats
from ..engine.snapshots import SNAPSHOT_DIR, read_snapshots
from ..experiment.config import AnalysisConfig
from ..experiment.store import write_csv
from ..seeding import make_generator
from .figures import plt, save_figure
from .names import figure_slug
from .stats import summarize

__all__ = ["symmetry_section"]

_COLUMNS = ["run_id", "label", "seed", "layer", "units", "epoch", "n_pairs", "n_overlaps", "share_overlaps",
            "max_abs_cos", "mean_abs_cos", "threshold"]
_MAX_PANELS = 12


def _spread(values: list[int], count: int) -> list[int]:
    """Up to `count` entries of sorted `values`, evenly spread, first and last included."""
    if len(values) <= count:
        return list(values)
    picks = np.unique(np.linspace(0, len(values) - 1, count).round().astype(int))
    return [values[i] for i in picks]


def _table_epochs(epochs: list[int]) -> list[int]:
    """The table's snapshots: the first two (init and the first epoch when both are
    snapshotted: where most of the change happens), a middle one and the last."""
    if len(epochs) <= 4:
        return list(epochs)
    return [epochs[0], epochs[1], epochs[len(epochs) // 2], epochs[-1]]


def _collect(out_dir: Path, summaries: list[dict], threshold: float):
    """CSV rows, and {(label, layer): [(epochs, (T, pairs) cosines) per run]}."""
    rows, trajectories = [], OrderedDict()
    for summary in summaries:
        if summary["status"] != "completed":
            continue
        snapshots = read_snapshots(out_dir / "runs" / summary["run_id"] / SNAPSHOT_DIR)
        layers = list(OrderedDict.fromkeys(k for _, tensors in snapshots for k in tensors))
        for layer in layers:
            present = [(epoch, tensors[layer]) for epoch, tensors in snapshots if layer in tensors]
            epochs = [epoch for epoch, _ in present]
            cosines = cosine_trajectories([w for _, w in present])  # (T, pairs)
            trajectories.setdefault((summary["label"], layer), []).append((epochs, cosines))
            for epoch, row in zip(epochs, cosines):
                stats = overlap_stats(row, threshold)
                rows.append({"run_id": summary["run_id"], "label": summary["label"], "seed": summary["seed"],
                             "layer": layer, "units": present[0][1].shape[0], "epoch": epoch,
                             "n_pairs": stats.n_pairs, "n_overlaps": stats.n_overlaps,
                             "share_overlaps": stats.share, "max_abs_cos": stats.max_abs_cos,
                             "mean_abs_cos": stats.mean_abs_cos, "threshold": threshold})
    return rows, trajectories


def _table(rows: list[dict], threshold: float) -> str:
    lines = ["", "## Weight-space symmetry within each network", "",
             f"Pairwise cosines of the hidden units' incoming effective weights; a pair overlaps when "
             f"|cos| > {threshold:g}. Mean ± sample std over seeds (n) at the first two snapshots (epoch 0 is "
             "init), a middle one and the last; every snapshot is in `symmetry.csv`.", "",
             "| config | layer | units | epoch | n | overlapping pairs | share of pairs "
             "| max \\|cos\\| | mean \\|cos\\| |",
             "|---|---|---|---|---|---|---|---|---|"]
    groups = OrderedDict()
    for row in rows:
        groups.setdefault((row["label"], row["layer"]), []).append(row)
    for (label, layer), group in groups.items():
        epochs = sorted({r["epoch"] for r in group})
        for epoch in _table_epochs(epochs):
            at = [r for r in group if r["epoch"] == epoch]
            cells = [summarize([r[k] for r in at]).format() for k in
                     ("n_overlaps", "share_overlaps", "max_abs_cos", "mean_abs_cos")]
            lines.append(f"| {label} | {layer} | {at[0]['units']} | {epoch} | {len(at)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _pooled(runs, epoch: int) -> torch.Tensor:
    return torch.cat([cos[epochs.index(epoch)] for epochs, cos in runs if epoch in epochs])


def _histograms(runs, title: str, threshold: float, path: Path) -> Path:
    epochs = _spread(sorted({e for epochs, _ in runs for e in epochs}), _MAX_PANELS)
    cols = min(4, len(epochs))
    rows = -(-len(epochs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 2.6 * rows + 0.6), squeeze=False, sharex=True,
                             layout="constrained")
    bins = np.linspace(-1, 1, 81)
    for ax, epoch in zip(axes.flat, epochs):
        values = _pooled(runs, epoch).numpy()
        ax.hist(values, bins=bins, weights=np.full(len(values), 1 / max(len(values), 1)), color="tab:blue")
        ax.set_yscale("log")
        for x in (-threshold, threshold):
            ax.axvline(x, color="tab:red", lw=0.8, ls="--")
        ax.set_title(f"epoch {epoch}", fontsize=9)
    for ax in list(axes.flat)[len(epochs):]:
        ax.axis("off")
    fig.supxlabel("cosine of incoming weights (pairs of units)")
    fig.supylabel("share of pairs (log)")
    fig.suptitle(f"{title} — {len(runs)} seed(s) pooled; dashed: ±{threshold:g}", fontsize=10)
    return save_figure(fig, path)


def _scatter_epochs(runs, wanted) -> list[int]:
    epochs = sorted({e for epochs, _ in runs for e in epochs})
    if wanted:
        return [e for e in wanted if e in epochs and e != epochs[0]] or epochs[-1:]
    later = epochs[1:] or epochs
    return _spread(later, 3)


def _scatter(runs, title: str, config, path: Path) -> Path:
    epochs = _scatter_epochs(runs, config.scatter_epochs)
    fig, axes = plt.subplots(1, len(epochs), figsize=(3.4 * len(epochs), 3.6), squeeze=False, layout="constrained")
    generator = make_generator(0, "symmetry-scatter")
    first = min(e for epochs_, _ in runs for e in epochs_)
    for ax, epoch in zip(axes[0], epochs):
        both = [(cos[e.index(first)], cos[e.index(epoch)]) for e, cos in runs if first in e and epoch in e]
        x, y = torch.cat([a for a, _ in both]), torch.cat([b for _, b in both])
        if len(x) > config.max_scatter_points:
            keep = torch.randperm(len(x), generator=generator)[: config.max_scatter_points]
            x, y = x[keep], y[keep]
        ax.scatter(x.numpy(), y.numpy(), s=2, alpha=0.3, lw=0, color="tab:blue")
        ax.plot([-1, 1], [-1, 1], color="grey", lw=0.8)
        for level in (-config.overlap_threshold, config.overlap_threshold):
            ax.axhline(level, color="tab:red", lw=0.8, ls="--")
        ax.set(xlim=(-1, 1), ylim=(-1, 1), xlabel=f"cos at epoch {first}", title=f"epoch {epoch}")
    axes[0][0].set_ylabel("cos at epoch t")
    fig.suptitle(f"{title} — each dot a pair of units ({len(runs)} seed(s))", fontsize=10)
    return save_figure(fig, path)


def symmetry_section(out_dir: Path, recipe: dict, summaries: list[dict]) -> tuple[str, dict[str, Path]]:
    """REPORT_SECTIONS entry (see module doc); ("", {}) when no run has snapshots."""
    out_dir = Path(out_dir)
    config = AnalysisConfig.model_validate(recipe.get("analysis") or {}).symmetry
    rows, trajectories = _collect(out_dir, summaries, config.overlap_threshold)
    if not rows:
        return "", {}
    write_csv(out_dir / "symmetry.csv", rows, _COLUMNS)
    figures = {}
    for (label, layer), runs in trajectories.items():
        if runs[0][1].shape[1] == 0:  # a single unit has no pairs
            continue
        name = f"{figure_slug(label)}_{layer}"
        title = f"{label}, {layer}"
        figures[f"symmetry_hist_{name}"] = _histograms(runs, title, config.overlap_threshold,
                                                       out_dir / "figures" / f"symmetry_hist_{name}.png")
        figures[f"symmetry_scatter_{name}"] = _scatter(runs, title, config,
                                                       out_dir / "figures" / f"symmetry_scatter_{name}.png")
    return _table(rows, config.overlap_threshold), {"symmetry_csv": out_dir / "symmetry.csv", **figures}
