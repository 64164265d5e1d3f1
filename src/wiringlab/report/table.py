"""summary.csv, and the results tables of a results folder as one computed structure.

`compute_tables` does the statistics once (per config: mean ± sample std, n, 95%
t-interval of every final metric; every config against the baseline: difference of
means, Welch's t-test over seeds, Holm-adjusted p per metric; and the recipe's head-to-head
pairs, in the same Holm families: `comparisons.py`).
`render_markdown` writes table.md from it and `report.html` renders the same object,
so the two can never disagree.
"""

from __future__ import annotations

import json
import math
from collections import Counter, OrderedDict
from dataclasses import dataclass, field

from ..experiment.store import atomic_write_text, write_csv
from .comparisons import COMPARISON_CAPTION, PAIRS_CAPTION, ComparisonRow, compare_configs
from .run_groups import completed_runs, group_by_label, metric_values, stack_trained, status_note
from .stats import Summary, summarize

__all__ = ["group_by_label", "completed_runs", "status_note", "stack_trained", "summary_rows", "write_summary_csv",
           "metric_values", "metric_names", "ConfigRow", "ComparisonRow", "mixed_device_warnings", "ResultsTables",
           "compute_tables", "comparison_caption", "render_markdown", "render_table", "write_table", "format_number",
           "format_p", "PRIMARY_METRICS", "STACK_SHARED_METRICS", "STACK_SHARE_NOTE"]

PRIMARY_METRICS = ["test_acc", "test_loss", "train_acc", "train_loss", "best_test_acc", "wall_time_s"]
COMPARED_PRIMARY = ["test_acc", "test_loss"]  # plus every extra metric an analysis adds, except:
NOT_COMPARED = {"topology_p", "topology_chi2"}  # a run's own test of its topology: a statistic, not an outcome
PER_RUN_TEST_NOTE = ("{} (each run's own χ² test of its input connection counts) are in summary.csv per run, not "
                     "averaged here: a mean of p-values, and its interval, is not a statistic of anything.")
# A stack's members each record the stack's wall time / members (experiment/grouping.py):
# equal by construction, so their spread measures nothing.
STACK_SHARED_METRICS = ("wall_time_s",)
STACK_SHARE_NOTE = ("“(stack share)” after a wall time: the config's runs were trained in one stacked model "
                    "(with its other members, which may be other configs' runs) and each records the stack's wall "
                    "time divided by its members, so only the mean is shown (their spread would be zero by "
                    "construction, not measured).")


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


def metric_names(summaries: list[dict]) -> list[str]:
    """The primary metrics, then every other numeric final metric in first-seen order."""
    extra = OrderedDict()
    for s in summaries:
        for k, v in s.get("final", {}).items():
            if k not in PRIMARY_METRICS and k != "lr" and isinstance(v, (int, float)):
                extra[k] = None
    return list(PRIMARY_METRICS) + list(extra)


def format_number(x: float | None, digits: int = 4) -> str:
    """`digits` decimals; scientific (`digits` significant figures) where those would show a
    nonzero number as 0 (a difference of 2e-5) or run long (1e6 and above)."""
    if x is None or not math.isfinite(x):
        return "–"
    if x != 0 and (abs(x) < 0.5 * 10 ** -digits or abs(x) >= 1e6):
        return f"{x:.{digits - 1}e}"
    return f"{x:.{digits}f}"


def format_p(p: float | None) -> str:
    """A p-value: 4 decimals, or scientific below 1e-4 (never a misleading 0.0000; a p that
    underflowed to 0 is "< 1e-300")."""
    if p == 0:
        return "< 1e-300"
    if p is not None and math.isfinite(p) and 0 < p < 1e-4:
        return f"{p:.1e}"
    return format_number(p)


@dataclass(frozen=True)
class ConfigRow:
    label: str
    n: int  # completed runs
    cells: dict[str, Summary]  # metric -> statistics over the completed seeds
    not_completed: str  # e.g. "1 diverged, 1 failed"; "" when every run completed
    stacked: bool = False  # its seeds were trained as one stack: STACK_SHARED_METRICS have no spread

    def cell_parts(self, metric: str) -> tuple[str, str]:
        """("mean ± std", "[low, high]"), or the reason there is no spread/interval and "". A
        metric that some completed runs lack (or logged as NaN) says over how many it is."""
        s = self.cells[metric]
        if self.stacked and metric in STACK_SHARED_METRICS and s.n:
            return f"{s.mean:.4f} (stack share)", ""
        value = f"{s.format()} (n={s.n})" if 1 < s.n < self.n else s.format()
        return value, s.format_interval()

    def cell_text(self, metric: str) -> str:
        """"mean ± std [low, high]" (or the reason there is no interval)."""
        value, interval = self.cell_parts(metric)
        return f"{value} {interval}" if interval else value


