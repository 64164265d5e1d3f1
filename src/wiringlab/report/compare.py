"""Several results folders side by side: `wiringlab compare DIR1 DIR2 ...`.

For each config label and metric, one column per folder with mean ± sample std (n)
over that folder's completed seeds, e.g. the same recipe run on two datasets, or
before and after a change. The statistics are `report.stats.summarize`, as in table.md.
"""

from __future__ import annotations

import difflib
import json
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from ..experiment.store import atomic_write_text
from .build import load_results
from .errors import UnknownMetricError
from .html import html_page
from .markdown import markdown_to_html
from .stats import Summary, summarize
from .table import (NOT_COMPARED, STACK_SHARE_NOTE, STACK_SHARED_METRICS, completed_runs, group_by_label, metric_names,
                    metric_values, mixed_device_warnings, override_settings, stack_trained, status_note)

__all__ = ["FolderResults", "load_folders", "check_metrics", "render_comparison", "write_comparison",
           "settings_as_run"]


@dataclass(frozen=True)
class FolderResults:
    name: str  # column header: the folder name, or its path when names repeat
    recipe: dict
    cells: dict[tuple[str, str], Summary]  # (label, metric) -> statistics
    labels: list[str]
    metrics: list[str]
    runs: int
    stacked: frozenset[str] = frozenset()  # labels whose runs trained in a stack: STACK_SHARED_METRICS have no spread
    not_completed: dict[str, str] = field(default_factory=dict)  # label -> "1 diverged, 2 failed"
    completed: int = 0  # runs that completed (the others are in `not_completed`)
    warnings: list[str] = field(default_factory=list)  # table.md's warnings (seeds on mixed devices)
    none_completed: frozenset[str] = frozenset()  # labels with runs, none of them completed


def _column_names(dirs: list[Path]) -> list[str]:
    names = [d.name or str(d) for d in dirs]
    return names if len(set(names)) == len(names) else [str(d) for d in dirs]


def load_folders(dirs: list[Path]) -> list[FolderResults]:
    """Statistics of every (config label, metric) of each folder.

    Raises:
        FileNotFoundError: a folder is not a results folder (no recipe.json).
        CorruptResultsError: a file of a folder does not parse (`load_results`).
    """
    dirs = [Path(d) for d in dirs]
    out = []
    for name, folder in zip(_column_names(dirs), dirs):
        recipe, summaries = load_results(folder)
        groups = group_by_label(summaries)
        metrics = [m for m in metric_names(summaries) if m not in NOT_COMPARED]  # per-run tests: not averaged
        cells = {(label, m): summarize(metric_values(runs, m)) for label, runs in groups.items() for m in metrics}
        stacked = frozenset(label for label, runs in groups.items() if stack_trained(runs))
        notes = {label: note for label, runs in groups.items() if (note := status_note(runs))}
        unrun = frozenset(label for label, runs in groups.items() if not completed_runs(runs))
        out.append(FolderResults(name, recipe, cells, list(groups), metrics, len(summaries), stacked, notes,
                                 len(completed_runs(summaries)), mixed_device_warnings(groups), unrun))
    return out


def _cell(summary: Summary | None, stack_share: bool = False, not_completed: str = "",
          none_completed: bool = False) -> str:
    """"mean ± std (n=k)", with the config's runs that did not complete ("; 1 diverged"), or
    "– (3 diverged)" when none completed: a config that blew up is not one that never ran."""
    if summary is None or summary.n == 0:
        return f"– ({not_completed})" if none_completed and not_completed else "–"
    also = f"; {not_completed}" if not_completed else ""
    if stack_share:  # equal by construction: a spread would measure nothing (STACK_SHARE_NOTE)
        return f"{summary.mean:.4f} (stack share, n={summary.n}{also})"
    return f"{summary.format().removesuffix(' (n=1)')} (n={summary.n}{also})"


def check_metrics(folders: list[FolderResults], metrics: list[str]) -> None:
    """Refuse metrics that none of `folders` has, rather than show an empty table.

    Args:
        folders: from `load_folders`.
        metrics: the metrics asked for (e.g. `--metric`).

    Raises:
        UnknownMetricError: a metric is in no folder; the message names it, a close match
            if there is one, and every metric the folders have.
    """
    known = list(OrderedDict.fromkeys(m for f in folders for m in f.metrics))
    unknown = [m for m in OrderedDict.fromkeys(metrics) if m not in known]
    if not unknown:
        return
    hints = [f"{m!r} (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(m, known, n=1)) else repr(m)
             for m in unknown]
    noun = "metric" if len(unknown) == 1 else "metrics"
    raise UnknownMetricError(f"--metric: unknown {noun} {', '.join(hints)}; "
                             f"the folders have: {', '.join(known)}")


