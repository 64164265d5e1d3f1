"""Run a recipe's sweep: skip finished runs, execute the rest, write the summary.

Runs are independent, so the order of execution never changes a number. Compatible
runs (the seeds of a config, configs differing only in optimizer values) are trained
as one stacked model (`grouping`); stacked members match members trained alone to
float rounding (tests/test_stacked.py). With `workers > 1`, groups go to a pool of
spawned processes with one torch thread each.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

from tqdm.auto import tqdm

from ..data import load_dataset
from .config import RunConfig
from .execute import DatasetCache
from .grouping import execute_group, group_runs
from .recipe import Recipe, RunSpec
from .store import RunFolder, write_json

__all__ = ["SweepResult", "run_sweep", "check_datasets"]

log = logging.getLogger(__name__)


@dataclass
class SweepResult:
    out_dir: Path
    summaries: list[dict]  # one per run of the recipe, in expansion order
    executed: list[str]  # run ids trained in this invocation
    skipped: list[str]  # run ids found finished and not retrained


def check_datasets(specs: list[RunSpec]) -> None:
    """Load each distinct dataset once, so a missing one fails the sweep up front
    (with the loader's message on what to install) instead of failing every run."""
    seen = set()
    for spec in specs:
        data = spec.config.data
        key = (data.name, data.path, repr(sorted(data.options.items())))
        if key not in seen:
            seen.add(key)
            load_dataset(data.name, path=data.path, **data.options)


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


def _spec_from_json(spec_json: dict) -> RunSpec:
    config = RunConfig.model_validate(spec_json["config"])
    return RunSpec(spec_json["run_id"], spec_json["label"], spec_json["seed"], config, spec_json["axes"])


def _execute_in_worker(group_json: list[dict], out_dir: str) -> list[dict]:
    return execute_group([_spec_from_json(s) for s in group_json], Path(out_dir))


def _spec_json(spec: RunSpec) -> dict:
    return {"run_id": spec.run_id, "label": spec.label, "seed": spec.seed,
            "axes": spec.axes, "config": spec.config.model_dump(mode="json")}


def _run_pending(groups: list[list[RunSpec]], out_dir: Path, workers: int) -> None:
    bar = tqdm(total=sum(len(g) for g in groups), desc="runs", disable=None)
    if workers <= 1:
        cache = DatasetCache()
        for group in groups:
            summaries = execute_group(group, out_dir, cache)
            bar.update(len(group))
            bar.set_postfix(last=summaries[-1]["status"])
    else:
        ctx = get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init) as pool:
            futures = {pool.submit(_execute_in_worker, [_spec_json(s) for s in g], str(out_dir)): len(g)
                       for g in groups}
            for future in as_completed(futures):
                future.result()
                bar.update(futures[future])
    bar.close()


def run_sweep(recipe: Recipe, specs: list[RunSpec], out_dir: Path, *, workers: int = 1,
              stack: bool = True) -> SweepResult:
    """Execute every unfinished run of `specs` and collect all summaries.

    Args:
        recipe: the recipe (its name, question and baseline go into recipe.json).
        specs: the expanded runs (`recipe.expand`).
        out_dir: the results folder.
        workers: processes to spread runs (or stacks) over (1 = in this process).
        stack: train compatible runs as one stacked model (`grouping.group_runs`).

    Returns:
        A `SweepResult`; summaries of runs that failed carry status "failed".
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "recipe.json", {**recipe.model_dump(mode="json"),
                                         "run_ids": [s.run_id for s in specs]})
    folders = {s.run_id: RunFolder(out_dir / "runs" / s.run_id) for s in specs}
    pending = [s for s in specs if not folders[s.run_id].finished()]
    skipped = [s.run_id for s in specs if folders[s.run_id].finished()]
    if skipped:
        log.info("resuming: %d of %d runs already finished", len(skipped), len(specs))
    if pending:
        check_datasets(pending)
        groups = group_runs(pending) if stack else [[s] for s in pending]
        _run_pending(groups, out_dir, max(1, min(workers, len(groups), os.cpu_count() or 1)))
    summaries = [folders[s.run_id].read_summary() for s in specs]
    return SweepResult(out_dir, summaries, [s.run_id for s in pending], skipped)
