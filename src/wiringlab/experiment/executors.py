"""Executors: where the runs of a sweep are trained.

Every executor takes the pending `RunSpec`s and yields each run's summary as it
finishes; each run writes its own run folder. Runs are independent, so the executor
never changes a number (up to the float summation order of a different thread count).

- `InProcessExecutor`: one run after the other in this process (datasets loaded once).
- `PoolExecutor`: spawned processes with one torch thread each (two single-threaded
  runs beat one two-threaded run on small models: less synchronisation per matmul).
- `RayExecutor`: Ray tasks on a local or remote cluster (`pip install wiringlab[ray]`).
  A task receives only the run's config as JSON and the results folder's path, and
  needs `num_cpus` (and a GPU share when the cluster has GPUs); the driver collects
  the summaries. A task that raises, whose worker dies, or whose run ends "failed" is
  retried once, then recorded as failed; the sweep goes on.

Pitfall (Ray): workers write run folders under the results folder's path on their own
node, so on a multi-node cluster `--out` must be on a filesystem all nodes share
(NFS, ...). Otherwise the driver still records each summary, but metrics.jsonl and the
weights stay on the worker nodes (a warning says so).
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, Iterator

from .config import RunConfig
from .errors import MissingExtraError
from .execute import DatasetCache, execute_run, failed_summary
from .recipe import RunSpec
from .store import RunFolder

__all__ = ["spec_to_json", "spec_from_json", "run_spec_json", "InProcessExecutor", "PoolExecutor",
           "RayExecutor", "make_executor", "EXECUTORS"]

log = logging.getLogger(__name__)

EXECUTORS = ("auto", "inprocess", "pool", "ray")


def spec_to_json(spec: RunSpec) -> dict:
    """Everything a worker needs to run `spec`, as plain JSON (no pickled objects)."""
    return {"run_id": spec.run_id, "label": spec.label, "seed": spec.seed,
            "axes": spec.axes, "config": spec.config.model_dump(mode="json")}


def spec_from_json(data: dict) -> RunSpec:
    return RunSpec(data["run_id"], data["label"], data["seed"], RunConfig.model_validate(data["config"]),
                   data["axes"])


def run_spec_json(spec_json: dict, out_dir: str, num_threads: int | None = None) -> dict:
    """Train one run from its JSON spec, write its folder under `out_dir`, return its summary.

    This is the whole of a worker's job (pool process or Ray task).
    """
    if num_threads:
        import torch

        torch.set_num_threads(num_threads)
    return execute_run(spec_from_json(spec_json), Path(out_dir))


def _record_failure(spec: RunSpec, out_dir: Path, error: str, wall: float, attempts: int = 1,
                    detail: str = "") -> dict:
    summary = failed_summary(spec, error, detail, wall)
    summary["attempts"] = attempts
    RunFolder(Path(out_dir) / "runs" / spec.run_id).write_summary(summary)
    return summary


class InProcessExecutor:
    """Runs one after the other in this process, sharing loaded datasets."""

    name = "inprocess"

    def map(self, specs: list[RunSpec], out_dir: Path) -> Iterator[dict]:
        cache = DatasetCache()
        for spec in specs:
            yield execute_run(spec, Path(out_dir), cache)


def _pool_init() -> None:
    import torch

    torch.set_num_threads(1)


class PoolExecutor:
    """Spawned worker processes, one torch thread each.

    Args:
        workers: processes (capped by the number of runs).
    """

    name = "pool"

    def __init__(self, workers: int) -> None:
        self.workers = max(1, workers)

    def map(self, specs: list[RunSpec], out_dir: Path) -> Iterator[dict]:
        ctx = get_context("spawn")
        workers = min(self.workers, len(specs)) or 1
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_pool_init) as pool:
            futures = {pool.submit(run_spec_json, spec_to_json(s), str(out_dir)): (s, time.perf_counter())
                       for s in specs}
            for future in as_completed(futures):
                spec, start = futures[future]
                try:
                    yield future.result()
                except Exception as err:  # a worker died: record it, the sweep goes on
                    log.error("run %s: worker failed: %s", spec.run_id, err)
                    yield _record_failure(spec, out_dir, f"{type(err).__name__}: {err}",
                                          time.perf_counter() - start)


def _import_ray():
    try:
        import ray
    except ImportError as err:
        raise MissingExtraError("--executor ray needs Ray, which is not installed: "
                                "pip install 'wiringlab[ray]'") from err
    return ray


class RayExecutor:
    """Ray tasks, one per run, on a local or existing cluster.

    Args:
        address: a cluster to join ("HEAD_IP:6379", "auto"); None starts a local
            cluster unless this process is already connected or RAY_ADDRESS is set.
        cpus_per_run: `num_cpus` of each task, also its torch thread count.
        gpus_per_run: the GPU share of a task when the cluster has GPUs (0.25: four
            runs per GPU); runs whose config says device "cpu" ask for none.
        retries: extra attempts for a task that fails before it is recorded as failed.
        local_cpus: CPUs of a local cluster this executor starts (None: all).
        task: the function a task runs, `(spec_json, out_dir, num_threads) -> summary`;
            replaceable (tests inject failures through it). Pitfall: it is pickled to the
            workers, so it must be importable there or defined in a function.
    """

    name = "ray"

    def __init__(self, address: str | None = None, *, cpus_per_run: int = 1, gpus_per_run: float = 0.25,
                 retries: int = 1, local_cpus: int | None = None,
                 task: Callable[[dict, str, int | None], dict] = run_spec_json) -> None:
        self.address, self.cpus_per_run, self.gpus_per_run = address, cpus_per_run, gpus_per_run
        self.retries, self.local_cpus, self.task = retries, local_cpus, task

    def _connect(self, ray) -> bool:
        """Join or start a cluster; True when this call did (and so must shut it down)."""
        if ray.is_initialized():
            log.info("using the Ray cluster this process is already connected to")
            return False
        local = self.address is None and not os.environ.get("RAY_ADDRESS")
        kwargs = {"include_dashboard": False, "num_cpus": self.local_cpus} if local else {}
        ray.init(address=self.address, log_to_driver=False, **kwargs)
        return True

    def task_options(self, spec: RunSpec, cluster_gpus: float) -> dict:
        """Ray options of `spec`'s task on a cluster with `cluster_gpus` GPUs in all."""
        wants_gpu = cluster_gpus > 0 and self.gpus_per_run > 0 and spec.config.train.device != "cpu"
        # max_retries=0: the driver retries, so a retry is counted and recorded the same way
        # whether the task raised, its worker died, or its run ended "failed".
        return {"num_cpus": self.cpus_per_run, "num_gpus": self.gpus_per_run if wants_gpu else 0,
                "max_retries": 0, "retry_exceptions": False, "name": f"wiringlab:{spec.run_id}"}

    def map(self, specs: list[RunSpec], out_dir: Path) -> Iterator[dict]:
        ray = _import_ray()
        out_dir = Path(out_dir).resolve()  # workers do not share the driver's working directory
        started = self._connect(ray)
        try:
            remote = ray.remote(self.task)
            cluster_gpus = ray.cluster_resources().get("GPU", 0)
            pending: dict = {}

            def submit(spec: RunSpec, attempt: int) -> None:
                ref = remote.options(**self.task_options(spec, cluster_gpus)).remote(
                    spec_to_json(spec), str(out_dir), self.cpus_per_run)
                pending[ref] = (spec, attempt, time.perf_counter())

            for spec in specs:
                submit(spec, 1)
            while pending:
                (ref,), _ = ray.wait(list(pending), num_returns=1)
                spec, attempt, start = pending.pop(ref)
                summary, error, detail = self._outcome(ray, ref)
                if error is not None and attempt <= self.retries:
                    log.warning("run %s failed on attempt %d (%s); retrying", spec.run_id, attempt, error)
                    submit(spec, attempt + 1)
                    continue
                yield self._record(spec, out_dir, summary, (error, detail), attempt, time.perf_counter() - start)
        finally:
            if started:
                ray.shutdown()

    @staticmethod
    def _outcome(ray, ref) -> tuple[dict | None, str | None, str]:
        """(summary or None, the error in one line or None, the full error text)."""
        try:
            summary = ray.get(ref)
        except Exception as err:  # the task raised or its worker died: retried or recorded
            text = str(err).strip()
            return None, f"{type(err).__name__}: {text.splitlines()[-1] if text else ''}", text
        if summary.get("status") == "failed":
            return summary, summary.get("error") or "run failed", summary.get("traceback", "")
        return summary, None, ""

    @staticmethod
    def _record(spec, out_dir: Path, summary, error: tuple[str | None, str], attempts: int, wall: float) -> dict:
        """The driver writes the final summary (with its attempt count) into the run folder."""
        if summary is None:
            log.error("run %s failed after %d attempts: %s", spec.run_id, attempts, error[0])
            return _record_failure(spec, out_dir, error[0], wall, attempts, detail=error[1])
        folder = RunFolder(out_dir / "runs" / spec.run_id)
        if not (folder.path / "config.yaml").exists():
            log.warning("run %s was written on another node (%s); put --out on a filesystem every node "
                        "shares to keep its metrics and weights", spec.run_id,
                        summary.get("provenance", {}).get("hostname"))
        summary = {**summary, "attempts": attempts}
        folder.write_summary(summary)
        return summary


def make_executor(name: str = "auto", *, workers: int = 1, address: str | None = None,
                  gpus_per_run: float = 0.25):
    """The executor called `name` ("auto": in-process for one worker, else a process pool).

    Raises:
        ValueError: an unknown name, or an address for an executor other than Ray.
        MissingExtraError: "ray" without Ray installed (checked here, before anything runs).
    """
    if name not in EXECUTORS:
        raise ValueError(f"unknown executor {name!r}; allowed: {', '.join(EXECUTORS)}")
    if address is not None and name != "ray":
        raise ValueError("--address is the address of a Ray cluster; use it with --executor ray")
    if name == "ray":
        _import_ray()
        return RayExecutor(address, gpus_per_run=gpus_per_run, local_cpus=workers if workers > 1 else None)
    if name == "pool" or (name == "auto" and workers > 1):
        return PoolExecutor(min(workers, os.cpu_count() or 1))
    return InProcessExecutor()
