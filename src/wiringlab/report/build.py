"""Rebuild a results folder's summary.csv, table.md and figures from its run folders."""

from __future__ import annotations

import logging
from pathlib import Path

from ..experiment.store import RunFolder, read_json
from .figures import plot_learning_curves
from .similarity_section import similarity_section
from .spatial import epochs_to_threshold_section, kernel_section, sparsity_section
from .symmetry_section import symmetry_section
from .table import group_by_label, write_summary_csv, write_table

__all__ = ["build_report", "load_results", "REPORT_SECTIONS"]

log = logging.getLogger(__name__)


def load_results(out_dir: Path) -> tuple[dict, list[dict]]:
    """The recipe record and every available run summary of a results folder.

    Raises:
        FileNotFoundError: `out_dir` has no recipe.json (it is not a results folder).
    """
    out_dir = Path(out_dir)
    recipe_path = out_dir / "recipe.json"
    if not recipe_path.exists():
        raise FileNotFoundError(f"{out_dir} is not a wiringlab results folder (no recipe.json); "
                                "create one with `wiringlab run RECIPE`")
    recipe = read_json(recipe_path)
    summaries = []
    for run_id in recipe.get("run_ids", []):
        folder = RunFolder(out_dir / "runs" / run_id)
        if folder.summary_path.exists():
            summaries.append(folder.read_summary())
        else:
            log.warning("run %s has no summary yet (not run, or interrupted)", run_id)
    return recipe, summaries


def _learning_curves(out_dir: Path, recipe: dict, summaries: list[dict]) -> tuple[str, dict[str, Path]]:
    histories = {
        label: [RunFolder(out_dir / "runs" / r["run_id"]).read_metrics() for r in runs]
        for label, runs in group_by_label(summaries).items()
    }
    return "", {"learning_curves": plot_learning_curves(histories, out_dir / "figures" / "learning_curves.png")}


# Each section reads the results folder and returns (markdown appended to table.md,
# {name: figure path}). Analyses of a run type add their section here; a section that
# has nothing to say for a folder returns ("", {}).
REPORT_SECTIONS = [_learning_curves, epochs_to_threshold_section, kernel_section, sparsity_section, symmetry_section,
                   similarity_section]


def build_report(out_dir: Path) -> dict[str, Path]:
    """Write summary.csv, table.md and figures/*.png for `out_dir`; return their paths."""
    out_dir = Path(out_dir)
    recipe, summaries = load_results(out_dir)
    paths = {"summary": out_dir / "summary.csv", "table": out_dir / "table.md"}
    write_summary_csv(paths["summary"], summaries)
    extra_markdown = []
    for section in REPORT_SECTIONS:
        markdown, figures = section(out_dir, recipe, summaries)
        extra_markdown.append(markdown)
        paths.update(figures)
    write_table(paths["table"], recipe, summaries, extra="".join(extra_markdown))
    return paths
