"""Report sections for spatial priors, and epochs-to-threshold for every results folder.

- `kernel_section`: the kernel of each config's first prior layer as an image at the
  schedule's start, middle and end (from ``kernels.safetensors`` of the config's first
  run with one), one row per config → ``figures/spatial_kernels.png``.
- `sparsity_section`: effective sparsity (kernel and effective-weight) and mean kernel
  value over epochs, mean ± std band per config → ``figures/effective_sparsity.png``.
- `epochs_to_threshold_section`: per config, the first epoch at which test accuracy
  reaches each level (mean ± std over the runs that reached it, and how many did).
  Levels are 90%, 95% and 99% of the best config's mean final test accuracy (so they suit
  any dataset), or the recipe's `analysis.epochs_to_threshold` (other fractions, or
  absolute test accuracies as `levels`).

Each returns ("", {}) for a folder it has nothing to say about.
"""

from __future__ import annotations

import logging
import math
import textwrap
from pathlib import Path

from ..analysis.sparsity import epochs_to_threshold
from ..engine.spatial import KERNEL_SNAPSHOTS
from ..experiment.config import DEFAULT_THRESHOLD_FRACTIONS, AnalysisConfig
from ..experiment.store import RunFolder
from .figures import completed_histories, plot_learning_curves, save_figure
from .stats import summarize
from .table import completed_runs, group_by_label

import matplotlib.pyplot as plt  # noqa: E402  (after .figures, which selects the Agg backend)

__all__ = ["kernel_section", "sparsity_section", "epochs_to_threshold_section"]

log = logging.getLogger(__name__)

_SNAPSHOTS = tuple(KERNEL_SNAPSHOTS)  # start, middle, end


def _first_kernels(out_dir: Path, runs: list[dict]):
    """(layer name, {snapshot: array}) of the first prior layer of the first run that saved kernels."""
    for run in runs:
        folder = RunFolder(out_dir / "runs" / run["run_id"])
        if not (folder.path / "kernels.safetensors").exists():
            continue
        tensors = folder.read_weights("kernels.safetensors")
        layer = sorted({key.split(".")[0] for key in tensors}, key=lambda n: int(n.removeprefix("linear")))[0]
        return layer, {s: tensors[f"{layer}.{s}"].float().numpy() for s in _SNAPSHOTS}
    return None


def kernel_section(out_dir: Path, recipe: dict, summaries: list[dict]) -> tuple[str, dict[str, Path]]:
    rows = []
    for label, runs in group_by_label(summaries).items():
        found = _first_kernels(out_dir, completed_runs(runs))
        if found is not None:
            rows.append((label, *found))
    if not rows:
        return "", {}
    fig, axes = plt.subplots(len(rows), 3, figsize=(9, 2.2 * len(rows) + 0.6), squeeze=False)
    for r, ((label, layer, snaps), row) in enumerate(zip(rows, axes)):
        for ax, name in zip(row, _SNAPSHOTS):
            image = ax.imshow(snaps[name], vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto", interpolation="nearest")
            ax.tick_params(labelsize=6)
            if r == 0:
                ax.set_title(f"{name} of schedule (t={KERNEL_SNAPSHOTS[name]:g})", fontsize=8)
        row[0].set_ylabel("\n".join(textwrap.wrap(label, 28)) + f"\n{layer}: output unit", fontsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("input unit", fontsize=7)
    fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.6, label="kernel value")
    path = save_figure(fig, out_dir / "figures" / "spatial_kernels.png")
    markdown = ("\n## Spatial kernels\n\nThe kernel (output unit × input unit) of each config's first prior layer "
                "at the start, middle and end of its schedule.\n\n![spatial kernels](figures/spatial_kernels.png)\n")
    return markdown, {"spatial_kernels": path}


def sparsity_section(out_dir: Path, recipe: dict, summaries: list[dict]) -> tuple[str, dict[str, Path]]:
    histories = {}
    for label, runs in group_by_label(summaries).items():
        metrics = [h for h in completed_histories(out_dir, runs) if "kernel_sparsity" in h[0]]
        if metrics:
            histories[label] = metrics
    if not histories:
        return "", {}
    path = plot_learning_curves(histories, out_dir / "figures" / "effective_sparsity.png",
                                keys=("kernel_sparsity", "weight_sparsity", "kernel_mean"))
    markdown = ("\n## Effective sparsity\n\n`kernel_sparsity`: share of kernel entries below the layer's "
                "`sparsity_threshold` (default 0.1, the reference's); `weight_sparsity`: share of |W_eff| below "
                "`weight_threshold` (default 0.01) × the layer's largest |W_eff|; `kernel_mean`: mean kernel "
                "value; all pooled over the prior layers; mean ± sample std over seeds per epoch.\n\n"
                "![effective sparsity](figures/effective_sparsity.png)\n")
    return markdown, {"effective_sparsity": path}


def _threshold_cell(first_epochs: list[int | None]) -> str:
    reached = [e for e in first_epochs if e is not None]
    if not reached:
        return f"never (0/{len(first_epochs)})"
    s = summarize(reached)
    cell = f"{s.mean:.1f}" if s.n == 1 else f"{s.mean:.1f} ± {s.std:.1f}"
    return cell if len(reached) == len(first_epochs) else f"{cell} ({len(reached)}/{len(first_epochs)} reached)"


def _test_acc_curves(out_dir: Path, summaries: list[dict]) -> dict[str, list[list]]:
    curves = {}
    for label, runs in group_by_label(summaries).items():
        curves[label] = [[rec.get("test_acc") for rec in h] for h in completed_histories(out_dir, runs)]
    return curves


def _levels(recipe: dict, best: float) -> tuple[list[float], list[str], str]:
    """The accuracy levels of the recipe's `analysis.epochs_to_threshold`, their column names and
    a sentence saying what they are."""
    config = AnalysisConfig.model_validate(recipe.get("analysis") or {}).epochs_to_threshold
    if config.levels is not None:
        return list(config.levels), [f"≥ {lv:.4f}" for lv in config.levels], "levels set by the recipe"
    fractions = config.fractions or DEFAULT_THRESHOLD_FRACTIONS
    levels = [round(f * best, 4) for f in fractions]
    return (levels, [f"≥ {lv:.4f} ({f:.0%})" for lv, f in zip(levels, fractions)],
            f"levels are {', '.join(f'{f:.0%}' for f in fractions)} of the best config's mean final test "
            f"accuracy ({best:.4f})")


def epochs_to_threshold_section(out_dir: Path, recipe: dict, summaries: list[dict]) -> tuple[str, dict[str, Path]]:
    curves = _test_acc_curves(out_dir, summaries)
    finals = [summarize([c[-1] for c in runs]).mean for runs in curves.values() if runs]
    finals = [f for f in finals if math.isfinite(f)]
    if not finals or max(len(c) for runs in curves.values() for c in runs) < 2:
        return "", {}
    levels, columns, what = _levels(recipe, max(finals))
    lines = ["", "## Epochs to threshold", "",
             f"First epoch at which test accuracy reaches each level; {what}. Mean ± std over the runs that "
             "reached it.", "",
             f"| config | n | {' | '.join(columns)} |", "|---|---|" + "---|" * len(levels)]
    for label, runs in curves.items():
        if runs:
            firsts = [epochs_to_threshold(c, levels) for c in runs]  # (runs, levels)
            cells = [_threshold_cell([f[i] for f in firsts]) for i in range(len(levels))]
            lines.append(f"| {label} | {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n", {}
