"""Executors: where the runs of a sweep are trained.

Every executor takes the pending groups of runs (`grouping.group_runs`: a group is one
run, or compatible runs trained as one stacked model) and yields each group's summaries
as it finishes; each run writes its own run folder. Runs are independent, so the
executor never changes a number (up to the float summation order of a different thread
count).

- `InProcessExecutor`: one group after the other in this process (datasets loaded once).
- `PoolExecutor`: spawned processes with one torch thread each (two single-threaded
  runs beat one two-threaded run on small models: less synchronisation per matmul).
- `RayExecutor` (ray_executor.py): Ray tasks on a local or remote cluster, one per group.

Pool workers and Ray tasks run the same function on the same JSON (tasks.py).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager, nullcontext
from multiprocessing import get_context
from pathlib import Path
from typing import Iterator

from .execute import DatasetCache
from .grouping import execute_group
from .ray_executor import RayExecutor, check_ray_address, import_ray
from .tasks import Group, record_failure, run_group_json, spec_from_json, spec_to_json

__all__ = ["spec_to_json", "spec_from_json", "run_group_json", "InProcessExecutor", "PoolExecutor",
           "RayExecutor", "make_executor", "check_ray_address", "EXECUTORS"]

log = logging.getLogger(__name__)

EXECUTORS = ("auto", "inprocess", "pool", "ray")


class InProcessExecutor:
    """Groups one after the other in this process, sharing loaded datasets."""

    name = "inprocess"

    def map(self, groups: list[Group], out_dir: Path) -> Iterator[list[dict]]:
        cache = DatasetCache()
        for group in groups:
            yield execute_group(group, Path(out_dir), cache)


def _pool_init(interruptible: bool = True, parent: int | None = None) -> None:
    import torch
    from tqdm import tqdm

    torch.set_num_threads(1)
    # tqdm's default lock is a multiprocessing one; a worker stopped by Ctrl-C would leave it
    # behind ("resource_tracker: ... leaked semaphore objects" after the sweep's last line)
    tqdm.set_lock(threading.RLock())
    # Ctrl-C reaches every process of the terminal: a worker leaves at once and quietly (its
    # run has no summary, so the next invocation trains it), the parent reports the interrupt.
    # A worker starts with SIGINT ignored (`_started_ignoring_sigint`); a sweep that was
    # itself started with SIGINT ignored keeps that.
    if interruptible:
        signal.signal(signal.SIGINT, lambda signum, frame: os._exit(128 + signum))
    # `parent` is the sweep's pid as the sweep saw it: a worker still importing torch when the
    # sweep was killed already has another parent (init) when it gets here, and must not train
    parent = os.getppid() if parent is None else parent
    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=_exit_with_parent, args=(parent,), name="wiringlab-parent-watch", daemon=True).start()


def _exit_with_parent(parent: int, every_s: float = 0.5) -> None:
    """End this worker when the sweep that spawned it is gone (killed with SIGKILL, say): the
    sweep's lock ends with it, so a resumed sweep would otherwise train the same runs while
    the orphan goes on writing their files. The orphan's run has no summary: it is retrained."""
    while os.getppid() == parent:
        time.sleep(every_s)
    os._exit(1)


@contextmanager
def _started_ignoring_sigint():
    """Processes spawned inside start with SIGINT ignored (an ignored signal survives exec,
    and Python keeps it), so a Ctrl-C while they import torch cannot print a traceback in
    each of them; the parent, whose own handler is back on leaving, stops them instead
    (`PoolExecutor.map`). A Ctrl-C inside (milliseconds: one spawn per worker) is lost.
    No change outside the main thread (signals cannot be set there) or when the handler was
    not set from Python (`signal.getsignal` gives None: it could not be put back)."""
    changed = False
    if signal.getsignal(signal.SIGINT) is not None:
        try:
            previous, changed = signal.signal(signal.SIGINT, signal.SIG_IGN), True
        except ValueError:  # not the main thread
            pass
    try:
        yield
    finally:
        if changed:
            signal.signal(signal.SIGINT, previous)


