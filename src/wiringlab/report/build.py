"""Rebuild a results folder's summary.csv, table.md, figures and report.html from its run folders."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from ..experiment.store import RunFolder, atomic_write_text, write_json
from .coverage import coverage_notes, run_statuses
from .figures import NO_COMPLETED, completed_histories, plot_learning_curves
from .html import ReportSection, write_report_html
from .locality import locality_section
from .multitask import multitask_section
from .overfitting import overfitting_section
from .run_files import RERUN_RECIPE_FIX, read_json_file, read_run_summary
from .similarity_section import similarity_section
from .spatial import epochs_to_threshold_section, kernel_section, sparsity_section
from .symmetry_section import symmetry_section
from .table import compute_tables, group_by_label, render_markdown, status_note, write_summary_csv
from .topology import topology_section

__all__ = ["build_report", "load_results", "REPORT_SECTIONS"]

log = logging.getLogger(__name__)


def load_results(out_dir: Path) -> tuple[dict, list[dict]]:
    """The recipe record and every available run summary of a results folder.

    Raises:
        FileNotFoundError: `out_dir` has no recipe.json (it is not a results folder).
        CorruptResultsError: recipe.json or a run's summary.json is not a valid JSON object;
            the message names the file and the fix.
    """
    out_dir = Path(out_dir)
    recipe_path = out_dir / "recipe.json"
    if not recipe_path.exists():
        raise FileNotFoundError(f"{out_dir} is not a wiringlab results folder (no recipe.json); "
                                "create one with `wiringlab run RECIPE`")
    recipe = read_json_file(recipe_path, RERUN_RECIPE_FIX)
    summaries = []
    for run_id in recipe.get("run_ids", []):
        folder = RunFolder(out_dir / "runs" / run_id)
        if folder.summary_path.exists():
            summaries.append(read_run_summary(folder))
        else:
            log.warning("run %s has no summary yet (not run, or interrupted)", run_id)
    return recipe, summaries


def _learning_curves(out_dir: Path, recipe: dict, summaries: list[dict]) -> tuple[str, dict[str, Path]]:
    groups = group_by_label(summaries)
    histories = {label: completed_histories(out_dir, runs) for label, runs in groups.items()}
    path = plot_learning_curves(histories, out_dir / "figures" / "learning_curves.png")
    markdown = ("\n## Learning curves\n\nEach metric per epoch: mean ± sample std over the completed seeds of each "
                "config (n in the legend); diverged or failed runs are left out, as in the table.\n")
    missing = [f"`{label}` ({status_note(groups[label]) or 'no epochs logged'})"
               for label, h in histories.items() if not h]
    if missing:
        markdown += f"\nNo curve ({NO_COMPLETED}): {', '.join(missing)}.\n"
    markdown += "\n![learning curves](figures/learning_curves.png)\n"
    return markdown, {"learning_curves": path}


# Each section reads the results folder and returns (markdown appended to table.md,
# {name: figure path}). Analyses of a run type add their section here; a section that
# has nothing to say for a folder returns ("", {}).
REPORT_SECTIONS = [_learning_curves, overfitting_section, topology_section, epochs_to_threshold_section,
                   kernel_section, sparsity_section, locality_section, multitask_section,
                   symmetry_section, similarity_section]


def _section_name(section, markdown: str) -> str:
    """The section's first Markdown heading, else its function's name made readable."""
    heading = re.search(r"^#{1,6}\s+(.+?)\s*#*\s*$", markdown, re.M)
    if heading:
        return heading.group(1)
    return getattr(section, "__name__", type(section).__name__).strip("_").replace("_", " ").capitalize()


def _run_section(section, out_dir: Path, recipe: dict, summaries: list[dict]) -> tuple[str, dict]:
    """A section's (Markdown, figures); a run file it needs that is gone (deleted by hand) is said
    in the section, not raised: the other sections, table.md and report.html are still written."""
    try:
        return section(out_dir, recipe, summaries)
    except FileNotFoundError as err:
        name = _section_name(section, "")
        log.warning("report section %s not computed: %s", name, err)
        return (f"\n## {name}\n\nNot computed: a run's file is missing ({err}). Restore it, or delete that run's "
                "folder so that the next `wiringlab run` trains it again.\n", {})


def _first_config(out_dir: Path, recipe: dict) -> str | None:
    for run_id in recipe.get("run_ids", [])[:1]:
        path = out_dir / "runs" / run_id / "config.yaml"
        if path.is_file():
            return path.read_text()
    return None


MANIFEST = ".report-files.json"  # what the last build wrote, relative to the folder


def _remove_stale_outputs(out_dir: Path, written: list[Path]) -> None:
    """Delete what the previous build wrote and this one did not (an analysis CSV or a
    figure of a config that the latest invocation no longer has), so the folder never
    shows files that disagree with its table; then record this build's files. Files the
    report never wrote (a user's own figure) are not touched."""
    manifest = out_dir / MANIFEST
    now = sorted({str(p.relative_to(out_dir)) for p in written if p.is_relative_to(out_dir)})
    fix = f"delete {manifest} (the next report writes it again)"
    before = read_json_file(manifest, fix, expected=list) if manifest.is_file() else []
    for name in set(before) - set(now):
        (out_dir / name).unlink(missing_ok=True)
    write_json(manifest, now)


def build_report(out_dir: Path) -> dict[str, Path]:
    """Write summary.csv, table.md, figures/*.png and report.html for `out_dir`; return their paths.

    table.md and report.html are rendered from one `compute_tables` result, followed by
    the Markdown and figures of every entry of `REPORT_SECTIONS`. Outputs of the previous
    build that this one does not write again are removed (`MANIFEST`).
    """
    out_dir = Path(out_dir).resolve()  # sections return figure paths under it; the page resolves them
    recipe, summaries = load_results(out_dir)
    paths = {"summary": out_dir / "summary.csv", "table": out_dir / "table.md", "report": out_dir / "report.html"}
    write_summary_csv(paths["summary"], summaries)
    sections = []
    for section in REPORT_SECTIONS:
        markdown, figures = _run_section(section, out_dir, recipe, summaries)
        sections.append(ReportSection(_section_name(section, markdown), markdown, dict(figures)))
        paths.update(figures)
    _remove_stale_outputs(out_dir, [Path(p) for p in paths.values()])  # before the page lists figures/
    notes = coverage_notes(recipe.get("run_ids", []), run_statuses(out_dir / "runs"))
    tables = compute_tables(recipe, summaries, notes)
    atomic_write_text(paths["table"], render_markdown(tables) + "".join(s.markdown for s in sections))
    write_report_html(paths["report"], out_dir, recipe, summaries, tables, sections, _first_config(out_dir, recipe))
    return paths
