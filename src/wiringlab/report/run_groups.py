"""A results folder's runs grouped by config, and what every statistic reads from them.

Shared by the results table, the comparisons and the analysis sections: a run counts in a
statistic only when it completed (diverged and failed runs are counted apart, never
averaged in).
"""

from __future__ import annotations

import math
from collections import OrderedDict

__all__ = ["group_by_label", "completed_runs", "stack_trained", "metric_values", "status_note"]


def group_by_label(summaries: list[dict]) -> "OrderedDict[str, list[dict]]":
    groups: OrderedDict[str, list[dict]] = OrderedDict()
    for s in summaries:
        groups.setdefault(s["label"], []).append(s)
    return groups


def completed_runs(runs: list[dict]) -> list[dict]:
    """The runs whose status is "completed": the only ones any statistic or curve averages."""
    return [r for r in runs if r.get("status") == "completed"]


def stack_trained(runs: list[dict]) -> bool:
    """True when a completed run of `runs` was trained in a stack of more than one member."""
    return any(((r.get("provenance") or {}).get("stack_size") or 1) > 1 for r in completed_runs(runs))


def metric_values(runs: list[dict], metric: str) -> list[float]:
    """`metric` of every completed run (NaN where a run lacks it); other statuses are left out."""
    out = []
    for r in completed_runs(runs):
        v = r.get(metric) if metric in ("best_test_acc", "wall_time_s") else r.get("final", {}).get(metric)
        out.append(math.nan if v is None else float(v))
    return out


def status_note(runs: list[dict]) -> str:
    """What did not complete, e.g. "1 diverged, 1 failed" ("" when every run completed)."""
    counts = OrderedDict()
    for r in runs:
        if r["status"] != "completed":
            counts[r["status"]] = counts.get(r["status"], 0) + 1
    return ", ".join(f"{n} {status}" for status, n in counts.items())
