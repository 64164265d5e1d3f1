"""Run a recipe's sweep: skip finished runs, execute the rest, write the summary.

Runs are independent, so the order of execution never changes a number. Compatible
runs (the seeds of a config, configs differing only in optimizer values) are trained
as one stacked model (`grouping`); stacked members match members trained alone to
float rounding (tests/test_stacked.py). Where the groups execute is an executor's
business (`executors.py`: in this process, a process pool, or Ray); a sweep only
decides what is pending and collects what finished, so a killed sweep resumes the
same way whichever executor ran it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from .errors import ConfigError, FolderBusyError
from .executors import make_executor
from .folder_lock import LOCK_NAME, folder_lock
from .grouping import group_runs, spread_groups
from .preflight import check_datasets, check_pending
from .recipe import Recipe, RunSpec, effective_baseline, effective_pairs
from .store import RunFolder, read_json, write_json

__all__ = ["SweepResult", "run_sweep", "check_datasets"]

log = logging.getLogger(__name__)


@dataclass
class SweepResult:
    out_dir: Path
    summaries: list[dict]  # one per run of the recipe, in expansion order
    executed: list[str]  # run ids trained in this invocation
    skipped: list[str]  # run ids found finished and not retrained


def _run_pending(groups: list[list[RunSpec]], out_dir: Path, executor) -> None:
    bar = tqdm(total=sum(len(g) for g in groups), desc=f"runs ({executor.name})", disable=None)
    for summaries in executor.map(groups, out_dir):
        bar.update(len(summaries))
        bar.set_postfix(last=summaries[-1]["status"])
    bar.close()


def run_sweep(recipe: Recipe, specs: list[RunSpec], out_dir: Path, *, workers: int = 1,
              stack: bool = True, executor=None, overrides=(), then=None) -> SweepResult:
    """Execute every unfinished run of `specs` and collect all summaries.

    Args:
        recipe: the recipe (its name and question go into recipe.json, and its baseline as
            `effective_baseline` names it once `overrides` are applied).
        specs: the expanded runs (`recipe.expand`).
        out_dir: the results folder.
        workers: processes to spread runs (or stacks) over (1 = in this process);
            ignored when `executor` is given.
        stack: train compatible runs as one stacked model (`grouping.group_runs`).
        executor: where groups execute (`executors.make_executor`); default from `workers`.
        overrides: the (key, value) pairs `specs` were expanded with (--set, --epochs),
            recorded in recipe.json so the report shows the recipe as run.
        then: called with `out_dir` after the runs, still under the folder's lock (the CLI
            builds the report there, so a second sweep cannot rewrite recipe.json under it).

    Returns:
        A `SweepResult`; summaries of runs that failed carry status "failed".

    Raises:
        FolderBusyError: another sweep is writing to `out_dir` (`folder_lock`).
        ConfigError, DatasetError, MissingExtraError: a pending run cannot start (device,
            dataset, extra); raised before recipe.json or any run is written.
    """
    out_dir = Path(out_dir)
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        return _locked_sweep(recipe, specs, out_dir, workers, stack, executor, overrides, then)
    except FolderBusyError:  # the folder is another sweep's now: leave it alone
        raise
    except BaseException:
        if created:  # a refused command into a new folder leaves no folder behind
            _remove_if_only_lock(out_dir)
        raise


def _remove_if_only_lock(out_dir: Path) -> None:
    if [p.name for p in out_dir.iterdir()] == [LOCK_NAME]:
        (out_dir / LOCK_NAME).unlink()
        out_dir.rmdir()


def check_same_recipe(recipe: Recipe, out_dir: Path) -> None:
    """A folder holds one recipe's results: another recipe run there would replace its
    recipe.json and with it the report (its figures and analysis files)."""
    path = out_dir / "recipe.json"
    try:
        name = read_json(path).get("name") if path.exists() else None
    except (OSError, ValueError):
        return  # damaged: the run rewrites it, as a rerun of the same recipe would
    if name is not None and name != recipe.name:
        raise ConfigError(f"{out_dir} holds the results of recipe {name!r} (recipe.json); running recipe "
                          f"{recipe.name!r} there would replace its report: choose another --out, or move that "
                          "folder away first")


def _suffix(run_id: str) -> str:
    """`s<seed>-<hash of the validated config>`: what a run id says about what was trained."""
    return "-".join(run_id.rsplit("-", 2)[-2:])


def adoptable_runs(specs: list[RunSpec], out_dir: Path) -> dict[str, Path]:
    """Finished run folders that trained a spec's config and seed under another label (`1e-3`
    written as `0.001`, an axis collapsed by --set): {spec's run id: that folder}. A spec
    whose own folder exists is left out."""
    runs = out_dir / "runs"
    wanted = {_suffix(s.run_id): s.run_id for s in specs if not (runs / s.run_id).exists()}
    if not wanted or not runs.is_dir():
        return {}
    found = {}
    for folder in sorted(p for p in runs.iterdir() if p.is_dir()):
        run_id = wanted.get(_suffix(folder.name))
        if run_id is not None and run_id not in found and RunFolder(folder).finished():
            found[run_id] = folder
    return found


def adopt_runs(found: dict[str, Path], specs: list[RunSpec]) -> None:
    """Rename each folder of `adoptable_runs` to its spec's run id and give its summary.json
    the spec's label and axes, so the run is skipped instead of trained again."""
    by_id = {s.run_id: s for s in specs}
    for run_id, folder in found.items():
        spec, summary = by_id[run_id], RunFolder(folder).read_summary()
        # relabel first, then rename: interrupted between the two, the folder is still found by
        # its suffix next time (a renamed folder with the old label would never be adopted again)
        RunFolder(folder).write_summary({**summary, "run_id": run_id, "label": spec.label, "axes": spec.axes})
        folder.rename(folder.parent / run_id)
        log.info("run %s trained the config and seed of %s: renamed, not trained again", folder.name, run_id)


def _locked_sweep(recipe, specs, out_dir: Path, workers, stack, executor, overrides, then=None) -> SweepResult:
    with folder_lock(out_dir):
        check_same_recipe(recipe, out_dir)
        adoptable = adoptable_runs(specs, out_dir)
        folders = {s.run_id: RunFolder(out_dir / "runs" / s.run_id) for s in specs}
        finished = {run_id: run_id in adoptable or folder.finished() for run_id, folder in folders.items()}
        pending = [s for s in specs if not finished[s.run_id]]
        skipped = [s.run_id for s in specs if finished[s.run_id]]
        if skipped:
            log.info("resuming: %d of %d runs already finished", len(skipped), len(specs))
        if pending:  # checked before recipe.json changes: a refused command leaves the folder as it was
            executor = executor or make_executor("auto", workers=workers)
            check_pending(pending, executor)
        adopt_runs(adoptable, specs)  # after the checks: a refused command leaves the folder as it was
        write_json(out_dir / "recipe.json", {**recipe.model_dump(mode="json"),
                                             "baseline": effective_baseline(recipe, overrides=overrides),
                                             "pairs": effective_pairs(recipe, overrides=overrides, warn=False),
                                             "overrides": {key: value for key, value in overrides},
                                             "seeds_run": sorted({s.seed for s in specs}),
                                             "run_ids": [s.run_id for s in specs],
                                             "run_labels": [s.label for s in specs]})
        if pending:
            groups = spread_groups(group_runs(pending), workers) if stack else [[s] for s in pending]
            _run_pending(groups, out_dir, executor)
        if then is not None:
            then(out_dir)
    summaries = [folders[s.run_id].read_summary() for s in specs]
    return SweepResult(out_dir, summaries, [s.run_id for s in pending], skipped)
