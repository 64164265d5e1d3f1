"""Report section of multi-task runs: accuracy per task per config, and each config's
share of the ``separate`` baseline.

For every config (label) of a results folder whose runs are multi-task
(``summary["multitask"]``): mean ± std (n) of the final ``test_acc/<task>`` of each task
and of their mean; then, per task, ``mean acc(config) / mean acc(separate)`` — the share
of the separate-networks upper bound the config reaches (100% = as good as separate
networks). The separate baseline is the first config whose condition is ``separate``;
without one the share columns are left out. Figures: per-task test accuracy over
epochs (``figures/multitask_accuracy.png``) and, for the first config with task kernels,
each task's kernel on the first trunk layer at the start, middle and end of its
schedule (``figures/multitask_kernels.png``).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..engine.spatial import KERNEL_SNAPSHOTS
from ..engine.task_kernels import TASK_KERNELS_FILE
from ..experiment.store import RunFolder
from .figures import completed_histories, plot_learning_curves, save_figure
from .stats import summarize
from .table import group_by_label

import matplotlib.pyplot as plt  # noqa: E402  (after .figures, which selects the Agg backend)

__all__ = ["multitask_section", "separate_shares"]


def _multitask_groups(summaries: list[dict]) -> dict[str, list[dict]]:
    groups = {}
    for label, runs in group_by_label(summaries).items():
        done = [r for r in runs if r.get("status") == "completed" and r.get("multitask")]
        if done:
            groups[label] = done
    return groups


def _task_names(groups: dict[str, list[dict]]) -> list[str]:
    names: dict[str, None] = {}
    for runs in groups.values():
        for run in runs:
            names.update(dict.fromkeys(run["multitask"]["tasks"]))
    return list(names)


def _mean_acc(runs: list[dict], task: str | None):
    key = "test_acc" if task is None else f"test_acc/{task}"
    return summarize([r["final"].get(key) for r in runs])


def _setting_key(run: dict) -> str:
    """A run's grid/zip settings other than its condition: configs with equal keys differ in
    condition only, so a separate config with the same key is their reference."""
    axes = dict(run.get("axes") or {})
    axes.pop("multitask.condition", None)
    if isinstance(axes.get("multitask"), dict):
        axes["multitask"] = {k: v for k, v in axes["multitask"].items() if k != "condition"}
    return json.dumps(axes, sort_keys=True, default=str)


def separate_references(groups: dict[str, list[dict]]) -> dict[str, str]:
    """{config label: the label of the separate config that differs from it in condition
    only}; configs without one are left out (their share would divide by another setting)."""
    separate = {_setting_key(runs[0]): label for label, runs in groups.items()
                if runs[0]["multitask"]["condition"] == "separate"}
    return {label: separate[key] for label, runs in groups.items() if (key := _setting_key(runs[0])) in separate}


def separate_shares(groups: dict[str, list[dict]], tasks: list[str],
                    references: dict[str, str]) -> dict[str, dict[str, float]]:
    """Per config label with a reference (`separate_references`), per task (and "mean": the
    mean over tasks), its mean accuracy over its reference's. Pure: summaries in, ratios out."""
    shares = {}
    for label, reference_label in references.items():
        reference = {t: _mean_acc(groups[reference_label], t).mean for t in tasks}
        per_task = {t: _mean_acc(groups[label], t).mean / reference[t] if reference[t] else float("nan")
                    for t in tasks}
        per_task["mean"] = sum(per_task.values()) / len(tasks)
        shares[label] = per_task
    return shares


def _table(groups, tasks, references: dict[str, str]) -> list[str]:
    share_head = "".join(f" share of separate: {t} |" for t in tasks) + " share: mean |" if references else ""
    lines = ["| config | condition | n |" + "".join(f" test_acc/{t} |" for t in tasks) + " mean test_acc |" + share_head,
             "|---|---|---|" + "---|" * (len(tasks) + 1) + ("---|" * (len(tasks) + 1) if references else "")]
    shares = separate_shares(groups, tasks, references)
    for label, runs in groups.items():
        cells = [_mean_acc(runs, t).format() for t in tasks] + [_mean_acc(runs, None).format()]
        if references:
            cells += ([f"{100 * shares[label][t]:.1f}%" for t in (*tasks, "mean")] if label in shares
                      else ["–"] * (len(tasks) + 1))
        lines.append(f"| {label} | {runs[0]['multitask']['condition']} | {len(runs)} | " + " | ".join(cells) + " |")
    return lines


def _kernel_figure(out_dir: Path, groups) -> Path | None:
    for runs in groups.values():
        for run in runs:
            path = out_dir / "runs" / run["run_id"] / TASK_KERNELS_FILE
            if path.exists():
                return _plot_task_kernels(RunFolder(path.parent).read_weights(TASK_KERNELS_FILE), run,
                                          out_dir / "figures" / "multitask_kernels.png")
    return None


def _plot_task_kernels(tensors: dict, run: dict, path: Path) -> Path:
    tasks = run["multitask"]["tasks"]
    fig, axes = plt.subplots(len(tasks), len(KERNEL_SNAPSHOTS), figsize=(9, 2.4 * len(tasks) + 0.6), squeeze=False)
    for row, task in zip(axes, tasks):
        for ax, (snap, t) in zip(row, KERNEL_SNAPSHOTS.items()):
            image = ax.imshow(tensors[f"trunk0.{task}.{snap}"].float().numpy(), vmin=0.0, vmax=1.0, cmap="viridis",
                              aspect="auto", interpolation="nearest")
            ax.set_title(f"{task}: {snap} (t={t:g})", fontsize=8)
            ax.tick_params(labelsize=6)
        row[0].set_ylabel("trunk0: output unit", fontsize=7)
    fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.6, label="kernel value")
    fig.suptitle(f"per-task kernels of {run['label']}", fontsize=9)
    return save_figure(fig, path)


def multitask_section(out_dir: Path, recipe: dict, summaries: list[dict]) -> tuple[str, dict[str, Path]]:
    groups = _multitask_groups(summaries)
    if not groups:
        return "", {}
    tasks = _task_names(groups)
    references = separate_references(groups)
    lines = ["", "## Multi-task: accuracy per task", "",
             "Final test accuracy per task, mean ± sample std over seeds (n)"
             + ("; share of separate = mean accuracy / mean accuracy of the `separate` config that differs from "
                "it in condition only (separate networks, same batches and steps), per task; – where there is "
                "no such config; share: mean = the mean of those per-task shares (not the ratio of the mean "
                "accuracies)." if references else "; no `separate` config here, so no shares."), ""]
    lines += _table(groups, tasks, references)
    histories = {label: completed_histories(out_dir, runs) for label, runs in groups.items()}
    figures = {"multitask_accuracy": plot_learning_curves(histories, out_dir / "figures" / "multitask_accuracy.png",
                                                          keys=tuple(f"test_acc/{t}" for t in tasks))}
    lines += ["", "Per-task test accuracy over epochs: `figures/multitask_accuracy.png`.",
              "", "In the results table of a multi-task run, `train_loss` is the training objective, "
              "Σ loss_weight · cross-entropy over the tasks (it grows with the number of tasks), while "
              "`test_loss` and `test_acc` are the plain means of the tasks' `test_loss/<task>` and "
              "`test_acc/<task>`: compare each task's own columns, not `train_loss` with `test_loss`."]
    kernels = _kernel_figure(out_dir, groups)
    if kernels is not None:
        figures["multitask_kernels"] = kernels
        lines += ["Each task's kernel on the first trunk layer over its schedule: `figures/multitask_kernels.png`."]
    return "\n".join(lines) + "\n", figures
