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

from ..data import load_dataset
from .executors import make_executor
from .folder_lock import folder_lock
from .grouping import group_runs, spread_groups
from .recipe import Recipe, RunSpec, effective_baseline
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
    (with the loader's message on what to install) instead of failing every run; and
    check each run's data.n_train/n_test against it.

    Raises:
        DatasetError: a dataset cannot be found or read. ConfigError: n_train or n_test
            asks for more samples than the dataset has.
    """
    from ..engine.tensors import check_split_sizes
    from .errors import ConfigError

    loaded = {}
    for spec in specs:
        for data in spec.config.data_configs():
            key = (data.name, data.path, repr(sorted(data.options.items())))
            if key not in loaded:
                loaded[key] = load_dataset(data.name, path=data.path, **data.options)
            try:
                check_split_sizes(loaded[key], data)
            except ValueError as err:
                raise ConfigError(f"{spec.run_id}: {err}") from None


def check_csr_kernels(specs: list[RunSpec]) -> None:
    """`csr_kernel: numba` needs numba and a CPU: check once, before anything runs, instead
    of failing every run.

    Raises:
        MissingExtraError: numba is not installed. ConfigError: a run would train on a GPU.
    """
    from ..sparse_ops import csr_kernels
    from .errors import ConfigError
    from .execute import resolve_device
    from .layer_config import layer_config_nodes

    for spec in specs:
        if not any(node.get("csr_kernel") == "numba" for node in layer_config_nodes(spec.config.model.model_dump())):
            continue
        csr_kernels("numba")
        device = resolve_device(spec.config.train.device)
        if device.type != "cpu":
            raise ConfigError(f"{spec.run_id}: csr_kernel: numba runs on the CPU, but train.device resolves to "
                              f"{device}: set train.device=cpu, or model.layer.csr_kernel=torch (which runs on GPUs)")


def check_devices(specs: list[RunSpec]) -> None:
    """Resolve every run's `train.device` here, once: a device this machine lacks (--device
    cuda without a GPU) is one error before anything runs, not a failed run per spec.
    Only for executors that train on this machine (a Ray cluster's workers have their own).

    Raises:
        ConfigError: a requested device is not available.
    """
    from .errors import ConfigError
    from .execute import resolve_device

    for device in dict.fromkeys(spec.config.train.device for spec in specs):
        try:
            resolve_device(device)
        except RuntimeError as err:
            raise ConfigError(f"train.device: {err}") from None


def _check_pending(pending: list[RunSpec], executor) -> None:
    """Everything that can refuse the sweep before anything is written or trained."""
    if executor.name != "ray":
        check_devices(pending)
    check_csr_kernels(pending)
    check_datasets(pending)


def _run_pending(groups: list[list[RunSpec]], out_dir: Path, executor) -> None:
    bar = tqdm(total=sum(len(g) for g in groups), desc=f"runs ({executor.name})", disable=None)
    for summaries in executor.map(groups, out_dir):
        bar.update(len(summaries))
        bar.set_postfix(last=summaries[-1]["status"])
    bar.close()


def run_sweep(recipe: Recipe, specs: list[RunSpec], out_dir: Path, *, workers: int = 1,
              stack: bool = True, executor=None, overrides=()) -> SweepResult:
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

    Returns:
        A `SweepResult`; summaries of runs that failed carry status "failed".

    Raises:
        FolderBusyError: another sweep is writing to `out_dir` (`folder_lock`).
        ConfigError, DatasetError, MissingExtraError: a pending run cannot start (device,
            dataset, extra); raised before recipe.json or any run is written.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with folder_lock(out_dir):
        folders = {s.run_id: RunFolder(out_dir / "runs" / s.run_id) for s in specs}
        pending = [s for s in specs if not folders[s.run_id].finished()]
        skipped = [s.run_id for s in specs if folders[s.run_id].finished()]
        if skipped:
            log.info("resuming: %d of %d runs already finished", len(skipped), len(specs))
        if pending:  # checked before recipe.json changes: a refused command leaves the folder as it was
            executor = executor or make_executor("auto", workers=workers)
            _check_pending(pending, executor)
        write_json(out_dir / "recipe.json", {**recipe.model_dump(mode="json"),
                                             "baseline": effective_baseline(recipe, overrides=overrides),
                                             "overrides": {key: value for key, value in overrides},
                                             "seeds_run": sorted({s.seed for s in specs}),
                                             "run_ids": [s.run_id for s in specs]})
        if pending:
            groups = spread_groups(group_runs(pending), workers) if stack else [[s] for s in pending]
            _run_pending(groups, out_dir, executor)
    summaries = [folders[s.run_id].read_summary() for s in specs]
    return SweepResult(out_dir, summaries, [s.run_id for s in pending], skipped)
