"""Which runs of a results folder the table covers, and which it leaves out.

The table covers the runs of the latest `wiringlab run` invocation (recipe.json's
`run_ids`): other run folders under runs/ may come from other seeds or overrides, so
they are never pooled in, but the table says how many there are, and how many of its
own runs have no summary yet (a killed sweep, or a report built while one runs).
"""

from __future__ import annotations

from pathlib import Path

from ..experiment.store import FINISHED, RunFolder

__all__ = ["run_statuses", "coverage_notes"]


def run_statuses(runs_dir: Path) -> dict[str, str | None]:
    """{run id: summary status} of every run folder under `runs_dir`; None where there is
    no readable summary yet (not run, running, or interrupted)."""
    runs_dir = Path(runs_dir)
    statuses: dict[str, str | None] = {}
    if not runs_dir.is_dir():
        return statuses
    for path in sorted(p for p in runs_dir.iterdir() if p.is_dir()):
        folder = RunFolder(path)
        try:
            statuses[path.name] = folder.read_summary().get("status") if folder.summary_path.exists() else None
        except (OSError, ValueError):  # half-written or corrupt: as good as no summary
            statuses[path.name] = None
    return statuses


def _pick(n: int, one: str, many: str) -> str:
    return one if n == 1 else many


def coverage_notes(listed: list[str], on_disk: dict[str, str | None]) -> list[str]:
    """Notes for table.md on the runs the table does not show.

    Args:
        listed: the run ids of the invocation the table covers (recipe.json's `run_ids`).
        on_disk: {run id: status or None (no summary yet)} of the run folders (`run_statuses`).

    Returns:
        Up to two lines: listed runs without a summary, and finished runs (completed or
        diverged) on disk that are not listed; a count of zero gives no line.
    """
    listed_set = set(listed)
    unfinished = sum(on_disk.get(run_id) is None for run_id in listed_set)
    others = sum(status in FINISHED for run_id, status in on_disk.items() if run_id not in listed_set)
    notes = []
    if unfinished:
        notes.append(f"{unfinished} of {len(listed_set)} {_pick(len(listed_set), 'run', 'runs')} "
                     f"{_pick(unfinished, 'has', 'have')} not finished (not run yet, running, or interrupted): "
                     f"rerun the same command to finish {_pick(unfinished, 'it', 'them')}.")
    if others:
        notes.append(f"{others} finished {_pick(others, 'run in runs/ is', 'runs in runs/ are')} not in this "
                     f"table: {_pick(others, 'it belongs', 'they belong')} to another invocation "
                     "(other seeds or overrides, or an earlier version of the recipe).")
    return notes
