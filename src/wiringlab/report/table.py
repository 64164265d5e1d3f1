"""summary.csv and table.md from the run summaries of a results folder."""

from __future__ import annotations

import json
import math
from collections import OrderedDict

from ..experiment.store import atomic_write_text, write_csv
from .stats import holm, summarize, welch_test

__all__ = ["group_by_label", "summary_rows", "write_summary_csv", "render_table", "PRIMARY_METRICS"]

PRIMARY_METRICS = ["test_acc", "test_loss", "train_acc", "train_loss", "best_test_acc", "wall_time_s"]
LOWER_IS_BETTER = {"test_loss", "train_loss", "wall_time_s"}


def summary_rows(summaries: list[dict]) -> list[dict]:
    """One flat row per run: identity, status, axes, final metrics."""
    rows = []
    for s in summaries:
        row = {"run_id": s["run_id"], "label": s["label"], "seed": s["seed"], "status": s["status"],
               "epochs": s.get("epochs"), "best_test_acc": s.get("best_test_acc"),
               "wall_time_s": s.get("wall_time_s")}
        row.update({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in s.get("axes", {}).items()})
        row.update({k: v for k, v in s.get("final", {}).items() if isinstance(v, (int, float)) or v is None})
        rows.append(row)
    return rows


def write_summary_csv(path, summaries: list[dict]) -> None:
    rows = summary_rows(summaries)
    columns = list(OrderedDict.fromkeys(k for row in rows for k in row))
    write_csv(path, rows, columns)


def group_by_label(summaries: list[dict]) -> "OrderedDict[str, list[dict]]":
    groups: OrderedDict[str, list[dict]] = OrderedDict()
    for s in summaries:
        groups.setdefault(s["label"], []).append(s)
    return groups


def _values(runs: list[dict], metric: str) -> list[float]:
    out = []
    for r in runs:
        if r["status"] != "completed":
            continue
        v = r.get(metric) if metric in ("best_test_acc", "wall_time_s") else r.get("final", {}).get(metric)
        out.append(math.nan if v is None else float(v))
    return out


def _metric_names(summaries: list[dict]) -> list[str]:
    extra = OrderedDict()
    for s in summaries:
        for k, v in s.get("final", {}).items():
            if k not in PRIMARY_METRICS and k != "lr" and isinstance(v, (int, float)):
                extra[k] = None
    return [m for m in PRIMARY_METRICS] + list(extra)


def _fmt(x: float, digits: int = 4) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.{digits}g}" if abs(x) >= 1e4 else f"{x:.{digits}f}"


def _status_note(runs: list[dict]) -> str:
    counts = OrderedDict()
    for r in runs:
        if r["status"] != "completed":
            counts[r["status"]] = counts.get(r["status"], 0) + 1
    return ", ".join(f"{n} {status}" for status, n in counts.items())


def _results_table(groups, metrics) -> list[str]:
    lines = ["| config | n | " + " | ".join(metrics) + " | not completed |",
             "|---|---|" + "---|" * len(metrics) + "---|"]
    for label, runs in groups.items():
        cells = []
        for m in metrics:
            s = summarize(_values(runs, m))
            cell = s.format()
            if s.n >= 2:
                cell += f" [{_fmt(s.ci_low)}, {_fmt(s.ci_high)}]"
            cells.append(cell)
        n = sum(r["status"] == "completed" for r in runs)
        lines.append(f"| {label} | {n} | " + " | ".join(cells) + f" | {_status_note(runs) or '–'} |")
    return lines


def _comparison_table(groups, baseline: str, metrics) -> list[str]:
    rows = []
    for label, runs in groups.items():
        if label == baseline:
            continue
        for m in metrics:
            c = welch_test(_values(runs, m), _values(groups[baseline], m))
            rows.append((label, m, c))
    adjusted = holm([c.p for _, _, c in rows])
    lines = ["| config | metric | difference vs baseline | Welch t | p | p (Holm) |", "|---|---|---|---|---|---|"]
    for (label, m, c), p_holm in zip(rows, adjusted):
        p = _fmt(c.p) if math.isfinite(c.p) else "n too small or no variance"
        lines.append(f"| {label} | {m} | {_fmt(c.difference)} | {_fmt(c.t, 3)} | {p} | {_fmt(p_holm)} |")
    return lines


def render_table(recipe: dict, summaries: list[dict]) -> str:
    """table.md: per config, mean ± sample std [95% CI] of each final metric over
    completed seeds, then each config against the baseline (Welch, Holm-adjusted)."""
    groups = group_by_label(summaries)
    metrics = _metric_names(summaries)
    baseline = recipe.get("baseline") or next(iter(groups), None)
    out = [f"# {recipe.get('name', 'results')}", ""]
    if recipe.get("question"):
        out += [f"**Question.** {recipe['question'].strip()}", ""]
    out += ["Final-epoch metrics per config: mean ± sample std [95% t-interval] over the completed "
            "seeds (n). Diverged or failed runs are counted apart, never averaged in.", ""]
    out += _results_table(groups, metrics)
    if baseline in groups and len(groups) > 1:
        compared = ["test_acc", "test_loss"] + [m for m in metrics if m not in PRIMARY_METRICS]
        out += ["", f"## Compared with the baseline `{baseline}`", "",
                "Difference of means, Welch's t-test over seeds, p-values Holm-corrected across all rows.", ""]
        out += _comparison_table(groups, baseline, compared)
    return "\n".join(out) + "\n"


def write_table(path, recipe: dict, summaries: list[dict], extra: str = "") -> None:
    """Write table.md; `extra` (markdown of analysis sections) is appended."""
    atomic_write_text(path, render_table(recipe, summaries) + extra)