def _as_number(value):
    """A string YAML did not read as a number but pydantic will (`1e-3`), as that number."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return [_as_number(v) for v in value] if isinstance(value, list) else value


def _flatten(tree, prefix: str = "") -> dict:
    if not isinstance(tree, dict) or not tree:
        return {prefix: _as_number(tree)} if prefix else {}
    flat = {}
    for key, value in tree.items():
        flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def settings_as_run(recipe: dict) -> dict:
    """A folder's recipe.json as dotted settings: the base with the command line's overrides
    over it, the grid and zip axes, the seeds run."""
    flat = _flatten(recipe.get("base") or {})
    for key, value in (recipe.get("overrides") or {}).items():
        flat = {k: v for k, v in flat.items() if k != key and not k.startswith(key + ".")}
        flat.update(_flatten(value, key) if isinstance(value, dict) else {key: value})
    flat.update({f"grid: {key}": _as_number(values) for key, values in (recipe.get("grid") or {}).items()})
    flat.update({f"zip: {key}": _as_number(values) for key, values in (recipe.get("zip") or {}).items()})
    flat["seeds"] = recipe.get("seeds_run", recipe.get("seeds"))
    return flat


def _differences(folders: list[FolderResults]) -> list[str]:
    """A table of the settings that are not the same in every folder (or a line saying none are)."""
    settings = [settings_as_run(f.recipe) for f in folders]
    keys = list(OrderedDict.fromkeys(k for flat in settings for k in flat))
    differing = [k for k in keys if len({json.dumps(flat.get(k, "–"), sort_keys=True) for flat in settings}) > 1]
    if not differing:
        return ["", "The folders ran the same settings (base, overrides, axes, seeds)."]
    show = lambda v: "–" if v is None else f"`{json.dumps(v)}`".replace("|", "\\|")  # noqa: E731
    trained = [k for k in differing if k != "seeds"]
    consequence = (" Rows of the table below that share a label were not trained alike." if trained else
                   " Only the seeds differ: rows that share a label trained alike, on other seeds.")
    lines = ["", "Settings that differ between the folders (base with overrides, axes, seeds; – where unset, "
             "i.e. the default)." + consequence, "",
             "| setting | " + " | ".join(f.name for f in folders) + " |", "|---|" + "---|" * len(folders)]
    lines += [f"| {k} | " + " | ".join(show(flat.get(k)) for flat in settings) + " |" for k in differing]
    return lines


def render_comparison(folders: list[FolderResults], metrics: list[str] | None = None) -> str:
    """Markdown: one row per (config label, metric), one column per folder.

    Args:
        folders: from `load_folders`.
        metrics: metrics to show (default: every metric some folder has a value for).

    Raises:
        UnknownMetricError: a metric of `metrics` is in none of the folders (`check_metrics`).
    """
    labels = list(OrderedDict.fromkeys(label for f in folders for label in f.labels))
    if metrics is None:
        candidates = OrderedDict.fromkeys(m for f in folders for m in f.metrics)
        metrics = [m for m in candidates if any(s.n for f in folders for (_, mm), s in f.cells.items() if mm == m)]
        metrics = metrics or list(candidates)[:1]  # no run completed: one row per config still says why
    check_metrics(folders, metrics)
    out = [f"# Comparison of {len(folders)} results folders", "",
           "| folder | recipe | question | overrides | runs (completed) |", "|---|---|---|---|---|"]
    for f in folders:
        question = " ".join((f.recipe.get("question") or "–").split()).replace("|", "\\|")
        overrides = override_settings(f.recipe.get("overrides") or {}, code=True)
        out.append(f"| {f.name} | {f.recipe.get('name', '–')} | {question} | {overrides or '–'} | "
                   f"{f.runs} ({f.completed}) |")
    out += _differences(folders)
    out += [*(f"**Warning.** {f.name}: {w}" for f in folders for w in f.warnings)]
    out += ["", "Final-epoch metrics: mean ± sample std (n completed seeds) per folder; runs that diverged or "
            "failed are counted after n, never averaged in; – where a folder has no such config or metric "
            "(with the runs that did not complete, if it ran the config).", "",
            "| config | metric | " + " | ".join(f.name for f in folders) + " |",
            "|---|---|" + "---|" * len(folders)]
    for label in labels:
        for m in metrics:
            cells = [_cell(f.cells.get((label, m)), m in STACK_SHARED_METRICS and label in f.stacked,
                           f.not_completed.get(label, ""), label in f.none_completed) for f in folders]
            if any(c != "–" for c in cells):
                out.append(f"| {label} | {m} | " + " | ".join(cells) + " |")
    if any("(stack share" in line for line in out):
        out += ["", f"**Note.** {STACK_SHARE_NOTE}"]
    return "\n".join(out) + "\n"


def write_comparison(path: Path, markdown: str) -> Path:
    """Write the comparison as Markdown (.md) or a self-contained page (.html).

    Raises:
        ValueError: `path` ends in something else.
    """
    path = Path(path)
    if path.suffix.lower() == ".md":
        atomic_write_text(path, markdown)
    elif path.suffix.lower() in (".html", ".htm"):
        atomic_write_text(path, html_page("wiringlab comparison", markdown_to_html(markdown)))
    else:
        raise ValueError(f"--out {path}: use a .md or .html file name")
    return path
