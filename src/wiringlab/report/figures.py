"""Figures of a results folder (matplotlib, Agg backend, PNG, written atomically)."""

from __future__ import annotations

import io
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display needed; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..experiment.store import RunFolder, atomic_write_bytes  # noqa: E402
from .run_files import read_finished_metrics  # noqa: E402
from .table import completed_runs  # noqa: E402

__all__ = ["save_figure", "completed_histories", "curve_band", "plot_learning_curves", "NO_COMPLETED"]

NO_COMPLETED = "no completed runs"


def save_figure(fig, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def completed_histories(out_dir: Path, runs: list[dict]) -> list[list[dict]]:
    """metrics.jsonl of each completed run of `runs` that logged an epoch.

    Diverged and failed runs are left out, as in the table: their epochs before the
    failure would pull a config's band towards a run that did not finish. A file with fewer
    epochs than its summary records is an error (`read_finished_metrics`), not a shorter curve."""
    histories = [read_finished_metrics(RunFolder(Path(out_dir) / "runs" / r["run_id"]), r)
                 for r in completed_runs(runs)]
    return [h for h in histories if h]


def curve_band(histories: list[list[dict]], key: str):
    """Epochs, mean and sample std of `key` over runs (ragged runs: per-epoch n varies). The
    std is NaN (no band drawn) where one run has a value: a spread of one is not zero."""
    epochs = max((len(h) for h in histories), default=0)
    mean, std = np.full(epochs, np.nan), np.full(epochs, np.nan)
    for e in range(epochs):
        values = [h[e].get(key) for h in histories if len(h) > e]
        values = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=float)
        if len(values):
            mean[e] = values.mean()
            if len(values) > 1:
                std[e] = values.std(ddof=1)
    return np.arange(1, epochs + 1), mean, std


def plot_learning_curves(histories_by_label: dict[str, list[list[dict]]], path: Path,
                         keys=("test_acc", "test_loss", "train_acc", "train_loss")) -> Path:
    """Mean ± std band per config of each metric over epochs, one panel per metric.

    Args:
        histories_by_label: {config label: per-run epoch records}; n in the legend is the
            number of histories. A config with none gets a legend entry saying so, no curve.
        path: where the PNG goes.
        keys: the metrics, one panel each.
    """
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for label, histories in histories_by_label.items():
            if not histories:  # legend entry only, so the config is not silently missing
                ax.plot([], [], " ", label=f"{label} ({NO_COMPLETED})")
                continue
            x, mean, std = curve_band(histories, key)
            if not len(x):
                continue
            line, = ax.plot(x, mean, label=f"{label} (n={len(histories)})")
            ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2)
        ax.set_xlabel("epoch")
        ax.set_title(key.replace("_", " "))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="best")
    fig.suptitle("mean ± sample std over completed seeds", y=1.03)
    return save_figure(fig, path)
