"""Where a number came from: package, torch and Python versions, git commit, device, host."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

import torch

__all__ = ["provenance"]


def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def provenance(device: torch.device, train=None) -> dict:
    """A dict of versions and the device, for summary.json; with `train` (a
    `TrainConfig`), also the opt-in speed settings that change numbers."""
    from wiringlab import __version__

    settings = {} if train is None else {"precision": train.precision, "compile": train.compile}
    return {**settings,
        "wiringlab": __version__,
        "git_commit": _git_commit(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "device_name": _device_name(device),
        "threads": torch.get_num_threads(),
        "hostname": platform.node(),  # which machine of a cluster ran it
    }