class _RecordingContext:
    """A multiprocessing context that remembers the processes it creates: the pool's workers,
    and no other child of this process, are the ones to stop on Ctrl-C."""

    def __init__(self, context) -> None:
        self._context = context
        self.processes: list = []

    def Process(self, *args, **kwargs):  # noqa: N802 (the context's own name)
        process = self._context.Process(*args, **kwargs)
        self.processes.append(process)
        return process

    def __getattr__(self, name: str):
        return getattr(self._context, name)


class PoolExecutor:
    """Spawned worker processes, one torch thread each.

    Args:
        workers: processes (capped by the number of groups; a single group runs in
            this process, where spawning would only add start-up time).

    Pitfall: when `map`'s iterator ends early (Ctrl-C, an error in the caller, `close()`),
    groups not started are dropped and the workers are stopped; their runs have no summary,
    so the next invocation trains them.
    """

    name = "pool"

    def __init__(self, workers: int) -> None:
        self.workers = max(1, workers)

    def map(self, groups: list[Group], out_dir: Path) -> Iterator[list[dict]]:
        workers = min(self.workers, len(groups))
        if workers <= 1:
            yield from InProcessExecutor().map(groups, out_dir)
            return
        payloads = [[spec_to_json(s) for s in g] for g in groups]
        context = _RecordingContext(get_context("spawn"))
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_pool_init,
                                   initargs=(signal.getsignal(signal.SIGINT) is not signal.SIG_IGN, os.getpid()))
        futures = {}
        try:
            for index, (group, payload) in enumerate(zip(groups, payloads)):
                # a spawning pool starts one worker per submit until it has them all
                with _started_ignoring_sigint() if index < workers else nullcontext():
                    futures[pool.submit(run_group_json, payload, str(out_dir))] = (group, time.perf_counter())
            yield from self._collect(futures, out_dir)
        except BaseException:  # Ctrl-C: groups not started yet are dropped, not run before exiting
            pool.shutdown(wait=False, cancel_futures=True)
            for process in context.processes:  # one still starting ignored the Ctrl-C; a training one has left
                process.terminate()
            raise
        finally:
            pool.shutdown(wait=True)

    @staticmethod
    def _collect(futures: dict, out_dir: Path) -> Iterator[list[dict]]:
        for future in as_completed(futures):
            group, start = futures[future]
            try:
                result = future.result()
            except Exception as err:  # a worker died: record it, the sweep goes on
                log.error("runs %s: worker failed: %s", [s.run_id for s in group], err)
                result = [record_failure(s, out_dir, f"{type(err).__name__}: {err}", time.perf_counter() - start)
                          for s in group]
            yield result


def make_executor(name: str = "auto", *, workers: int = 1, address: str | None = None,
                  gpus_per_task: float = 0.25):
    """The executor called `name` ("auto": in-process for one worker, else a process pool).

    Raises:
        ValueError: an unknown name, or an address for an executor other than Ray.
        MissingExtraError: "ray" without Ray installed (checked here, before anything runs).
        ConfigError: a Ray address where no head answers (`check_ray_address`).
    """
    if name not in EXECUTORS:
        raise ValueError(f"unknown executor {name!r}; allowed: {', '.join(EXECUTORS)}")
    if address is not None and name != "ray":
        raise ValueError("--address is the address of a Ray cluster; use it with --executor ray")
    if name == "ray":
        import_ray()
        check_ray_address(address or os.environ.get("RAY_ADDRESS"))
        return RayExecutor(address, gpus_per_task=gpus_per_task, local_cpus=workers if workers > 1 else None)
    if name == "pool" or (name == "auto" and workers > 1):
        return PoolExecutor(min(workers, os.cpu_count() or 1))
    return InProcessExecutor()