@dataclass(frozen=True)
class ResultsTables:
    name: str
    question: str
    baseline: str | None
    metrics: list[str]
    rows: list[ConfigRow]
    compared_metrics: list[str]
    comparisons: list[ComparisonRow]  # against the baseline; empty when there is one config or no baseline
    warnings: list[str]  # what makes a row's seeds not comparable (e.g. mixed devices); usually empty
    notes: list[str] = field(default_factory=list)  # what the table leaves out, and its markers
    overrides: dict = field(default_factory=dict)  # the command line's --set/--epochs the recipe ran with
    no_comparison: str = ""  # why `comparisons` is empty ("" when it is not)
    named_baseline: str | None = None  # the baseline config, whether or not it has runs yet
    pairs: list[ComparisonRow] = field(default_factory=list)  # the recipe's head-to-head pairs (recipe.json `pairs`)
    pair_notes: list[str] = field(default_factory=list)  # pairs left out: a side without finished runs


def _device_type(run: dict) -> str:
    return str(run.get("provenance", {}).get("device", "unknown")).split(":")[0]


def mixed_device_warnings(groups) -> list[str]:
    """One line per config whose completed runs trained on more than one kind of device.

    The same seed gives other numbers on a GPU than on a CPU (other random generators and
    kernels), and the run id hashes the device as written (default `auto`), so a folder
    resumed on another machine would otherwise pool both silently."""
    out = []
    for label, runs in groups.items():
        kinds = Counter(_device_type(r) for r in runs if r["status"] == "completed")  # first-seen order
        if len(kinds) > 1:
            split = ", ".join(f"{n} on {kind}" for kind, n in kinds.items())
            out.append(f"{label}: seeds trained on different devices ({split}); CPU and GPU give different "
                       "numbers for the same seed, so rerun them on one (--device) before comparing")
    return out


def _pending_runs(recipe: dict, summaries: list[dict]) -> list[tuple[str, str | None]]:
    """(run id, config label) of the invocation's runs without a summary (interrupted, or still
    running), from recipe.json's `run_ids` and `run_labels`; the label is None in folders
    written before `run_labels` existed."""
    have = {s["run_id"] for s in summaries}
    run_ids = recipe.get("run_ids") or []
    labels = recipe.get("run_labels") or [None] * len(run_ids)
    return [(run_id, label) for run_id, label in zip(run_ids, labels) if run_id not in have]


def _unfinished_by_label(pending: list[tuple[str, str | None]]) -> dict[str, str]:
    """{label: "k not finished"} of `_pending_runs` ({} for folders from before `run_labels`)."""
    counts = Counter(label for _, label in pending if label is not None)
    return {label: f"{n} not finished" for label, n in counts.items()}


def _label_order(recipe: dict, labels) -> list[str]:
    """`labels` in the recipe's config order (recipe.json's `run_labels`), then any others
    (runs of an earlier invocation) as first seen: rows do not move as runs finish."""
    planned = list(OrderedDict.fromkeys(recipe.get("run_labels") or []))
    return [label for label in planned if label in labels] + [label for label in labels if label not in planned]


def _no_comparison(baseline: str | None, groups, pending: list[tuple[str, str | None]]) -> str:
    """Why a folder's table has no comparisons ("" when it has); `pending`: `_pending_runs`."""
    if baseline is None:
        return "the folder has no runs"
    if baseline not in groups:
        return f"the baseline `{baseline}` has no finished runs yet"
    if len(groups) > 1:
        return ""
    if any(label is not None for _, label in pending):
        return "no config other than the baseline has finished runs yet"
    if pending:  # a folder from before run_labels: whose runs they are is not recorded
        return f"only the baseline has finished runs ({len(pending)} of the recipe's runs have not finished)"
    return "there is only one config"


def compute_tables(recipe: dict, summaries: list[dict], notes=()) -> ResultsTables:
    """Every statistic of table.md and report.html, computed once.

    Args:
        recipe: the recipe record (recipe.json): name, question, baseline, run labels.
        summaries: run summaries (summary.json contents) of the folder.
        notes: lines shown under the table (e.g. `coverage.coverage_notes`); the
            stack-share marker's explanation is added when a row uses it.

    Returns:
        A `ResultsTables`, rows in the recipe's config order; the baseline defaults to the
        recipe's first config (not the first to finish).
    """
    groups = group_by_label(summaries)
    logged = metric_names(summaries)
    metrics = [m for m in logged if m not in NOT_COMPARED]
    planned = recipe.get("run_labels") or []
    baseline = recipe.get("baseline") or (planned[0] if planned else next(iter(groups), None))
    pending = _pending_runs(recipe, summaries)
    unfinished = _unfinished_by_label(pending)
    rows = []
    for label in _label_order(recipe, [*groups, *unfinished]):
        runs = groups.get(label, [])
        note = ", ".join(filter(None, [status_note(runs), unfinished.get(label, "")]))
        rows.append(ConfigRow(label, len(completed_runs(runs)), {m: summarize(metric_values(runs, m)) for m in metrics},
                              note, stack_trained(runs)))
    notes = [*notes, *[STACK_SHARE_NOTE] * any(row.stacked for row in rows)]
    if set(logged) & NOT_COMPARED:
        notes.append(PER_RUN_TEST_NOTE.format(", ".join(m for m in logged if m in NOT_COMPARED)))
    compared = COMPARED_PRIMARY + [m for m in metrics if m not in PRIMARY_METRICS]  # metrics has no NOT_COMPARED
    why = _no_comparison(baseline, groups, pending)
    pairs = [tuple(pair) for pair in recipe.get("pairs") or []]
    comparisons, pair_rows, pair_notes = compare_configs(groups, None if why else baseline, pairs, compared)
    return ResultsTables(recipe.get("name", "results"), (recipe.get("question") or "").strip(),
                         baseline if baseline in groups else None, metrics, rows, compared, comparisons,
                         mixed_device_warnings(groups), notes, dict(recipe.get("overrides") or {}), why, baseline,
                         pair_rows, pair_notes)


