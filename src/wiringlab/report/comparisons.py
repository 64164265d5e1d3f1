"""Configs compared over seeds: each against the baseline, and the recipe's head-to-head pairs.

Every comparison is a difference of means with Welch's t-test over the completed seeds of
each side. Holm's correction runs over one family per metric, and that family holds every
test of the metric in the report: the configs against the baseline *and* the pairs, so a
recipe that lists more pairs pays for them in its adjusted p-values (with no pairs the
family is the baseline comparisons alone, as before pairs existed).

Pitfall: with n = 2 or 3 seeds per side a test has little power; "not shown different"
is not evidence of no difference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .run_groups import completed_runs, metric_values
from .stats import Comparison, holm, summarize, welch_test

__all__ = ["ComparisonRow", "compare_configs", "COMPARISON_CAPTION", "PAIRS_CAPTION"]

COMPARISON_CAPTION = ("Difference of means, Welch's t-test over seeds, p-values Holm-corrected over the configs "
                      "compared on each metric (one family per metric).")
PAIRS_CAPTION = ("Each config minus the one it is paired with under the recipe's `pairs`. Their tests join the "
                 "baseline comparisons' Holm family of the same metric, so both tables' adjusted p-values account "
                 "for every test made.")


@dataclass(frozen=True)
class ComparisonRow:
    label: str
    against: str  # the baseline, or the config a pair names second
    metric: str
    n: int  # finite values of this config
    n_against: int  # finite values of `against`
    test: Comparison  # label − against
    p_holm: float
    note: str  # why there is no p-value ("" when there is one)


def _untestable_note(test: Comparison, n: int, n_against: int) -> str:
    if n < 2 or n_against < 2:
        return f"n too small to test (n = {n} vs {n_against}; Welch needs ≥ 2 per side)"
    if not math.isfinite(test.p):
        return "no variance on either side: t undefined"
    return ""


def _never_logs(runs: list[dict], metric: str) -> bool:
    """Completed runs that all lack `metric` (a config without a kernel has no kernel_mean):
    nothing to compare, unlike a config whose runs all diverged (n = 0, said so)."""
    done = completed_runs(runs)
    return bool(done) and not any(metric in r.get("final", {}) or metric in r for r in done)


def _tests(groups, compared: list[tuple[str, str, bool]], metrics: list[str]) -> list[tuple]:
    """(label, against, is_pair, metric, n, n_against, Welch test) of each comparison and metric
    both sides log."""
    raw = []
    for label, against, is_pair in compared:
        for m in metrics:
            if _never_logs(groups[label], m) or _never_logs(groups[against], m):
                continue
            a, b = metric_values(groups[label], m), metric_values(groups[against], m)
            raw.append((label, against, is_pair, m, summarize(a).n, summarize(b).n, welch_test(a, b)))
    return raw


def _unfinished_pairs(groups, pairs: list[tuple[str, str]]) -> list[str]:
    """One line per pair that has a side without finished runs: it is left out, and said so."""
    out = []
    for label, against in pairs:
        missing = [f"`{side}`" for side in (label, against) if side not in groups]
        if len(missing) == 2:
            out.append(f"`{label}` against `{against}`: neither has finished runs yet")
        elif missing:
            out.append(f"`{label}` against `{against}`: {missing[0]} has no finished runs yet")
    return out


def compare_configs(groups, baseline: str | None, pairs, metrics: list[str]):
    """Every config against `baseline`, and each of `pairs`, with Holm over all of them per metric.

    Args:
        groups: {config label: its runs' summaries}, finished runs only.
        baseline: the baseline's label, or None for no baseline comparisons (the caller has
            a reason: no runs, only one config).
        pairs: (label, against) head-to-head comparisons; a pair whose side has no finished
            runs is not compared.
        metrics: the metrics to compare; a metric a side never logs is skipped for it.

    Returns:
        (rows against the baseline, rows of the pairs, one note per pair left out).
    """
    compared = [(label, baseline, False) for label in groups if baseline is not None and label != baseline]
    compared += [(a, b, True) for a, b in pairs if a in groups and b in groups]
    raw = _tests(groups, compared, metrics)
    adjusted = {}  # one family per metric: test_acc's correction does not grow with the diagnostics logged
    for m in metrics:
        family = [i for i, row in enumerate(raw) if row[3] == m]
        adjusted.update(zip(family, holm([raw[i][6].p for i in family])))
    rows = [(is_pair, ComparisonRow(label, against, m, n, nb, test, adjusted[i], _untestable_note(test, n, nb)))
            for i, (label, against, is_pair, m, n, nb, test) in enumerate(raw)]
    return ([row for is_pair, row in rows if not is_pair], [row for is_pair, row in rows if is_pair],
            _unfinished_pairs(groups, pairs))
