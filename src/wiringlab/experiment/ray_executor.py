"""Ray executor: the runs of a sweep as Ray tasks on a local or remote cluster.

One task per group of runs (`grouping.group_runs`); a task receives only its runs' configs as
JSON and the results folder's path (`tasks.run_group_json`), and needs one CPU (and a GPU share
when the cluster has GPUs); the driver collects the summaries. A task that raises or whose
worker dies is retried once, as are the runs of a task that end "failed"; then they are
recorded as failed and the sweep goes on. Needs `pip install wiringlab[ray]`.

Pitfall: workers write run folders under the results folder's path on their own node, so on a
multi-node cluster `--out` must be on a filesystem all nodes share (NFS, ...). Otherwise the
driver still records each summary, but metrics.jsonl and the weights stay on the worker nodes
(a warning says so).
"""

from __future__ import annotations

import logging
import os
import platform
import time
from pathlib import Path
from typing import Callable, Iterator

from .errors import MissingExtraError
from .recipe import RunSpec
from .store import RunFolder
from .tasks import Group, record_failure, run_group_json, spec_to_json

__all__ = ["RayExecutor", "check_ray_address", "import_ray"]

log = logging.getLogger(__name__)


def import_ray():
    try:
        import ray
    except ImportError as err:
        raise MissingExtraError("--executor ray needs Ray, which is not installed: "
                                "pip install 'wiringlab[ray]'") from err
    return ray


class RayExecutor:
    """Ray tasks, one per group of runs, on a local or existing cluster.

    Args:
        address: a cluster to join ("HEAD_IP:6379", "auto"); None starts a local
            cluster unless this process is already connected or RAY_ADDRESS is set.
        cpus_per_task: `num_cpus` of each task, also its torch thread count.
        gpus_per_task: the GPU share of a task when the cluster has GPUs (0.25: four
            tasks per GPU); groups whose config says device "cpu" ask for none.
        retries: extra attempts for a task (or a run) that fails before it is recorded.
        local_cpus: CPUs of a local cluster this executor starts (None: all).
        task: the function a task runs, `(group_json, out_dir, num_threads) -> summaries`;
            replaceable (tests inject failures through it). Pitfall: it is pickled to the
            workers, so it must be importable there or defined in a function.
    """

    name = "ray"

    def __init__(self, address: str | None = None, *, cpus_per_task: int = 1, gpus_per_task: float = 0.25,
                 retries: int = 1, local_cpus: int | None = None,
                 task: Callable[[list[dict], str, int | None], list[dict]] = run_group_json) -> None:
        self.address, self.cpus_per_task, self.gpus_per_task = address, cpus_per_task, gpus_per_task
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

    def task_options(self, group: Group, cluster_gpus: float) -> dict:
        """Ray options of `group`'s task on a cluster with `cluster_gpus` GPUs in all.
        The runs of a group share their device (it is not a member value)."""
        wants_gpu = cluster_gpus > 0 and self.gpus_per_task > 0 and group[0].config.train.device != "cpu"
        name = f"wiringlab:{group[0].run_id}" + (f"+{len(group) - 1}" if len(group) > 1 else "")
        # max_retries=0: the driver retries, so a retry is counted and recorded the same way
        # whether the task raised, its worker died, or some of its runs ended "failed".
        return {"num_cpus": self.cpus_per_task, "num_gpus": self.gpus_per_task if wants_gpu else 0,
                "max_retries": 0, "retry_exceptions": False, "name": name}

    @staticmethod
    def check(groups: list[Group]) -> None:
        """Refuse `train.device: cuda:N` before anything runs: Ray shows a task only the GPU
        it assigned, as `cuda`, so cuda:1 would fail in every task.

        Raises:
            ConfigError: a run names a GPU index."""
        from .errors import ConfigError

        for spec in (s for group in groups for s in group):
            if spec.config.train.device.startswith("cuda:"):
                raise ConfigError(f"{spec.run_id}: train.device={spec.config.train.device}, but under --executor ray "
                                  "Ray assigns each task its GPU: set train.device to cuda or auto")

    def map(self, groups: list[Group], out_dir: Path) -> Iterator[list[dict]]:
        self.check(groups)
        ray = import_ray()
        out_dir = Path(out_dir).resolve()  # workers do not share the driver's working directory
        started = self._connect(ray)
        try:
            remote = ray.remote(self.task)
            cluster_gpus = ray.cluster_resources().get("GPU", 0)
            pending: dict = {}

            def submit(group: Group, attempt: int) -> None:
                ref = remote.options(**self.task_options(group, cluster_gpus)).remote(
                    [spec_to_json(s) for s in group], str(out_dir), self.cpus_per_task)
                pending[ref] = (group, attempt, time.perf_counter())

            for group in groups:
                submit(group, 1)
            try:
                while pending:
                    (ref,), _ = ray.wait(list(pending), num_returns=1)
                    group, attempt, start = pending.pop(ref)
                    done, retry = self._collect(ray, ref, group, attempt, out_dir, time.perf_counter() - start)
                    if retry:
                        submit(retry, attempt + 1)
                    if done:
                        yield done
            except BaseException:  # Ctrl-C: the sweep's lock ends now, so no task may go on writing runs
                self._cancel(ray, list(pending))
                raise
        finally:
            if started:
                ray.shutdown()

    @staticmethod
    def _cancel(ray, refs: list) -> None:
        """Stop unfinished tasks (force: a running one's worker is killed; its runs have no
        summary and are trained by the next invocation)."""
        for ref in refs:
            try:
                ray.cancel(ref, force=True)
            except Exception as err:  # already finished, or the cluster is gone: nothing to stop
                log.debug("could not cancel a Ray task: %s", err)

    def _collect(self, ray, ref, group: Group, attempt: int, out_dir: Path, wall: float):
        """(summaries recorded now, runs to submit again) of a finished task."""
        may_retry = attempt <= self.retries
        try:
            returned = {s["run_id"]: s for s in ray.get(ref)}
        except Exception as err:  # the task raised or its worker died: every run of it failed
            text = str(err).strip()
            error = f"{type(err).__name__}: {text.splitlines()[-1] if text else ''}"
            if may_retry:
                log.warning("task of %s failed on attempt %d (%s); retrying", group[0].run_id, attempt, error)
                return [], group
            log.error("runs %s failed after %d attempts: %s", [s.run_id for s in group], attempt, error)
            return [record_failure(s, out_dir, error, wall, attempt, detail=text) for s in group], []
        failed = [s for s in group if returned.get(s.run_id, {}).get("status", "failed") == "failed"]
        retry = failed if may_retry else []
        if retry:
            log.warning("runs %s failed on attempt %d; retrying", [s.run_id for s in retry], attempt)
        done = [self._record(s, out_dir, returned.get(s.run_id), attempt, wall) for s in group if s not in retry]
        return done, retry

    @staticmethod
    def _record(spec: RunSpec, out_dir: Path, summary: dict | None, attempts: int, wall: float) -> dict:
        """The driver writes the final summary (with its attempt count) into the run folder."""
        if summary is None:
            return record_failure(spec, out_dir, "the task returned no summary for this run", wall, attempts)
        folder = RunFolder(out_dir / "runs" / spec.run_id)
        host = summary.get("provenance", {}).get("hostname")
        if not (folder.path / "config.yaml").exists():
            log.warning("run %s was written on another node (%s); put --out on a filesystem every node "
                        "shares to keep its metrics and weights", spec.run_id, host)
        else:
            _set_aside_stale_metrics(folder, summary, spec.run_id)
        summary = {**summary, "attempts": attempts}
        folder.write_summary(summary)
        return summary