def override_settings(overrides: dict, code: bool = False) -> str:
    """"key=value, …" of the command line's overrides (values as JSON), each in backticks with `code`."""
    tick = "`" if code else ""
    return ", ".join(f"{tick}{key}={json.dumps(value)}{tick}" for key, value in overrides.items())


RESULTS_CAPTION = ("Final-epoch metrics per config: mean ± sample std [95% t-interval] over the completed "
                   "seeds (n). Diverged or failed runs are counted apart, never averaged in.")


def render_markdown(tables: ResultsTables) -> str:
    """table.md: the results table, then each config against the baseline."""
    out = [f"# {tables.name}", ""]
    if tables.question:
        out += [f"**Question.** {tables.question}", ""]
    if tables.overrides:  # the question as written may name another dataset or length
        out += [f"**Run with overrides.** {override_settings(tables.overrides, code=True)}", ""]
    out += [RESULTS_CAPTION, "",
            "| config | n | " + " | ".join(tables.metrics) + " | not completed |",
            "|---|---|" + "---|" * len(tables.metrics) + "---|"]
    for row in tables.rows:
        cells = " | ".join(row.cell_text(m) for m in tables.metrics)
        out.append(f"| {row.label} | {row.n} | {cells} | {row.not_completed or '–'} |")
    for note in tables.notes:  # a paragraph each
        out += ["", f"**Note.** {note}"]
    if tables.warnings:
        out += ["", *(f"**Warning.** {w}" for w in tables.warnings)]
    if tables.no_comparison:
        out += ["", "## Compared with the baseline", "", f"No comparison: {tables.no_comparison}."]
    if tables.comparisons:
        out += ["", f"## Compared with the baseline `{tables.baseline}`", "", comparison_caption(tables), "",
                "| config | metric | n vs baseline | difference vs baseline | Welch t | p | p (Holm) |",
                "|---|---|---|---|---|---|---|"]
        out += [f"| {c.label} | {c.metric} | {_tested_cells(c)} |" for c in tables.comparisons]
    return "\n".join(out + _pairs_markdown(tables)) + "\n"


def _pairs_markdown(tables: ResultsTables) -> list[str]:
    """table.md's head-to-head section (no lines when the recipe lists no pairs)."""
    if not tables.pairs and not tables.pair_notes:
        return []
    out = ["", "## Head-to-head pairs"]
    if tables.pairs:
        out += ["", PAIRS_CAPTION, "", "| config | against | metric | n vs n | difference | Welch t | p | p (Holm) |",
                "|---|---|---|---|---|---|---|---|"]
        out += [f"| {c.label} | {c.against} | {c.metric} | {_tested_cells(c)} |" for c in tables.pairs]
    for note in tables.pair_notes:
        out += ["", f"**Not compared.** {note}."]
    return out


def _tested_cells(c: ComparisonRow) -> str:
    """A comparison row's "n vs n | difference | t | p | p (Holm)" cells (p: why untested, if so)."""
    return (f"{c.n} vs {c.n_against} | {format_number(c.test.difference)} | {format_number(c.test.t, 3)} | "
            f"{c.note or format_p(c.test.p)} | {format_p(c.p_holm)}")


def comparison_caption(tables: ResultsTables) -> str:
    """The baseline table's caption: what its p-values are corrected over."""
    return COMPARISON_CAPTION + (" The family includes the head-to-head pairs below." if tables.pairs else "")


def render_table(recipe: dict, summaries: list[dict]) -> str:
    """table.md text of a folder's recipe record and summaries."""
    return render_markdown(compute_tables(recipe, summaries))


def write_table(path, recipe: dict, summaries: list[dict], extra: str = "") -> None:
    """Write table.md; `extra` (markdown of analysis sections) is appended."""
    atomic_write_text(path, render_table(recipe, summaries) + extra)
