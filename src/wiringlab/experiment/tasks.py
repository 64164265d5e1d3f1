"""What a worker process or Ray task runs: a group of runs, sent as JSON, trained into its
run folders. Shared by the pool and Ray executors (executors.py, ray_executor.py); a worker
receives only plain JSON, never a pickled object of the driver's.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .config import RunConfig
from .execute import failed_summary
from .grouping import execute_group
from .recipe import RunSpec
from .store import RunFolder

__all__ = ["Group", "spec_to_json", "spec_from_json", "run_group_json", "record_failure"]

log = logging.getLogger(__name__)

Group = list[RunSpec]  # runs trained together (one run, or one stack)


def spec_to_json(spec: RunSpec) -> dict:
    """Everything a worker needs to run `spec`, as plain JSON (no pickled objects)."""
    return {"run_id": spec.run_id, "label": spec.label, "seed": spec.seed,
            "axes": spec.axes, "config": spec.config.model_dump(mode="json")}


def spec_from_json(data: dict) -> RunSpec:
    return RunSpec(data["run_id"], data["label"], data["seed"], RunConfig.model_validate(data["config"]),
                   data["axes"])


def run_group_json(group_json: list[dict], out_dir: str, num_threads: int | None = None) -> list[dict]:
    """Train a group of runs from their JSON specs (stacked when they are compatible),
    write their folders under `out_dir`, return their summaries.

    This is the whole of a worker's job (pool process or Ray task).
    """
    if num_threads:
        import torch

        torch.set_num_threads(num_threads)
    return execute_group([spec_from_json(s) for s in group_json], Path(out_dir))


def record_failure(spec: RunSpec, out_dir: Path, error: str, wall: float, attempts: int = 1,
                    detail: str = "") -> dict:
    """Record `spec` as failed, unless its folder already holds a finished summary: a worker that
    dies fails its whole group, whose members may have finished before it died (a pending run
    had none when the sweep began, so such a summary is this sweep's own). Returns the summary kept."""
    folder = RunFolder(Path(out_dir) / "runs" / spec.run_id)
    if folder.finished():
        log.info("run %s finished before its worker failed (%s): kept", spec.run_id, error)
        return folder.read_summary()
    summary = failed_summary(spec, error, detail, wall)
    summary["attempts"] = attempts
    folder.write_summary(summary)
    return summary