def _set_aside_stale_metrics(folder: RunFolder, summary: dict, run_id: str) -> None:
    """A failed attempt on this node left metrics.jsonl here while the retry finished on
    another node (no shared filesystem): its epochs are not the summary's, and the report
    would refuse the folder. Renamed, not deleted; a complete file (a shared filesystem,
    where the retry rewrote it) is left alone."""
    host = summary.get("provenance", {}).get("hostname")
    if host in (None, platform.node()) or not folder.metrics_path.exists():
        return
    lines = sum(1 for line in folder.metrics_path.read_text(encoding="utf-8").splitlines() if line.strip())
    if lines == summary.get("epochs"):
        return
    stale = folder.metrics_path.with_name("metrics.failed-attempt.jsonl")
    folder.metrics_path.replace(stale)
    log.warning("run %s finished on node %s; the %d epoch(s) of metrics.jsonl here came from an earlier failed "
                "attempt on this node and are kept as %s; put --out on a filesystem every node shares to keep "
                "the finished run's metrics and weights", run_id, host, lines, stale.name)


def check_ray_address(address: str | None, timeout_s: float = 10.0) -> None:
    """Refuse a Ray head address where nothing listens, before anything runs: `ray.init`
    itself retries for minutes with no error of its own. Only `HOST:PORT` and
    `ray://HOST:PORT` are checked; None, "auto" and "local" are Ray's to resolve.

    Raises:
        ConfigError: no TCP connection to HOST:PORT within `timeout_s` seconds.
    """
    import socket

    from .errors import ConfigError

    host, sep, port = (address or "").removeprefix("ray://").rpartition(":")
    if not (sep and host and port.isdigit()):
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as err:
        raise ConfigError(f"--address {address}: no Ray head answers at {host}:{port} ({err}); start one there "
                          f"with `ray start --head --port {port}`, or check the address and the firewall") from None
